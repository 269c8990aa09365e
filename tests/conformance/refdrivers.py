"""A small correct driver, and broken drivers that each carry one realistic bug.

The tests install each as a distribution of its own (a dist-info with an
``ipamkit.drivers`` entry point) and run the conformance suite against it. Every
broken driver is the reference driver with one method overridden.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_interface, ip_network
from pathlib import Path
from typing import ClassVar

import ipamkit
from ipamkit import (
    Address,
    AddressResult,
    Feature,
    Interface,
    Ipam,
    Network,
    PoolReading,
    PoolResult,
    Registerer,
)
from ipamkit.errors import (
    BadPoolError,
    ForbiddenError,
    InvalidAddressSpaceError,
    InvalidParameterError,
    InvalidSubPoolError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
    NoMoreSubnetsError,
    PoolOverlapError,
)
from ipamkit.pools import unusable_ordinals

SPACES = ("alpha", "beta")
# Its own places to choose from, unlike Docker's: the suite must not assume those.
CHOOSE_V4 = IPv4Network("100.64.0.0/10")
CHOOSE_V6 = IPv6Network("fd99::/16")


@dataclass
class Pool:
    pool_id: str
    space: str
    network: Network
    sub: Network | None
    refs: int = 1
    held: set[Address] = field(default_factory=set)

    @property
    def scope(self) -> Network:
        return self.sub or self.network


def _inside(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


#: Every feature but those about state beyond one instance (see statedrivers).
IN_MEMORY = frozenset(Feature) - {Feature.PERSISTENT, Feature.SHARED}


class RefIpam(Ipam):
    """Correct, and unlike ``default`` on purpose: other spaces, other pool IDs,
    addresses handed out from the top down, nothing reserved."""

    features = IN_MEMORY

    def __init__(self, reading: str = "exclusive") -> None:
        self.pool_reading = PoolReading(reading)
        self._lock = threading.RLock()
        self._pools: dict[str, Pool] = {}
        self._ids = itertools.count(1)

    def get_default_address_spaces(self) -> tuple[str, str]:
        return SPACES

    def is_builtin(self) -> bool:
        return False

    # -- pools ------------------------------------------------------------------

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        ipamkit.check_str(address_space, "address_space")
        ipamkit.check_options(options)
        ipamkit.check_bool(v6, "v6")
        with self._lock:
            if address_space not in SPACES:
                raise InvalidAddressSpaceError(f"no address space {address_space!r}")
            network, sub = self._parse(pool, sub_pool)
            if network is None:
                return self._create(address_space, self._choose(address_space, v6), None)
            for live in self._pools.values():
                if live.space == address_space and live.network == network and live.sub == sub:
                    if self.pool_reading is PoolReading.REFCOUNTED:
                        live.refs += 1
                        return PoolResult(live.pool_id, live.network, {})
                    raise PoolOverlapError
            if self._overlaps(address_space, network, chosen=False):
                raise PoolOverlapError
            return self._create(address_space, network, sub)

    def _parse(self, pool: str, sub_pool: str) -> tuple[Network | None, Network | None]:
        network = ipamkit.parse_pool(pool)
        sub = ipamkit.parse_pool(sub_pool, "subpool")
        if sub is not None and (network is None or not _inside(sub, network)):
            raise InvalidSubPoolError(f"{sub_pool!r} is not inside {pool!r}")
        return network, sub

    def _create(self, space: str, network: Network, sub: Network | None) -> PoolResult:
        pool_id = f"{space}:{next(self._ids)}"
        self._pools[pool_id] = Pool(pool_id, space, network, sub)
        return PoolResult(pool_id, network, {})

    def _overlaps(self, space: str, network: Network, chosen: bool) -> bool:
        return any(
            p.space == space
            and p.network.version == network.version
            and p.network.overlaps(network)
            for p in self._pools.values()
        )

    def _candidates(self, v6: bool) -> Iterator[Network]:
        return (CHOOSE_V6 if v6 else CHOOSE_V4).subnets(new_prefix=64 if v6 else 20)

    def _choose(self, space: str, v6: bool) -> Network:
        for candidate in itertools.islice(self._candidates(v6), 4096):
            if not self._overlaps(space, candidate, chosen=True):
                return candidate
        raise NoMoreSubnetsError

    def release_pool(self, pool_id: str) -> None:
        with self._lock:
            pool = self._pool(pool_id)
            pool.refs -= 1
            if pool.refs == 0:
                self._drop(pool)

    def _drop(self, pool: Pool) -> None:
        del self._pools[pool.pool_id]

    def _pool(self, pool_id: str) -> Pool:
        ipamkit.check_str(pool_id, "pool_id")
        pool = self._pools.get(pool_id)
        if pool is None:
            raise BadPoolError(f"no pool {pool_id!r}")
        return pool

    # -- addresses --------------------------------------------------------------

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        ipamkit.check_str(pool_id, "pool_id")
        wanted = None if address is None else ipamkit.parse_address(address)
        ipamkit.check_options(options)
        with self._lock:
            pool = self._pool(pool_id)
            if wanted is None:
                found = self._free(pool)
            else:
                if wanted not in pool.network:
                    raise IPOutOfRangeError(f"{wanted} is not in {pool.network}")
                if self._taken(pool, wanted):
                    raise IPAlreadyAllocatedError(f"{wanted} is held")
                found = wanted
            self._take(pool, found, dynamic=wanted is None)
            return AddressResult(self._interface(pool, found), {})

    def _free(self, pool: Pool) -> Address:
        # One of the first len(held) + 1 addresses is free, if any is.
        for candidate in itertools.islice(self._downwards(pool.scope), len(pool.held) + 1):
            if not self._taken(pool, candidate):
                return candidate
        raise NoAvailableIPsError

    def _downwards(self, scope: Network) -> Iterator[Address]:
        """Every address of ``scope`` a call accepts, from the top down.

        The IPv4-mapped IPv6 ones are left out: no call accepts them, so one handed
        out could never be released.
        """
        size = scope.num_addresses
        unusable = unusable_ordinals(scope.version, int(scope.network_address), size)
        ordinals = itertools.chain(
            range(size - 1, unusable.stop - 1, -1), range(unusable.start - 1, -1, -1)
        )
        return (scope.network_address + ordinal for ordinal in ordinals)

    def _taken(self, pool: Pool, address: Address) -> bool:
        return address in pool.held

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        pool.held.add(address)

    def _interface(self, pool: Pool, address: Address) -> Interface:
        return ip_interface((address, pool.network.prefixlen))

    def release_address(self, pool_id: str, address: Address | str) -> None:
        ipamkit.check_str(pool_id, "pool_id")
        released = ipamkit.parse_address(address)
        with self._lock:
            pool = self._pool(pool_id)
            if released not in pool.network:
                raise IPOutOfRangeError(f"{released} is not in {pool.network}")
            self._untake(pool, released)

    def _untake(self, pool: Pool, address: Address) -> None:
        pool.held.discard(address)


# -- the bugs -------------------------------------------------------------------


class DuplicateAddress(RefIpam):
    """Keeps specific allocations in a table of their own, which the dynamic search misses."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._specific: set[tuple[str, Address]] = set()

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        if dynamic:
            super()._take(pool, address, dynamic)
        else:
            self._specific.add((pool.pool_id, address))

    def _taken(self, pool: Pool, address: Address) -> bool:
        return super()._taken(pool, address) or (pool.pool_id, address) in self._specific

    def _free(self, pool: Pool) -> Address:
        for candidate in self._downwards(pool.scope):
            if not super()._taken(pool, candidate):
                return candidate
        raise NoAvailableIPsError


