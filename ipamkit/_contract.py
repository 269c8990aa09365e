"""The IPAM driver contract: Docker's ``ipamapi`` in Python terms."""

from __future__ import annotations

import abc
import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from types import TracebackType
from typing import NamedTuple, Protocol, TypeAlias, TypeVar

__all__ = [
    "ALLOC_SERIAL_PREFIX",
    "DEFAULT_IPAM",
    "GATEWAY",
    "MAC_ADDRESS",
    "NULL_IPAM",
    "PLUGIN_ENDPOINT_TYPE",
    "REQUEST_ADDRESS_TYPE",
    "Address",
    "AddressResult",
    "Capability",
    "Feature",
    "Interface",
    "Ipam",
    "Network",
    "PoolReading",
    "PoolResult",
    "Registerer",
]

#: Name of the built-in allocator driver.
DEFAULT_IPAM = "default"
#: Name of the built-in driver that hands out no addresses.
NULL_IPAM = "null"
#: The plugin subsystem name a remote driver implements (and its HTTP method prefix).
PLUGIN_ENDPOINT_TYPE = "IpamDriver"
#: Options key that tells what an address is requested for (for example a gateway).
REQUEST_ADDRESS_TYPE = "RequestAddressType"
#: Options key that selects serial allocation when its value is exactly ``"true"``.
ALLOC_SERIAL_PREFIX = "com.docker.network.ipam.serial"
#: Value of :data:`REQUEST_ADDRESS_TYPE` for a gateway, and key of a gateway in pool metadata.
GATEWAY = "com.docker.network.gateway"
#: Options key carrying an endpoint's MAC address for drivers that require one.
MAC_ADDRESS = "com.docker.network.endpoint.macaddress"

Address: TypeAlias = IPv4Address | IPv6Address
Interface: TypeAlias = IPv4Interface | IPv6Interface
Network: TypeAlias = IPv4Network | IPv6Network


class PoolResult(NamedTuple):
    """What :meth:`Ipam.request_pool` returns: unpacks as ``pool_id, pool, meta``."""

    pool_id: str
    pool: Network
    meta: dict[str, str]


class AddressResult(NamedTuple):
    """What :meth:`Ipam.request_address` returns: unpacks as ``address, meta``.

    ``address`` carries the pool's prefix length, or is None when the driver
    hands out no addresses (the ``null`` driver).
    """

    address: Interface | None
    meta: dict[str, str]


@dataclass(frozen=True)
class Capability:
    """What a driver needs from the runtime that loads it."""

    #: The runtime passes the endpoint's MAC address in the options of ``request_address``.
    requires_mac_address: bool = False
    #: The driver keeps no state across restarts: the runtime replays its pools and addresses.
    requires_request_replay: bool = False

    def __post_init__(self) -> None:
        for name in ("requires_mac_address", "requires_request_replay"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Capability.{name} must be a bool")


class Feature(str, enum.Enum):
    """Optional behaviour a driver may declare in :attr:`Ipam.features`.

    The set is closed: a name that is not a member is a declaration error, so a
    typo cannot silently switch a check off.
    """

    #: ``request_pool`` accepts a specific pool.
    EXPLICIT_POOLS = "explicit_pools"
    #: ``request_pool`` accepts a subpool of the requested pool.
    SUB_POOLS = "sub_pools"
    #: ``request_pool`` without a pool chooses an IPv4 pool.
    CHOSEN_POOLS = "chosen_pools"
    #: ``request_pool`` without a pool and with ``v6=True`` chooses an IPv6 pool.
    CHOSEN_IPV6_POOLS = "chosen_ipv6_pools"
    #: IPv6 pools and addresses are supported.
    IPV6 = "ipv6"
    #: ``request_address`` without an address hands one out.
    DYNAMIC_ADDRESSES = "dynamic_addresses"
    #: ``request_address`` with an address allocates exactly that address.
    SPECIFIC_ADDRESSES = "specific_addresses"
    #: Concurrent calls from several threads are safe.
    THREAD_SAFE = "thread_safe"
    #: Errors are raised as the exact well-known classes of :mod:`ipamkit.errors`.
    EXACT_ERRORS = "exact_errors"
    #: A new instance built with the same options, once the old one is closed, sees the
    #: whole state: every live pool under its pool ID and every held address; nothing
    #: released comes back.
    PERSISTENT = "persistent"
    #: Instances built with the same options (differing, say, in host identity) share the
    #: global address space: a pool ID names the same pool in each, and pools, addresses
    #: and releases of one are seen by all.
    SHARED = "shared"

    def __str__(self) -> str:
        return self.value


class PoolReading(str, enum.Enum):
    """The two readings of ``request_pool`` found in the wild."""

    #: Docker's built-in allocator: a second identical request is ``PoolOverlapError``
    #: and one release frees the pool.
    EXCLUSIVE = "exclusive"
    #: Docker's documentation for remote drivers: identical requests return the same
    #: pool ID and N requests need N releases.
    REFCOUNTED = "refcounted"

    def __str__(self) -> str:
        return self.value


_IpamT = TypeVar("_IpamT", bound="Ipam")


class Ipam(abc.ABC):
    """An IPAM driver: address spaces of non-overlapping pools, addresses from pools.

    Every method raises a class from :mod:`ipamkit.errors` for a bad value and
    :class:`TypeError` for an argument of the wrong Python type; a call that raises
    leaves the driver's state exactly as it was.
    """

    #: Optional behaviour this driver offers (names from :class:`Feature`).
    features: Collection[str] = frozenset()
    #: How this driver reads a repeated ``request_pool``.
    pool_reading: PoolReading = PoolReading.EXCLUSIVE

    @abc.abstractmethod
    def get_default_address_spaces(self) -> tuple[str, str]:
        """Return the names of the default local and global address spaces."""

    @abc.abstractmethod
    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        """Reserve ``pool`` (or one the driver chooses) in ``address_space``.

        ``sub_pool`` narrows where dynamic addresses come from; ``v6`` asks for an
        IPv6 pool when the driver chooses one.
        """

    @abc.abstractmethod
    def release_pool(self, pool_id: str) -> None:
        """Release the pool named by ``pool_id``."""

    @abc.abstractmethod
    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        """Allocate ``address`` (or any free one) from the pool named by ``pool_id``."""

    @abc.abstractmethod
    def release_address(self, pool_id: str, address: Address | str) -> None:
        """Return ``address`` to the pool named by ``pool_id``."""

    @abc.abstractmethod
    def is_builtin(self) -> bool:
        """Tell whether the driver ships with ipamkit (built-in names cannot be taken over)."""

    def close(self) -> None:  # noqa: B027  # optional: a no-op unless a driver holds something
        """Release what the driver holds outside itself (connections, files); idempotent.

        The default does nothing: most drivers hold nothing. A driver used after
        ``close()`` may raise; whoever builds a driver closes it, directly or
        with ``with driver: ...``.
        """

    def __enter__(self: _IpamT) -> _IpamT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Registerer(Protocol):
    """What drivers are registered with: Docker's ``ipamapi.Registerer``."""

    def register_ipam_driver(self, name: str, driver: Ipam) -> None:
        """Register ``driver`` under ``name`` with no capabilities."""

    def register_ipam_driver_with_capabilities(
        self, name: str, driver: Ipam, capability: Capability
    ) -> None:
        """Register ``driver`` under ``name`` with ``capability``."""
