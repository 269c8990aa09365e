"""Predefined pools: where a pool comes from when the caller names none.

A list is a sequence of ``(base, size)`` groups, as Docker's
``--default-address-pool base=...,size=...``: ``base`` split into pools of prefix
length ``size``. The pools are never materialised (an IPv6 /32 split into /64s
has 2^32 of them); an index into the list maps to its pool by arithmetic.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Network, IPv6Network
from typing import NamedTuple, Protocol, TypeAlias

from ipamkit._arguments import parse_pool
from ipamkit._contract import Network
from ipamkit._interfaces import network_maker
from ipamkit.errors import InvalidParameterError

__all__ = [
    "DOCKER_GLOBAL_POOLS",
    "DOCKER_LOCAL_POOLS",
    "LIST_OPTIONS",
    "PoolSpec",
    "PredefinedPools",
    "Taken",
    "check_pool_specs",
    "lists_from_options",
    "parse_pool_specs",
    "predefined_lists",
]

#: One group of a predefined list: a base pool and the prefix length it is split to.
PoolSpec: TypeAlias = tuple["str | Network", int]

#: Docker's local list: 31 IPv4 pools, 172.17.0.0/16 to 192.168.240.0/20.
DOCKER_LOCAL_POOLS: tuple[PoolSpec, ...] = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)
#: Docker's global list: 10.0.0.0/8 split into 65,536 /24 pools.
DOCKER_GLOBAL_POOLS: tuple[PoolSpec, ...] = (("10.0.0.0/8", 24),)


class Taken(Protocol):
    """The addresses a walk must avoid (the masters of an address space)."""

    def free_run(self, start: int) -> tuple[int, int]:
        """Return ``[first, stop)``: the first run of free addresses at or after ``start``."""


#: The options (and keyword arguments) that replace or extend the two lists.
LIST_OPTIONS = ("local_pools", "global_pools", "local_ipv6_pools", "global_ipv6_pools")

_SIZE_SHAPE = re.compile(r"[0-9]{1,3}")


class _Group(NamedTuple):
    offset: int  # index of the group's first pool in the whole list
    pools: int
    base: int
    shift: int  # host bits of each pool: pool k starts at base + (k << shift)
    prefixlen: int
    version: int


def parse_pool_specs(text: str, option: str) -> list[tuple[Network, int]]:
    """Parse an option value ``base/len:size,base/len:size,...`` into checked groups."""
    specs: list[PoolSpec] = []
    for item in text.split(","):
        base, _, size = item.rpartition(":")
        if not base or _SIZE_SHAPE.fullmatch(size) is None:
            raise InvalidParameterError(
                f"option {option}: item {item!r} is not of the form <base>/<length>:<size>, "
                "e.g. 172.17.0.0/16:16"
            )
        specs.append((base, int(size)))
    return check_pool_specs(specs, option)


def check_pool_specs(
    specs: Iterable[PoolSpec], what: str, version: int | None = None
) -> list[tuple[Network, int]]:
    """Check ``(base, size)`` groups; ``version`` restricts them to one IP family."""
    checked: list[tuple[Network, int]] = []
    for spec in specs:
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise TypeError(f"{what} items must be (base, size) tuples, not {spec!r}")
        base, size = spec
        if isinstance(base, str):
            try:
                network = parse_pool(base)
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"{what}: {exc}") from None
            if network is None or str(network) != base:
                raise InvalidParameterError(
                    f"{what}: base pool {base!r} must be a network address/length"
                    + (f" such as {network}" if network is not None else "")
                )
        elif isinstance(base, (IPv4Network, IPv6Network)):
            network = base
        else:
            raise TypeError(
                f"{what}: base must be a str, IPv4Network or IPv6Network, not {type(base).__name__}"
            )
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"{what}: size must be an int, not {type(size).__name__}")
        if not network.prefixlen <= size <= network.max_prefixlen:
            raise InvalidParameterError(
                f"{what}: size {size} of base pool {network} must lie between "
                f"{network.prefixlen} and {network.max_prefixlen}"
            )
        if version is not None and network.version != version:
            raise InvalidParameterError(f"{what}: base pool {network} is not IPv{version}")
        checked.append((network, size))
    return checked


def lists_from_options(options: Mapping[str, str]) -> dict[str, list[tuple[Network, int]]]:
    """Parse the :data:`LIST_OPTIONS` among a driver's string options.

    The result holds keyword arguments for :func:`predefined_lists`.
    """
    return {
        key: parse_pool_specs(value, key) for key, value in options.items() if key in LIST_OPTIONS
    }


def predefined_lists(
    local_pools: Iterable[PoolSpec] | None = None,
    global_pools: Iterable[PoolSpec] | None = None,
    local_ipv6_pools: Iterable[PoolSpec] = (),
    global_ipv6_pools: Iterable[PoolSpec] = (),
) -> tuple[PredefinedPools, PredefinedPools]:
    """The local and the global list: Docker's unless replaced, IPv6 groups after them."""
    local = check_pool_specs(
        DOCKER_LOCAL_POOLS if local_pools is None else local_pools, "local_pools"
    ) + check_pool_specs(local_ipv6_pools, "local_ipv6_pools", version=6)
    global_ = check_pool_specs(
        DOCKER_GLOBAL_POOLS if global_pools is None else global_pools, "global_pools"
    ) + check_pool_specs(global_ipv6_pools, "global_ipv6_pools", version=6)
    return PredefinedPools(local), PredefinedPools(global_)