class OverlapAllowed(RefIpam):
    """Checks overlap only for the pools it chooses."""

    def _overlaps(self, space: str, network: Network, chosen: bool) -> bool:
        return chosen and super()._overlaps(space, network, chosen)


class WrongErrorClass(RefIpam):
    """Answers an unknown pool ID with the generic class."""

    def _pool(self, pool_id: str) -> Pool:
        try:
            return super()._pool(pool_id)
        except BadPoolError as error:
            raise InvalidParameterError(str(error)) from None


class ReleaseFreesNothing(RefIpam):
    """Accepts a released address but keeps it marked."""

    def _untake(self, pool: Pool, address: Address) -> None:
        pass


class IgnoresSubpool(RefIpam):
    """Hands out dynamic addresses from the whole pool."""

    def _free(self, pool: Pool) -> Address:
        return super()._free(Pool(pool.pool_id, pool.space, pool.network, None, held=pool.held))


class WrongPrefix(RefIpam):
    """Returns host routes instead of the pool's prefix length."""

    def _interface(self, pool: Pool, address: Address) -> Interface:
        return ip_interface(address)


class FailingCallChangesState(RefIpam):
    """Creates the pool before it checks the subpool."""

    def _parse(self, pool: str, sub_pool: str) -> tuple[Network | None, Network | None]:
        network = ipamkit.parse_pool(pool)
        try:
            return super()._parse(pool, sub_pool)
        except InvalidSubPoolError:
            if network is not None:
                self._create(SPACES[0], network, None)
            raise


