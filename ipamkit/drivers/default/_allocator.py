"""The ``default`` driver: Docker v26.1.3's allocator with ipamkit's deviations."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from socket import AF_INET, AF_INET6, inet_pton
from typing import TypeAlias

from ipamkit._arguments import (
    IPV4_MAPPED,
    check_options,
    check_pool_request,
    check_str,
    parse_address,
    parse_pool,
    parse_prefix,
)
from ipamkit._contract import (
    ALLOC_SERIAL_PREFIX,
    Address,
    AddressResult,
    Feature,
    Ipam,
    Network,
    PoolReading,
    PoolResult,
)
from ipamkit._interfaces import NETWORK_MAKERS, address_value
from ipamkit.drivers.default._bitmap import AddressSet
from ipamkit.drivers.default._structures import AddressSpace, Master, new_address_set
from ipamkit.errors import (
    BadPoolError,
    InvalidAddressSpaceError,
    InvalidSubPoolError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
    NoMoreSubnetsError,
    PoolOverlapError,
)
from ipamkit.pools import (
    PoolKey,
    check_sub_pool,
    cidr_text,
    format_pool_id,
    parse_pool_id,
    prefix_text,
)
from ipamkit.predefined import PoolSpec, predefined_lists

__all__ = ["GLOBAL_ADDRESS_SPACE", "LOCAL_ADDRESS_SPACE", "DefaultIpam"]

LOCAL_ADDRESS_SPACE = "LocalDefault"
GLOBAL_ADDRESS_SPACE = "GlobalDefault"

_FEATURES = frozenset(
    {
        Feature.EXPLICIT_POOLS,
        Feature.SUB_POOLS,
        Feature.CHOSEN_POOLS,
        Feature.IPV6,
        Feature.DYNAMIC_ADDRESSES,
        Feature.SPECIFIC_ADDRESSES,
        Feature.THREAD_SAFE,
        Feature.EXACT_ERRORS,
    }
)
# AddressResult(...) goes through a Python-level __new__; this is the C one.
_new_tuple = tuple.__new__


#: Everything a call on one pool ID needs, found with one dict lookup:
#: ``(master, low, high, child, space)``, where ``[low, high]`` are the ordinals
#: handed out dynamically (the subpool's, or the whole master's) and ``child``
#: is the subpool or None. A plain tuple, not a NamedTuple: CPython unpacks and
#: indexes only exact tuples on its fast paths (a NamedTuple route cost every
#: address call about 50 ns, 7 % of it).
_Route: TypeAlias = tuple[Master, int, int, "Network | None", AddressSpace]


class DefaultIpam(Ipam):
    """Docker's built-in allocator: address spaces ``LocalDefault`` and ``GlobalDefault``.

    ``local_pools`` and ``global_pools`` replace Docker's predefined lists (IPv4
    and IPv6 groups alike); ``local_ipv6_pools`` and ``global_ipv6_pools`` add
    IPv6 groups after them. Each group is ``(base, size)``: the base pool split
    into pools of prefix length ``size``.
    """

    pool_reading = PoolReading.EXCLUSIVE

    def __init__(
        self,
        *,
        local_pools: Iterable[PoolSpec] | None = None,
        global_pools: Iterable[PoolSpec] | None = None,
        local_ipv6_pools: Iterable[PoolSpec] = (),
        global_ipv6_pools: Iterable[PoolSpec] = (),
    ) -> None:
        local, global_ = predefined_lists(
            local_pools, global_pools, local_ipv6_pools, global_ipv6_pools
        )
        self._spaces = {
            LOCAL_ADDRESS_SPACE: AddressSpace(LOCAL_ADDRESS_SPACE, local),
            GLOBAL_ADDRESS_SPACE: AddressSpace(GLOBAL_ADDRESS_SPACE, global_),
        }
        # Chosen IPv6 pools are declared when the local space, the one callers
        # use unless they name another, has IPv6 pools to choose from.
        chosen_v6 = 6 in self._spaces[LOCAL_ADDRESS_SPACE].predefined.versions
        #: What this driver offers.
        self.features = (_FEATURES | {Feature.CHOSEN_IPV6_POOLS}) if chosen_v6 else _FEATURES
        # One lock for everything: every call is short, and the two address
        # spaces share the route table.
        self._lock = threading.Lock()
        # Canonical pool ID to route, for masters and subpools alike.
        self._routes: dict[str, _Route] = {}

    def get_default_address_spaces(self) -> tuple[str, str]:
        return LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE

    def is_builtin(self) -> bool:
        return True

    # -- pools ------------------------------------------------------------------

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        if not (
            type(address_space) is str
            and type(pool) is str
            and type(sub_pool) is str
            and options is None
            and type(v6) is bool
        ):  # the usual call skips five calls; the checks say what is wrong
            check_pool_request(address_space, pool, sub_pool, options, v6)  # options: ignored
        space = self._spaces.get(address_space) or self._space(address_space)
        if not pool:
            if sub_pool:
                raise InvalidSubPoolError(f"subpool {sub_pool!r} requested without a pool")
            return self._request_predefined(space, 6 if v6 else 4)
        version, first, prefixlen, exact = parse_prefix(pool)
        child = parse_pool(sub_pool, what="subpool") if sub_pool else None
        network = NETWORK_MAKERS[version](first, prefixlen)
        if child is not None:
            check_sub_pool(network, child)
        # Dotted decimal has one spelling (inet_pton refuses leading zeros, as
        # ipaddress does): an IPv4 pool without host bits is its own text.
        canonical = exact and version == 4 and type(pool) is str  # a subclass may format otherwise
        cidr = pool if canonical else cidr_text(version, first, prefixlen)
        pool_id = format_pool_id(space.name, cidr)
        lock = self._lock
        lock.acquire()
        try:
            route = self._routes.get(pool_id)
            if route is None:
                # A master created for a subpool goes with its last subpool.
                master = Master(version, first, prefixlen, cidr, auto_release=child is not None)
                self._add_master(space, master, pool_id)
            elif child is None:
                raise PoolOverlapError(f"pool {cidr} already exists in address space {space.name}")
            else:
                master = route[0]
                if master.has_child(child):
                    raise PoolOverlapError(
                        f"subpool {child} of pool {cidr} already exists "
                        f"in address space {space.name}"
                    )
            if child is not None:
                pool_id = self._add_child(space, master, child)
            return _new_tuple(PoolResult, (pool_id, network, {}))
        finally:
            lock.release()

    def _space(self, name: str) -> AddressSpace:
        space = self._spaces.get(name)
        if space is None:
            if not name:
                raise InvalidAddressSpaceError("address space must not be empty")
            raise InvalidAddressSpaceError(
                f"cannot find address space {name!r}; this driver has "
                f"{LOCAL_ADDRESS_SPACE} and {GLOBAL_ADDRESS_SPACE}"
            )
        return space

    def _request_predefined(self, space: AddressSpace, version: int) -> PoolResult:
        lock = self._lock
        lock.acquire()
        try:
            found = space.choose(version)
            if found is None:
                raise NoMoreSubnetsError(
                    f"could not find an available, non-overlapping IPv{version} address pool "
                    f"among the defaults of address space {space.name}"
                )
            first, prefixlen = found
            cidr = cidr_text(version, first, prefixlen)
            pool_id = format_pool_id(space.name, cidr)
            self._add_master(space, Master(version, first, prefixlen, cidr, False), pool_id)
            network = NETWORK_MAKERS[version](first, prefixlen)
            return _new_tuple(PoolResult, (pool_id, network, {}))
        finally:
            lock.release()

    def _add_master(self, space: AddressSpace, master: Master, pool_id: str) -> None:
        if not space.add(master):
            raise PoolOverlapError(
                f"pool {master.cidr} overlaps with another pool in address space {space.name}"
            )
        self._routes[pool_id] = (master, 0, master.size - 1, None, space)

    def _add_child(self, space: AddressSpace, master: Master, child: Network) -> str:
        pool_id = format_pool_id(space.name, master.cidr, prefix_text(child))
        low = int(child.network_address) - master.first
        self._routes[pool_id] = (master, low, low + child.num_addresses - 1, child, space)
        master.add_child(child)
        return pool_id

    def release_pool(self, pool_id: str) -> None:
        check_str(pool_id, "pool_id")
        key = parse_pool_id(pool_id)
        lock = self._lock
        lock.acquire()
        try:
            master, _, _, child, space = self._pool_route(key, self._master_route(key))
            if child is None:
                master.auto_release = True
            else:
                master.discard_child(child)
                del self._routes[format_pool_id(space.name, master.cidr, prefix_text(child))]
            if master.auto_release and master.children is None:
                space.remove(master)
                del self._routes[format_pool_id(space.name, master.cidr)]
        finally:
            lock.release()

    def _master_route(self, key: PoolKey) -> _Route:
        """The route of the master a pool ID names; BadPoolError if it names none (D7)."""
        if key.space not in self._spaces:
            raise BadPoolError(f"pool id names address space {key.space!r}, which does not exist")
        if key.master_id is None:
            raise BadPoolError(f"pool id names a pool with host bits set, masked {key.master}")
        route = self._routes.get(key.master_id)
        if route is None:
            raise BadPoolError(f"address space {key.space} has no pool {key.master}")
        return route

    def _pool_route(self, key: PoolKey, master_route: _Route) -> _Route:
        """The route a pool ID names, given its master's; BadPoolError if it names none (D7)."""
        if key.child is None:
            return master_route
        if key.pool_id is None:
            raise BadPoolError(f"pool id names a subpool with host bits set, masked {key.child}")
        route = self._routes.get(key.pool_id)
        if route is None:
            raise BadPoolError(
                f"pool {key.master} of address space {key.space} has no subpool {key.child}"
            )
        return route

    # -- addresses --------------------------------------------------------------

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        # The fast path serves the common call (a canonical pool ID, no address
        # or a plainly valid one) in a few primitive steps; anything else, or
        # any failure, goes through the full checks below, which then raise the
        # exact error.
        if type(pool_id) is not str:  # an object that merely hashes like an ID: TypeError
            return self._request_address(pool_id, address, options)
        if options is None:
            serial = False
        else:  # gateway and serial (Swarm) requests come with options
            serial = check_options(options).get(ALLOC_SERIAL_PREFIX) == "true"
        lock = self._lock
        lock.acquire()
        try:
            try:
                master, low, high, _, _ = self._routes[pool_id]
            except KeyError:
                master = None
            if master is not None:
                ordinal: int | None
                addresses, make = master.addressing or master.open()
                chunks = addresses.chunks
                bounds = chunks[0]
                if address is None and not serial and bounds and bounds[0] <= low < bounds[1]:
                    # take_first for the usual case, inline: the lowest free
                    # ordinal is the end of the first run (always so for a
                    # master, whose ordinal 0 is reserved but in IPv4 /31
                    # and /32). The run grows by one, or meets the next.
                    ordinal = bounds[1]
                    after = ordinal + 1
                    if ordinal > high:
                        ordinal = None
                    elif len(bounds) > 2:
                        if bounds[2] == after:
                            del bounds[1:3]
                        else:
                            bounds[1] = after
                        addresses.cursor = after
                    elif len(chunks) == 1:
                        bounds[1] = addresses.cursor = after
                    else:  # the next run opens the next chunk
                        ordinal = addresses.take_first(low, high)
                elif address is None:
                    ordinal = addresses.take_any(low, high, serial)
                else:
                    ordinal = _ordinal(master, address)
                    if ordinal is not None and not addresses.add(ordinal):
                        ordinal = None
                if ordinal is not None:
                    return _new_tuple(AddressResult, (make(master.first + ordinal), {}))
        finally:
            lock.release()
        return self._request_address(pool_id, address, options)

    def _request_address(
        self, pool_id: str, address: Address | str | None, options: Mapping[str, str] | None
    ) -> AddressResult:
        check_str(pool_id, "pool_id")
        serial = check_options(options).get(ALLOC_SERIAL_PREFIX) == "true"
        key = parse_pool_id(pool_id)
        value = None if address is None else parse_address(address)
        lock = self._lock
        lock.acquire()
        try:
            master_route = self._master_route(key)
            master = master_route[0]
            ordinal = None if value is None else _checked_ordinal(master, value)
            _, low, high, child, _ = self._pool_route(key, master_route)
            addresses, make = master.addressing or master.open()
            if ordinal is None:
                ordinal = addresses.take_any(low, high, serial)
                if ordinal is None:
                    where = "subpool" if child is not None else "pool"
                    raise NoAvailableIPsError(f"no available addresses on {where} {pool_id}")
            elif not addresses.add(ordinal):
                state = "is reserved" if ordinal in addresses.reserved else "is already allocated"
                raise IPAlreadyAllocatedError(f"address {value} {state} in pool {key.master}")
            return AddressResult(make(master.first + ordinal), {})
        finally:
            lock.release()

    def release_address(self, pool_id: str, address: Address | str) -> None:
        if type(pool_id) is not str:  # an object that merely hashes like an ID: TypeError
            self._release_address(pool_id, address)
            return
        lock = self._lock
        lock.acquire()
        try:
            try:
                master = self._routes[pool_id][0]
            except KeyError:
                pass
            else:
                ordinal = _ordinal(master, address)
                if ordinal is not None:
                    # No addressing: nothing was ever allocated.
                    if master.addressing is not None and master.addressing[0].release(ordinal):
                        self._released(master, ordinal)
                    return
        finally:
            lock.release()
        self._release_address(pool_id, address)

    def _release_address(self, pool_id: str, address: Address | str) -> None:
        check_str(pool_id, "pool_id")
        key = parse_pool_id(pool_id)
        value = parse_address(address)
        lock = self._lock
        lock.acquire()
        try:
            master = self._pool_route(key, self._master_route(key))[0]
            ordinal = _checked_ordinal(master, value)
            if master.addressing is not None and master.addressing[0].release(ordinal):
                self._released(master, ordinal)
        finally:
            lock.release()

    def _released(self, master: Master, ordinal: int) -> None:
        """Called under the lock when ``ordinal`` of ``master`` was freed.

        A hook for a layer that records changes (the durable driver): it runs
        only for a release that changed something, so a no-op release costs the
        same in every layer. To refuse the release it frees the ordinal no more
        (re-adds it) and raises.
        """

    # -- inspection -------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Return a comparable picture of the whole state, for tests and debugging."""
        lock = self._lock
        lock.acquire()
        try:
            masters = sorted(
                (space.name, master.cidr, _master_snapshot(master))
                for master, _, _, child, space in self._routes.values()
                if child is None
            )
            return {
                name: {
                    "start": space.start,
                    "masters": {cidr: state for owner, cidr, state in masters if owner == name},
                }
                for name, space in self._spaces.items()
            } | {"routes": sorted(self._routes)}
        finally:
            lock.release()