class PredefinedPools:
    """An ordered list of pools, described by groups and walked without enumeration."""

    def __init__(self, groups: Iterable[tuple[Network, int]]) -> None:
        self._groups: list[_Group] = []
        items = []
        offset = 0
        for network, size in groups:
            items.append(f"{network}:{size}")
            shift = network.max_prefixlen - size
            count = 1 << (size - network.prefixlen)
            self._groups.append(
                _Group(
                    offset,
                    count,
                    int(network.network_address),
                    shift,
                    size,
                    network.version,
                )
            )
            offset += count
        self._offsets = [group.offset for group in self._groups]
        self._length = offset
        #: The list as the pool options spell it, e.g. ``172.17.0.0/16:16,...``.
        self.text = ",".join(items)
        #: The IP versions the list holds pools of.
        self.versions = frozenset(group.version for group in self._groups)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Network:
        if not 0 <= index < self._length:
            raise IndexError(index)
        group = self._groups[bisect_right(self._offsets, index) - 1]
        start = group.base + ((index - group.offset) << group.shift)
        return network_maker(group.version)(start, group.prefixlen)

    def choose(self, version: int, taken: Taken, start: int) -> tuple[int, int, int] | None:
        """Choose the first pool of IP ``version`` that overlaps nothing in ``taken``.

        Docker's round robin: the walk starts at index ``start`` (Docker's
        ``predefinedStartIndex``) and wraps round to the beginning. Returns the
        pool's first address and prefix length, and where the next walk starts:
        after the pool, or at 0 past the end or when the walk wrapped round
        (Docker resets the index to 0 rather than wrapping it). None when every
        pool is blocked.
        """
        found = self._first_fit(version, taken, start, self._length)
        if found is not None:
            index, first, prefixlen = found
            return first, prefixlen, (index + 1) % self._length
        found = self._first_fit(version, taken, 0, start)
        if found is not None:
            _, first, prefixlen = found
            return first, prefixlen, 0
        return None

    def _first_fit(
        self, version: int, taken: Taken, low: int, high: int
    ) -> tuple[int, int, int] | None:
        index = low
        number = bisect_right(self._offsets, index) - 1
        while index < high:
            group = self._groups[number]
            end = min(high, group.offset + group.pools)
            if group.version == version:
                width = 1 << group.shift
                while index < end:
                    first = group.base + ((index - group.offset) << group.shift)
                    free, stop = taken.free_run(first)
                    if free == first and stop >= first + width:
                        return index, first, group.prefixlen
                    # Jump straight to the first pool starting at or after the
                    # free run (or, when the pool is cut short, after the master
                    # that cuts it): a blocking master is skipped whole, however
                    # many pools it covers.
                    resume = free if free > first else stop
                    index = group.offset + ((resume - group.base + width - 1) >> group.shift)
            index = end
            number += 1
        return None
