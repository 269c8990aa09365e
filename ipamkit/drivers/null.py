"""The ``null`` driver: one pool covering everything, and no addresses.

For networks whose addresses are managed elsewhere. It behaves as Docker's null
driver, with one precision: a pool ID other than its own is
:class:`~ipamkit.errors.BadPoolError` from every method (Docker's ReleasePool
accepts anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network

from ipamkit._arguments import check_options, check_pool_request, check_str, parse_address
from ipamkit._contract import (
    NULL_IPAM,
    Address,
    AddressResult,
    Feature,
    Ipam,
    PoolResult,
    Registerer,
)
from ipamkit._hookspecs import hookimpl
from ipamkit.errors import BadPoolError, InvalidAddressSpaceError, InvalidParameterError

__all__ = ["ADDRESS_SPACE", "POOL", "POOL_ID", "NullIpam"]

ADDRESS_SPACE = "null"
POOL = IPv4Network("0.0.0.0/0")
POOL_ID = "null/0.0.0.0/0"


class NullIpam(Ipam):
    """Hands out the pool ``0.0.0.0/0`` and never an address."""

    features = frozenset({Feature.EXACT_ERRORS, Feature.THREAD_SAFE})

    def get_default_address_spaces(self) -> tuple[str, str]:
        return ADDRESS_SPACE, ADDRESS_SPACE

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        check_pool_request(address_space, pool, sub_pool, options, v6)
        if address_space != ADDRESS_SPACE:
            raise InvalidAddressSpaceError(f"unknown address space: {address_space}")
        if pool:
            raise InvalidParameterError(
                "null ipam driver does not handle specific address pool requests"
            )
        if sub_pool:
            raise InvalidParameterError(
                "null ipam driver does not handle specific address subpool requests"
            )
        if v6:
            raise InvalidParameterError(
                "null ipam driver does not handle IPv6 address pool requests"
            )
        return PoolResult(POOL_ID, POOL, {})

    def release_pool(self, pool_id: str) -> None:
        _check_pool_id(pool_id)

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        _check_pool_id(pool_id)
        if address is not None:
            parse_address(address)
        check_options(options)
        return AddressResult(None, {})

    def release_address(self, pool_id: str, address: Address | str) -> None:
        _check_pool_id(pool_id)
        parse_address(address)

    def is_builtin(self) -> bool:
        return True


def _check_pool_id(pool_id: object) -> None:
    if check_str(pool_id, "pool_id") != POOL_ID:
        raise BadPoolError(f"unknown pool id: {pool_id}")


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register the ``null`` driver, which takes no options."""
    unknown = sorted(options.get(NULL_IPAM, {}))
    if unknown:
        raise InvalidParameterError(f"the null driver takes no options, got: {', '.join(unknown)}")
    registerer.register_ipam_driver(NULL_IPAM, NullIpam())