def _master_snapshot(master: Master) -> tuple[object, ...]:
    # A master not opened yet looks as it will once opened: the state is the same.
    addresses = master.addressing[0] if master.addressing else _fresh_addresses(master)
    children = sorted(map(str, master.children or ()))
    return tuple(addresses.bounds), addresses.cursor, children, master.auto_release


def _fresh_addresses(master: Master) -> AddressSet:
    return new_address_set(master.version, master.first, master.size)


def _ordinal(master: Master, address: object) -> int | None:
    """The ordinal of a plainly valid address inside ``master``, else None.

    The fast paths use this; None sends the call through the full checks, which
    then raise the exact error.
    """
    kind = type(address)
    # An interface (what request_address returned) counts as its address.
    if kind is IPv4Address or kind is IPv4Interface:
        if master.version != 4:
            return None
        ordinal = address_value(address) - master.first  # type: ignore[arg-type]
    elif kind is IPv6Address or kind is IPv6Interface:
        if master.version != 6 or address.scope_id is not None:  # type: ignore[attr-defined]
            return None
        value = address_value(address)  # type: ignore[arg-type]
        if value >> 32 == IPV4_MAPPED:
            return None
        ordinal = value - master.first
    elif kind is str:
        try:
            # inet_pton accepts exactly what ipaddress does, zones aside (it
            # rejects those); a differential test checks this.
            packed = inet_pton(AF_INET6 if master.version == 6 else AF_INET, address)  # type: ignore[arg-type]
        except (OSError, ValueError, UnicodeError):
            return None
        value = int.from_bytes(packed, "big")
        if len(packed) == 16 and value >> 32 == IPV4_MAPPED:
            return None
        ordinal = value - master.first
    else:
        return None
    return ordinal if 0 <= ordinal < master.size else None


def _checked_ordinal(master: Master, value: Address) -> int:
    ordinal = int(value) - master.first
    if value.version != master.version or not 0 <= ordinal < master.size:
        raise IPOutOfRangeError(f"address {value} is not in pool {master.cidr}")
    return ordinal