class DoubleReleaseAccepted(RefIpam):
    """Releasing an unknown or released pool silently succeeds."""

    def release_pool(self, pool_id: str) -> None:
        if ipamkit.check_str(pool_id, "pool_id") in self._pools:
            super().release_pool(pool_id)


class ChosenOverlapsExplicit(RefIpam):
    """Chooses a place that no pool has exactly, missing pools inside it."""

    def _choose(self, space: str, v6: bool) -> Network:
        for candidate in itertools.islice(self._candidates(v6), 4096):
            if not any(p.space == space and p.network == candidate for p in self._pools.values()):
                return candidate
        raise NoMoreSubnetsError


class RefcountWrong(RefIpam):
    """Counts references but frees the pool on the first release."""

    def release_pool(self, pool_id: str) -> None:
        with self._lock:
            self._drop(self._pool(pool_id))


class V6FlagIgnored(RefIpam):
    """Always chooses an IPv4 pool."""

    def _choose(self, space: str, v6: bool) -> Network:
        return super()._choose(space, False)


class SpacesShared(RefIpam):
    """Keeps one table for both address spaces."""

    def _overlaps(self, space: str, network: Network, chosen: bool) -> bool:
        return any(
            p.network.version == network.version and p.network.overlaps(network)
            for p in self._pools.values()
        )


class HeldAddressGranted(RefIpam):
    """Grants a specific address without looking whether it is held."""

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        if address is not None:
            with self._lock:
                pool = self._pool(pool_id)
                wanted = ipamkit.parse_address(address)
                if wanted in pool.network:
                    pool.held.add(wanted)
                    return AddressResult(self._interface(pool, wanted), {})
        return super().request_address(pool_id, address, options)


class OutOfRangeAccepted(RefIpam):
    """Never checks that an address lies in the pool."""

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        if address is not None:
            with self._lock:
                pool = self._pool(pool_id)
                wanted = ipamkit.parse_address(address)
                if wanted not in pool.network:
                    pool.held.add(wanted)
                    return AddressResult(ip_interface((wanted, pool.network.prefixlen)), {})
        return super().request_address(pool_id, address, options)

    def release_address(self, pool_id: str, address: Address | str) -> None:
        with self._lock:
            self._pool(pool_id).held.discard(ipamkit.parse_address(address))


class ExhaustionMisreported(RefIpam):
    """Says "already in use" when a pool is full."""

    def _free(self, pool: Pool) -> Address:
        try:
            return super()._free(pool)
        except NoAvailableIPsError:
            raise IPAlreadyAllocatedError("pool is full") from None


