"""The built-in ``default`` driver: Docker v26.1.3's allocator, done right.

Modules, after libnetwork's split of its ``ipam`` package: ``_allocator`` (the
driver and its rules), ``_structures`` (address spaces and master pools) and
``_bitmap`` (sets of allocated addresses, as runs). Docker's rules every
driver shares are in the core: :mod:`ipamkit.pools` (pool IDs, subpools,
reserved addresses) and :mod:`ipamkit.predefined` (the lists pools are chosen
from).

Options (all strings), given to the host under the driver name ``default``:

``local_pools``, ``global_pools``
    Replace Docker's predefined lists of the ``LocalDefault`` and
    ``GlobalDefault`` address spaces: comma-separated ``<base>/<length>:<size>``
    items, as Docker's ``--default-address-pool base=...,size=...``, e.g.
    ``172.17.0.0/16:16,192.168.0.0/16:20``. Items may be IPv4 or IPv6.
``local_ipv6_pools``, ``global_ipv6_pools``
    IPv6 items added after the lists, e.g. ``fd00:1::/48:64``. The driver
    declares ``Feature.CHOSEN_IPV6_POOLS`` when the local list has IPv6 items.
"""

from __future__ import annotations

from collections.abc import Mapping

from ipamkit._contract import DEFAULT_IPAM, Capability, Registerer
from ipamkit._hookspecs import hookimpl
from ipamkit.drivers.default._allocator import (
    GLOBAL_ADDRESS_SPACE,
    LOCAL_ADDRESS_SPACE,
    DefaultIpam,
)
from ipamkit.errors import InvalidParameterError
from ipamkit.predefined import parse_pool_specs

__all__ = [
    "GLOBAL_ADDRESS_SPACE",
    "LOCAL_ADDRESS_SPACE",
    "DefaultIpam",
    "driver_from_options",
    "ipamkit_register_drivers",
]

_OPTIONS = ("local_pools", "global_pools", "local_ipv6_pools", "global_ipv6_pools")


def driver_from_options(options: Mapping[str, str]) -> DefaultIpam:
    """Build a driver from the host's string options for ``default``."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) for the default driver: {', '.join(unknown)}; "
            f"known: {', '.join(_OPTIONS)}"
        )
    lists = {key: parse_pool_specs(value, key) for key, value in options.items()}
    return DefaultIpam(
        local_pools=lists.get("local_pools"),
        global_pools=lists.get("global_pools"),
        local_ipv6_pools=lists.get("local_ipv6_pools", ()),
        global_ipv6_pools=lists.get("global_ipv6_pools", ()),
    )


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register a fresh ``default`` driver; it keeps no state, so it asks for replay."""
    registerer.register_ipam_driver_with_capabilities(
        DEFAULT_IPAM,
        driver_from_options(options.get(DEFAULT_IPAM, {})),
        Capability(requires_request_replay=True),
    )
