"""A small stateful driver for the remote tests, served by ``ipamkit serve memory``.

Exclusive pools in two address spaces, first-free addresses; every failure is
one of the contract's exact classes. Test hooks: a pool request with option
``crash`` raises a plain RuntimeError, standing for a driver bug, and an address
request with option ``sleep`` takes that many seconds (and with option ``started``
creates that file first). Replies carry counts in
their metadata, so a test can see over the wire that the state is unharmed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from ipaddress import ip_interface
from pathlib import Path

from ipamkit import (
    Address,
    AddressResult,
    Feature,
    Ipam,
    Network,
    PoolResult,
    Registerer,
    check_bool,
    check_options,
    check_str,
    errors,
    hookimpl,
    parse_address,
    parse_pool,
)

SPACES = ("local", "global")


class MemoryIpam(Ipam):
    """Pools and addresses in dictionaries."""

    features = frozenset(
        {
            Feature.EXPLICIT_POOLS,
            Feature.DYNAMIC_ADDRESSES,
            Feature.SPECIFIC_ADDRESSES,
            Feature.EXACT_ERRORS,
            Feature.THREAD_SAFE,
        }
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pools: dict[str, tuple[Network, set[Address]]] = {}

    def get_default_address_spaces(self) -> tuple[str, str]:
        return SPACES

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        check_str(address_space, "address_space")
        check_bool(v6, "v6")
        options = check_options(options)
        if "crash" in options:
            raise RuntimeError("deliberate driver bug")
        if address_space not in SPACES:
            raise errors.InvalidAddressSpaceError(f"unknown address space {address_space!r}")
        network = parse_pool(pool)
        if parse_pool(sub_pool, "subpool") is not None:
            raise errors.InvalidSubPoolError("this driver takes no subpools")
        if network is None:
            raise errors.NoMoreSubnetsError("this driver chooses no pools")
        with self._lock:
            for pool_id, (other, _) in self.pools.items():
                if pool_id.startswith(address_space + "/") and other.overlaps(network):
                    raise errors.PoolOverlapError
            pool_id = f"{address_space}/{network}"
            self.pools[pool_id] = (network, set())
            return PoolResult(pool_id, network, {"pools": str(len(self.pools))})

    def release_pool(self, pool_id: str) -> None:
        with self._lock:
            self._pool(pool_id)
            del self.pools[pool_id]

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        given = check_options(options)
        if "started" in given:  # tells a test that the call is with the driver
            Path(given["started"]).touch()
        time.sleep(float(given.get("sleep", "0")))
        with self._lock:
            network, used = self._pool(pool_id)
            if address is not None:
                wanted = self._inside(network, parse_address(address))
                if wanted in used:
                    raise errors.IPAlreadyAllocatedError
            else:
                free = next((a for a in network.hosts() if a not in used), None)
                if free is None:
                    raise errors.NoAvailableIPsError
                wanted = free
            used.add(wanted)
            return AddressResult(
                ip_interface(f"{wanted}/{network.prefixlen}"), {"used": str(len(used))}
            )

    def release_address(self, pool_id: str, address: Address | str) -> None:
        with self._lock:
            network, used = self._pool(pool_id)
            used.discard(self._inside(network, parse_address(address)))

    def is_builtin(self) -> bool:
        return False

    def _pool(self, pool_id: object) -> tuple[Network, set[Address]]:
        found = self.pools.get(check_str(pool_id, "pool_id"))
        if found is None:
            raise errors.BadPoolError(f"no pool {pool_id!r}")
        return found

    @staticmethod
    def _inside(network: Network, address: Address) -> Address:
        if address not in network:
            raise errors.IPOutOfRangeError
        return address


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register ``memory``."""
    registerer.register_ipam_driver("memory", MemoryIpam())