class ThreadUnsafe(RefIpam):
    """Declares itself thread-safe but finds and marks an address in two steps."""

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        if address is not None:
            return super().request_address(pool_id, address, options)
        ipamkit.check_options(options)
        pool = self._pool(pool_id)
        found = self._free(pool)
        time.sleep(0.0005)  # the window another thread slips through
        pool.held.add(found)
        return AddressResult(self._interface(pool, found), {})


class ReleasedPoolKeepsAddresses(RefIpam):
    """Caches a released pool's addresses and gives them back to the next pool there."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._cache: dict[tuple[str, Network], set[Address]] = {}

    def _drop(self, pool: Pool) -> None:
        self._cache[(pool.space, pool.network)] = pool.held
        super()._drop(pool)

    def _create(self, space: str, network: Network, sub: Network | None) -> PoolResult:
        result = super()._create(space, network, sub)
        self._pools[result.pool_id].held = self._cache.pop((space, network), set())
        return result


class FreeListForgotten(RefIpam):
    """Reuses released addresses last-freed-first from a free list that a specific
    request forgets to take its address off (the tutorial's driver without its
    ``freed.pop``)."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._freed: dict[str, list[Address]] = {}

    def _free(self, pool: Pool) -> Address:
        freed = self._freed.get(pool.pool_id)
        return freed.pop() if freed else super()._free(pool)

    def _untake(self, pool: Pool, address: Address) -> None:
        if address in pool.held and address in pool.scope:
            self._freed.setdefault(pool.pool_id, []).append(address)
        super()._untake(pool, address)

    def _drop(self, pool: Pool) -> None:
        self._freed.pop(pool.pool_id, None)
        super()._drop(pool)


class SameAfterRelease(RefIpam):
    """Remembers the address released last and hands it out for every request after."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._last: dict[str, Address] = {}

    def _free(self, pool: Pool) -> Address:
        return self._last.get(pool.pool_id) or super()._free(pool)

    def _untake(self, pool: Pool, address: Address) -> None:
        if address in pool.held and address in pool.scope:
            self._last[pool.pool_id] = address
        super()._untake(pool, address)


class CursorNeverWraps(RefIpam):
    """Hands out addresses from a cursor that never goes back to released ones."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._cursor: dict[str, int] = {}

    def _free(self, pool: Pool) -> Address:
        offset = self._cursor.get(pool.pool_id, 0)
        for candidate in itertools.islice(self._downwards(pool.scope), offset, None):
            offset += 1
            if not self._taken(pool, candidate):
                self._cursor[pool.pool_id] = offset
                return candidate
        raise NoAvailableIPsError


class HintOutlivesPool(RefIpam):
    """Keeps a hint per place (how many of the top addresses are held) to start its
    search from, and keeps it when the pool there is released."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._hint: dict[tuple[str, Network], int] = {}

    def _free(self, pool: Pool) -> Address:
        hint = self._hint.get((pool.space, pool.scope), 0)
        for candidate in itertools.islice(self._downwards(pool.scope), hint, None):
            if not self._taken(pool, candidate):
                return candidate
        raise NoAvailableIPsError

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        super()._take(pool, address, dynamic)
        key = (pool.space, pool.scope)
        top = pool.scope.broadcast_address
        while self._hint.get(key, 0) < pool.scope.num_addresses and (
            top - self._hint.get(key, 0) in pool.held
        ):
            self._hint[key] = self._hint.get(key, 0) + 1

    def _untake(self, pool: Pool, address: Address) -> None:
        super()._untake(pool, address)
        if address in pool.scope:
            key = (pool.space, pool.scope)
            offset = int(pool.scope.broadcast_address) - int(address)
            self._hint[key] = min(self._hint.get(key, 0), offset)


class StaleIndexAfterReleasePool(RefIpam):
    """Names pools after their place (as Docker does) and looks specific requests up in
    an index of held addresses by pool ID that release_pool does not purge."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._index: set[tuple[str, Address]] = set()

    def _create(self, space: str, network: Network, sub: Network | None) -> PoolResult:
        pool_id = f"{space}/{network}/{sub or ''}"
        self._pools[pool_id] = Pool(pool_id, space, network, sub)
        return PoolResult(pool_id, network, {})

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        super()._take(pool, address, dynamic)
        self._index.add((pool.pool_id, address))

    def _untake(self, pool: Pool, address: Address) -> None:
        super()._untake(pool, address)
        self._index.discard((pool.pool_id, address))

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        if address is not None:
            with self._lock:
                wanted = ipamkit.parse_address(address)
                if (ipamkit.check_str(pool_id, "pool_id"), wanted) in self._index:
                    raise IPAlreadyAllocatedError(f"{wanted} is held")
        return super().request_address(pool_id, address, options)


