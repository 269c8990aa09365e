"""The built-in ``default`` driver: Docker v26.1.3's allocator, done right.

Modules, after libnetwork's split of its ``ipam`` package: ``_allocator`` (the
driver and its rules), ``_structures`` (address spaces and master pools) and
``_bitmap`` (sets of allocated addresses, as runs); for the option ``state``,
``_durable`` (the driver written through to a file), ``_store`` (the file) and
``_report`` (reading a file without owning it). Docker's rules every
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
``state``
    Keep the whole state in this SQLite file: a new driver on the file resumes
    where the last one stopped. One process owns a file at a time. Without it
    the driver keeps its state in memory only.
``durability``
    With ``state``: ``full`` (the default; every change is synced to disk
    before the call returns) or ``relaxed`` (survives a crash of the process,
    but a power loss may lose the last changes; several times faster).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipamkit._contract import DEFAULT_IPAM, Capability, Registerer
from ipamkit._hookspecs import hookimpl
from ipamkit.drivers.default._allocator import (
    GLOBAL_ADDRESS_SPACE,
    LOCAL_ADDRESS_SPACE,
    DefaultIpam,
)
from ipamkit.drivers.default._durable import DurableDefaultIpam
from ipamkit.drivers.default._report import PoolUsage, StateReport, read_state
from ipamkit.drivers.default._store import StateFileError, StateLockedError, StateWriteError
from ipamkit.errors import InvalidParameterError
from ipamkit.predefined import LIST_OPTIONS, lists_from_options

__all__ = [
    "GLOBAL_ADDRESS_SPACE",
    "LOCAL_ADDRESS_SPACE",
    "DefaultIpam",
    "DurableDefaultIpam",
    "PoolUsage",
    "StateFileError",
    "StateLockedError",
    "StateReport",
    "StateWriteError",
    "driver_from_options",
    "ipamkit_register_drivers",
    "read_state",
]

_OPTIONS = (*LIST_OPTIONS, "state", "durability")


def driver_from_options(options: Mapping[str, str]) -> DefaultIpam:
    """Build a driver from the host's string options for ``default``."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) for the default driver: {', '.join(unknown)}; "
            f"known: {', '.join(_OPTIONS)}"
        )
    # The options of the lists are the keyword arguments of both drivers.
    lists: dict[str, Any] = lists_from_options(options)
    state = options.get("state")
    if state is None:
        if "durability" in options:
            raise InvalidParameterError("option durability needs option state (a file)")
        return DefaultIpam(**lists)
    if not state:
        raise InvalidParameterError("option state must name a file")
    return DurableDefaultIpam(state, durability=options.get("durability", "full"), **lists)


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register ``default``; in memory only, it keeps no state, so it asks for replay."""
    driver = driver_from_options(options.get(DEFAULT_IPAM, {}))
    registerer.register_ipam_driver_with_capabilities(
        DEFAULT_IPAM,
        driver,
        Capability(requires_request_replay=not isinstance(driver, DurableDefaultIpam)),
    )
