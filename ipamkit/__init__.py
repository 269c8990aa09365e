"""ipamkit: Docker's IPAM driver contract for Python, pluggable and checkable."""

from __future__ import annotations

from ipamkit import errors
from ipamkit._arguments import (
    check_bool,
    check_options,
    check_pool_request,
    check_str,
    parse_address,
    parse_pool,
)
from ipamkit._contract import (
    ALLOC_SERIAL_PREFIX,
    DEFAULT_IPAM,
    GATEWAY,
    MAC_ADDRESS,
    NULL_IPAM,
    PLUGIN_ENDPOINT_TYPE,
    REQUEST_ADDRESS_TYPE,
    Address,
    AddressResult,
    Capability,
    Feature,
    Interface,
    Ipam,
    Network,
    PoolReading,
    PoolResult,
    Registerer,
)
from ipamkit._discovery import ENTRY_POINT_GROUP
from ipamkit._hookspecs import hookimpl, hookspec
from ipamkit._host import DriverInfo, Host

__all__ = [
    "ALLOC_SERIAL_PREFIX",
    "DEFAULT_IPAM",
    "ENTRY_POINT_GROUP",
    "GATEWAY",
    "MAC_ADDRESS",
    "NULL_IPAM",
    "PLUGIN_ENDPOINT_TYPE",
    "REQUEST_ADDRESS_TYPE",
    "Address",
    "AddressResult",
    "Capability",
    "DriverInfo",
    "Feature",
    "Host",
    "Interface",
    "Ipam",
    "Network",
    "PoolReading",
    "PoolResult",
    "Registerer",
    "check_bool",
    "check_options",
    "check_pool_request",
    "check_str",
    "errors",
    "hookimpl",
    "hookspec",
    "parse_address",
    "parse_pool",
]