class RotationFreesWrongSlot(RefIpam):
    """Chooses the first free slot of its list and trusts its slot table for chosen
    pools; releasing a chosen pool frees the slot chosen last, not its own."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._used: dict[tuple[str, bool], list[int]] = {}
        self._slot: dict[str, tuple[str, bool]] = {}

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        result = super().request_pool(address_space, pool, sub_pool, options, v6)
        if not pool:
            self._slot[result.pool_id] = (address_space, v6)
        return result

    def _choose(self, space: str, v6: bool) -> Network:
        used = self._used.setdefault((space, v6), [])
        explicit = [p for p in self._pools.values() if p.pool_id not in self._slot]
        for index, candidate in enumerate(itertools.islice(self._candidates(v6), 4096)):
            if index not in used and not any(
                p.space == space and p.network.overlaps(candidate)
                for p in explicit
                if p.network.version == candidate.version
            ):
                used.append(index)
                return candidate
        raise NoMoreSubnetsError

    def _drop(self, pool: Pool) -> None:
        key = self._slot.pop(pool.pool_id, None)
        if key is not None:
            self._used[key].pop()
        super()._drop(pool)


class V6LastAddressReserved(RefIpam):
    """Reserves the last address of every pool as a broadcast address, IPv6 ones too."""

    def _reserved(self, pool: Pool, address: Address) -> bool:
        return pool.network.num_addresses > 1 and address == pool.network.broadcast_address

    def _free(self, pool: Pool) -> Address:
        for candidate in self._downwards(pool.scope):
            if not self._reserved(pool, candidate) and not self._taken(pool, candidate):
                return candidate
        raise NoAvailableIPsError

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        if address is not None:
            with self._lock:
                pool = self._pool(pool_id)
                wanted = ipamkit.parse_address(address)
                if self._reserved(pool, wanted):
                    raise ForbiddenError(f"{wanted} is the broadcast address")
        return super().request_address(pool_id, address, options)


class Offsets64Bit(RefIpam):
    """Keeps addresses as 64-bit offsets into their pool, so IPv6 pools wider than /64
    alias an address with the one 2**64 away."""

    def _alias(self, pool: Pool, address: Address) -> Address:
        base = pool.network.network_address
        return base + (int(address) - int(base)) % 2**64

    def _taken(self, pool: Pool, address: Address) -> bool:
        return self._alias(pool, address) in {self._alias(pool, a) for a in pool.held}

    def _untake(self, pool: Pool, address: Address) -> None:
        pool.held = {a for a in pool.held if self._alias(pool, a) != self._alias(pool, address)}


class SubpoolOverflows(RefIpam):
    """Hands out addresses of the whole pool once the subpool is full."""

    def _free(self, pool: Pool) -> Address:
        try:
            return super()._free(pool)
        except NoAvailableIPsError:
            if pool.sub is None:
                raise
            return super()._free(Pool(pool.pool_id, pool.space, pool.network, None, held=pool.held))


class SpacesShareAddresses(RefIpam):
    """Keeps the held addresses of each pool in one table for both address spaces."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._held: dict[Network, set[Address]] = {}

    def _taken(self, pool: Pool, address: Address) -> bool:
        return address in self._held.get(pool.network, set())

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        super()._take(pool, address, dynamic)
        self._held.setdefault(pool.network, set()).add(address)

    def _untake(self, pool: Pool, address: Address) -> None:
        super()._untake(pool, address)
        self._held.get(pool.network, set()).discard(address)

    def _drop(self, pool: Pool) -> None:
        self._held.get(pool.network, set()).difference_update(pool.held)
        super()._drop(pool)


