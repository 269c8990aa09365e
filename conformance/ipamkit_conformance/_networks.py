"""Pools and addresses the suite asks for, and the arithmetic on them."""

from __future__ import annotations

from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_network

from ipamkit import Address, Network
from ipamkit.errors import ForbiddenError, UnavailableError

__all__ = [
    "MALFORMED_ADDRESSES",
    "MALFORMED_POOLS",
    "RESERVED_ERRORS",
    "UNIVERSE_V4",
    "UNIVERSE_V6",
    "address_at",
    "edges",
    "free_count",
    "high_half_edges",
    "may_be_reserved",
    "outside",
    "pick_free",
    "within",
]


def _nets(*texts: str) -> tuple[str, ...]:
    return tuple(str(ip_network(t)) for t in texts)


# Networks drivers choose from (Docker's predefined lists: 172.17-31/16 and
# 192.168.x/20 locally, 10.x.y/24 globally), their supersets and subnets, and
# small pools that exhaust quickly. Nested on purpose, so that random requests
# overlap live pools often.
UNIVERSE_V4 = _nets(
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.0.0/24",
    "10.0.1.0/24",
    "10.0.0.0/28",
    "10.0.0.16/29",
    "10.99.0.0/16",
    "10.99.0.0/29",
    "10.99.0.8/30",
    "10.99.0.12/31",
    "10.99.0.14/32",
    "172.16.0.0/12",
    "172.17.0.0/16",
    "172.17.0.0/24",
    "172.18.0.0/16",
    "172.19.0.0/16",
    "172.31.0.0/16",
    "172.31.255.240/28",
    "192.168.0.0/16",
    "192.168.0.0/20",
    "192.168.16.0/20",
    "192.168.16.0/28",
    "192.168.240.0/20",
)
UNIVERSE_V6 = _nets(
    "fd00::/8",
    "fd12:3456::/32",
    "fd12:3456::/48",
    "fd12:3456::/64",
    "fd12:3456:0:1::/64",
    "fd12:3456::/120",
    "fd12:3456::/126",
    "fd12:3456::/127",
    "fd12:3456::ff/128",
    "2001:db8::/48",
    "2001:db8:0:ffff::/64",
)

#: Strings that are not an ``address/length`` prefix.
MALFORMED_POOLS = ("bogus", "10.0.0.1", "10.0.0.0/33", "300.1.0.0/16", "2001:db8::/129")
#: Strings that are not an IP address.
MALFORMED_ADDRESSES = ("bogus", "10.0.0.256", "10.0.0.1/24", "2001:db8::g")


#: The classes a driver refuses a reserved address with.
RESERVED_ERRORS = (ForbiddenError, UnavailableError)


def within(inner: Network, outer: Network) -> bool:
    """Tell whether ``inner`` lies inside ``outer`` (equal counts)."""
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def address_at(network: Network, n: int) -> Address:
    """Return the address of ``network`` at offset ``n`` (wrapping around)."""
    return network.network_address + (n % network.num_addresses)


def outside(network: Network, n: int) -> Address:
    """Return an address of the same family just outside ``network`` (or far from it)."""
    top = network.broadcast_address
    bottom = network.network_address
    maximum = 2**32 - 1 if network.version == 4 else 2**128 - 1
    if n % 2 and int(top) < maximum:
        return top + 1
    if int(bottom) > 0:
        return bottom - 1
    return top + 1


def other_family(network: Network) -> Address:
    """Return an address of the other IP family."""
    return IPv6Address("2001:db8:ffff::1") if network.version == 4 else IPv4Address("10.255.0.1")


def may_be_reserved(network: Network, address: Address) -> bool:
    """Tell whether a driver may refuse ``address`` as reserved (network or IPv4 broadcast)."""
    if address == network.network_address:
        return True
    return isinstance(network, IPv4Network) and address == network.broadcast_address


def edges(network: Network) -> tuple[Address, ...]:
    """Return where allocators slip: the first two and the last two addresses of ``network``."""
    first, last = int(network.network_address), int(network.broadcast_address)
    values = sorted({first, min(first + 1, last), max(last - 1, first), last})
    return tuple(network.network_address + (v - first) for v in values)


def high_half_edges(network: Network) -> tuple[Address, ...]:
    """Return the addresses on either side of offset 2**64 of an IPv6 network wider than /64.

    An allocator that keeps offsets in 64 bits (Docker's v26 does) aliases them.
    """
    if network.version != 6 or network.prefixlen >= 64:
        return ()
    return (network.network_address + (2**64 - 1), network.network_address + 2**64)


def free_count(scope: Network, held: Collection[Address]) -> int:
    """Return how many addresses of ``scope`` are not in ``held``."""
    return scope.num_addresses - sum(1 for a in held if a in scope)


def pick_free(scope: Network, held: Collection[Address], n: int) -> Address | None:
    """Return an address of ``scope`` not in ``held`` (chosen by ``n``), or None if all are."""
    if scope.num_addresses <= 4096:
        free = [a for a in _addresses(scope) if a not in held]
        return free[n % len(free)] if free else None
    for step in range(64):
        candidate = address_at(scope, n + step * 7919)
        if candidate not in held:
            return candidate
    return None  # pragma: no cover - 64 misses in a range of more than 4096


def _addresses(scope: Network) -> list[Address]:
    base = scope.network_address
    return [base + i for i in range(scope.num_addresses)]
