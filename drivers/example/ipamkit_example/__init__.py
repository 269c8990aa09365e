"""An example ipamkit driver, written as the end result of ipamkit's tutorial.

Its policy differs from ipamkit's ``default`` driver on purpose:

- its address spaces are ``ExampleLocal`` and ``ExampleGlobal``;
- pools it chooses are /24s of ``10.200.0.0/16`` and /64s of ``fd3e:7a61:9c00::/48``
  (the driver options ``v4_range`` and ``v6_range`` change them), first free first;
- a released address is the next one handed out again (last freed, first reused);
- a pool is exclusive: while a pool is live, no other pool of its address space may
  overlap it, not even one with a different subpool.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface

from ipamkit import (
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
    check_options,
    check_pool_request,
    check_str,
    hookimpl,
    parse_address,
    parse_pool,
)
from ipamkit.errors import (
    BadPoolError,
    InvalidAddressSpaceError,
    InvalidParameterError,
    InvalidPoolError,
    InvalidSubPoolError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
    NoMoreSubnetsError,
    PoolOverlapError,
)

__all__ = ["GLOBAL_SPACE", "LOCAL_SPACE", "NAME", "ExampleIpam"]

NAME = "example"
LOCAL_SPACE = "ExampleLocal"
GLOBAL_SPACE = "ExampleGlobal"
DEFAULT_V4_RANGE = "10.200.0.0/16"
DEFAULT_V6_RANGE = "fd3e:7a61:9c00::/48"
# The prefix length of the pools the driver chooses, by IP version.
CHOSEN_PREFIX = {4: 24, 6: 64}


def _span(network: Network) -> range:
    """The integer values of every address of ``network``."""
    return range(int(network.network_address), int(network.broadcast_address) + 1)


@dataclass
class _Pool:
    """One live pool: where its addresses come from and which are in use."""

    space: str
    network: Network
    #: Where dynamic addresses come from: the subpool, or the whole pool.
    dynamic: Network
    allocated: set[int] = field(default_factory=set)
    #: Released addresses of ``dynamic``. A dict keeps insertion order and
    #: popitem() takes the newest entry: last freed, first reused.
    freed: dict[int, None] = field(default_factory=dict)
    #: Every address of ``dynamic`` below this one is allocated, freed or reserved.
    fresh: int = 0

    def __post_init__(self) -> None:
        self.fresh = int(self.dynamic.network_address)

    def is_reserved(self, value: int) -> bool:
        # Never handed out: the IPv4 network and broadcast addresses (except in
        # /31 and /32, which have no room for them) and IPv6's subnet-router anycast.
        span = _span(self.network)
        if self.network.version == 6:
            return value == span[0]
        return self.network.prefixlen < 31 and value in (span[0], span[-1])

    def value_of(self, address: Address) -> int:
        if address not in self.network:
            raise IPOutOfRangeError(f"{address} is not in pool {self.network}")
        return int(address)

    def take_any(self) -> int:
        if self.freed:
            value, _ = self.freed.popitem()
        else:
            value = self.fresh
            while value in self.allocated or self.is_reserved(value):
                value += 1
            if value not in _span(self.dynamic):
                raise NoAvailableIPsError(f"no available addresses in {self.dynamic}")
            self.fresh = value + 1
        self.allocated.add(value)
        return value

    def take(self, value: int) -> None:
        if value in self.allocated or self.is_reserved(value):
            raise IPAlreadyAllocatedError(f"{self.interface(value).ip} is already in use")
        self.freed.pop(value, None)
        self.allocated.add(value)

    def release(self, value: int) -> None:
        # Releasing a free or reserved address changes nothing.
        if value not in self.allocated:
            return
        self.allocated.remove(value)
        if value in _span(self.dynamic):
            self.freed[value] = None

    def interface(self, value: int) -> Interface:
        if self.network.version == 4:
            return IPv4Interface((value, self.network.prefixlen))
        return IPv6Interface((value, self.network.prefixlen))


class ExampleIpam(Ipam):
    """Exclusive pools in two address spaces, with last-freed-first address reuse."""

    features = frozenset(
        {
            Feature.EXPLICIT_POOLS,
            Feature.SUB_POOLS,
            Feature.CHOSEN_POOLS,
            Feature.CHOSEN_IPV6_POOLS,
            Feature.IPV6,
            Feature.DYNAMIC_ADDRESSES,
            Feature.SPECIFIC_ADDRESSES,
            Feature.THREAD_SAFE,
            Feature.EXACT_ERRORS,
        }
    )
    pool_reading = PoolReading.EXCLUSIVE

    def __init__(self, v4_range: str = DEFAULT_V4_RANGE, v6_range: str = DEFAULT_V6_RANGE) -> None:
        self._ranges = {4: _range(v4_range, 4), 6: _range(v6_range, 6)}
        self._pools: dict[str, _Pool] = {}
        # One lock for everything: simple, and enough for an example.
        self._lock = threading.Lock()

    def get_default_address_spaces(self) -> tuple[str, str]:
        return LOCAL_SPACE, GLOBAL_SPACE

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        # Check every argument before touching any state, so that an error
        # leaves the driver as it was.
        check_pool_request(address_space, pool, sub_pool, options, v6)
        if address_space not in (LOCAL_SPACE, GLOBAL_SPACE):
            raise InvalidAddressSpaceError(f"unknown address space {address_space!r}")
        if sub_pool and not pool:
            raise InvalidSubPoolError("a subpool needs a pool")
        network = parse_pool(pool)
        subnet = parse_pool(sub_pool, "subpool")
        if subnet is not None and network is not None and not _inside(subnet, network):
            raise InvalidSubPoolError(f"subpool {subnet} is not inside pool {network}")
        with self._lock:
            live = [p.network for p in self._pools.values() if p.space == address_space]
            if network is None:
                network = self._choose(6 if v6 else 4, live)
            elif any(network.overlaps(other) for other in live):
                raise PoolOverlapError(f"{network} overlaps a live pool of {address_space}")
            pool_id = f"{address_space}/{network}" + (f"/{subnet}" if subnet else "")
            self._pools[pool_id] = _Pool(address_space, network, subnet or network)
        return PoolResult(pool_id, network, {})

    def _choose(self, version: int, live: list[Network]) -> Network:
        candidates = self._ranges[version].subnets(new_prefix=CHOSEN_PREFIX[version])
        for candidate in candidates:
            if not any(candidate.overlaps(other) for other in live):
                return candidate
        raise NoMoreSubnetsError(f"no free IPv{version} pool left in {self._ranges[version]}")

    def release_pool(self, pool_id: str) -> None:
        with self._lock:
            self._pool(pool_id)
            del self._pools[pool_id]

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        wanted = None if address is None else parse_address(address)
        check_options(options)
        with self._lock:
            pool = self._pool(pool_id)
            if wanted is None:
                value = pool.take_any()
            else:
                value = pool.value_of(wanted)
                pool.take(value)
            return AddressResult(pool.interface(value), {})

    def release_address(self, pool_id: str, address: Address | str) -> None:
        released = parse_address(address)
        with self._lock:
            pool = self._pool(pool_id)
            pool.release(pool.value_of(released))

    def is_builtin(self) -> bool:
        return False

    def _pool(self, pool_id: object) -> _Pool:
        """Return the live pool named ``pool_id``."""
        text = check_str(pool_id, "pool_id")
        pool = self._pools.get(text)
        if pool is not None:
            return pool
        # Tell a malformed ID (InvalidPoolError) from one that names no live pool.
        _, _, prefixes = text.partition("/")
        parts = prefixes.split("/")
        if len(parts) not in (2, 4):
            raise InvalidPoolError(f"invalid pool id {text!r}")
        for start in range(0, len(parts), 2):
            parse_pool("/".join(parts[start : start + 2]))
        raise BadPoolError(f"no live pool {text!r}")


def _inside(subnet: Network, network: Network) -> bool:
    # subnet_of() raises TypeError across IP versions, hence the first test.
    return subnet.version == network.version and subnet.subnet_of(network)  # type: ignore[arg-type]


def _range(text: str, version: int) -> Network:
    """Parse the range the driver chooses IPv``version`` pools from."""
    network = parse_pool(text)
    if network is None or network.version != version:
        raise InvalidParameterError(f"v{version}_range must be an IPv{version} prefix")
    if network.prefixlen > CHOSEN_PREFIX[version]:
        raise InvalidParameterError(
            f"v{version}_range must be a /{CHOSEN_PREFIX[version]} or larger"
        )
    return network


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register the ``example`` driver; it keeps no state across restarts."""
    unknown = sorted(set(options[NAME]) - {"v4_range", "v6_range"})
    if unknown:
        raise InvalidParameterError(f"unknown option(s) for {NAME!r}: {', '.join(unknown)}")
    registerer.register_ipam_driver_with_capabilities(
        NAME, ExampleIpam(**options[NAME]), Capability(requires_request_replay=True)
    )