class FullFlagSticks(RefIpam):
    """Remembers that a pool ran out, and never forgets it when addresses come back."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._full: set[str] = set()

    def _free(self, pool: Pool) -> Address:
        if pool.pool_id in self._full:
            raise NoAvailableIPsError
        try:
            return super()._free(pool)
        except NoAvailableIPsError:
            self._full.add(pool.pool_id)
            raise


class ReleasedQuarantined(RefIpam):
    """Keeps released addresses from reuse for a while, specific requests included."""

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        self._quarantine: set[tuple[str, Address]] = set()

    def _taken(self, pool: Pool, address: Address) -> bool:
        return super()._taken(pool, address) or (pool.pool_id, address) in self._quarantine

    def _free(self, pool: Pool) -> Address:
        try:
            return super()._free(pool)
        except NoAvailableIPsError:
            # Out of fresh addresses: the quarantine ends.
            if not any(p == pool.pool_id for p, _ in self._quarantine):
                raise
            self._quarantine = {q for q in self._quarantine if q[0] != pool.pool_id}
            return super()._free(pool)

    def _untake(self, pool: Pool, address: Address) -> None:
        if address in pool.held:
            self._quarantine.add((pool.pool_id, address))
        super()._untake(pool, address)


class HandsOutIpv4Mapped(RefIpam):
    """Walks down from the top of a pool through its IPv4-mapped IPv6 addresses too: no
    call accepts those, so one it hands out can never be released."""

    def _downwards(self, scope: Network) -> Iterator[Address]:
        top = scope.broadcast_address
        return (top - offset for offset in range(scope.num_addresses))


class NeedsOptions(RefIpam):
    """Correct, but refuses requests that do not name its tenant in their options, as
    plugins that need Docker's ``--ipam-opt`` do."""

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        for value, name in ((address_space, "address_space"), (pool, "pool"), (sub_pool, "sub")):
            ipamkit.check_str(value, name)
        ipamkit.check_bool(v6, "v6")
        self._tenant(options)
        return super().request_pool(address_space, pool, sub_pool, options, v6)

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        ipamkit.check_str(pool_id, "pool_id")
        if address is not None:
            ipamkit.parse_address(address)
        self._tenant(options)
        return super().request_address(pool_id, address, options)

    def _tenant(self, options: Mapping[str, str] | None) -> None:
        if ipamkit.check_options(options).get("tenant") != "blue":
            raise InvalidParameterError("option tenant=blue is required")


class TwoBugs(WrongPrefix, DoubleReleaseAccepted):
    """Breaks C16 and C13 at once."""


class Shared(RefIpam):
    """Every instance shares one state, as clients of one remote daemon do, and another
    client holds pools in it. At exit it writes what is left and what was done to
    the other client's pools to the file named by ``IPAMKIT_SHARED_REPORT``."""

    #: Pools another client holds before the suite starts.
    FOREIGN = (("alpha", "10.99.0.0/16"), ("beta", "100.64.0.0/20"), ("alpha", "fd12:3456::/48"))
    _state: tuple[threading.RLock, dict[str, Pool], Iterator[int]] | None = None
    _touched: ClassVar[list[str]] = []

    def __init__(self, reading: str = "exclusive") -> None:
        super().__init__(reading)
        if Shared._state is None:
            Shared._state = (self._lock, self._pools, self._ids)
            foreign = [self._create(s, ip_network(n), None).pool_id for s, n in self.FOREIGN]
            atexit.register(self._report, foreign)
        self._lock, self._pools, self._ids = Shared._state

    def release_pool(self, pool_id: str) -> None:
        Shared._touched.append(pool_id)
        super().release_pool(pool_id)

    def release_address(self, pool_id: str, address: Address | str) -> None:
        Shared._touched.append(pool_id)
        super().release_address(pool_id, address)

    def _report(self, foreign: list[str]) -> None:
        report = {
            "left": sorted(set(self._pools) - set(foreign)),
            "foreign_left": sorted(set(self._pools) & set(foreign)),
            "foreign_touched": sorted(set(Shared._touched) & set(foreign)),
        }
        Path(os.environ["IPAMKIT_SHARED_REPORT"]).write_text(json.dumps(report))


class Undeclared(RefIpam):
    """The reference driver declaring nothing, as a remote plugin's proxy would."""

    features = frozenset()


class GenericErrors(WrongErrorClass):
    """Raises generic classes where the contract names a precise one, and says so."""

    features = IN_MEMORY - {Feature.EXACT_ERRORS}


#: Driver name to class; the broken ones are named after their bug.
DRIVERS: dict[str, type[RefIpam]] = {
    "reference": RefIpam,
    "reference-undeclared": Undeclared,
    "reference-shared": Shared,
    "reference-generic-errors": GenericErrors,
    "reference-needs-options": NeedsOptions,
    "broken-two-bugs": TwoBugs,
    "broken-duplicate-address": DuplicateAddress,
    "broken-overlap-allowed": OverlapAllowed,
    "broken-wrong-error-class": WrongErrorClass,
    "broken-release-frees-nothing": ReleaseFreesNothing,
    "broken-ignores-subpool": IgnoresSubpool,
    "broken-wrong-prefix": WrongPrefix,
    "broken-failing-call-changes-state": FailingCallChangesState,
    "broken-double-release-accepted": DoubleReleaseAccepted,
    "broken-chosen-overlaps-explicit": ChosenOverlapsExplicit,
    "broken-refcount-wrong": RefcountWrong,
    "broken-v6-flag-ignored": V6FlagIgnored,
    "broken-spaces-shared": SpacesShared,
    "broken-held-address-granted": HeldAddressGranted,
    "broken-out-of-range-accepted": OutOfRangeAccepted,
    "broken-exhaustion-misreported": ExhaustionMisreported,
    "broken-thread-unsafe": ThreadUnsafe,
    "broken-released-pool-keeps-addresses": ReleasedPoolKeepsAddresses,
    "broken-free-list-forgotten": FreeListForgotten,
    "broken-same-address-after-release": SameAfterRelease,
    "broken-cursor-never-wraps": CursorNeverWraps,
    "broken-hint-outlives-pool": HintOutlivesPool,
    "broken-stale-index-after-release-pool": StaleIndexAfterReleasePool,
    "broken-rotation-frees-wrong-slot": RotationFreesWrongSlot,
    "broken-v6-last-address-reserved": V6LastAddressReserved,
    "broken-64-bit-offsets": Offsets64Bit,
    "broken-subpool-overflows": SubpoolOverflows,
    "broken-spaces-share-addresses": SpacesShareAddresses,
    "broken-full-flag-sticks": FullFlagSticks,
    "broken-released-quarantined": ReleasedQuarantined,
    "broken-hands-out-ipv4-mapped": HandsOutIpv4Mapped,
}


@ipamkit.hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register the declared drivers; option ``reading`` picks the pool reading."""
    for name, values in options.items():
        unknown = set(values) - {"reading"}
        if unknown:
            raise InvalidParameterError(f"unknown options for {name}: {sorted(unknown)}")
        registerer.register_ipam_driver(name, DRIVERS[name](**values))
