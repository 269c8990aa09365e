"""Docker's rules of pools, for every driver that follows them.

Pool IDs in Docker's form (``<space>/<pool>`` or ``<space>/<pool>/<subpool>``),
where a subpool may lie, and which addresses of a pool are never handed out:
Docker's reserved ones, and ipamkit's unusable ones.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import NamedTuple

from ipamkit._arguments import IPV4_MAPPED, parse_prefix
from ipamkit._contract import Network
from ipamkit._interfaces import network_maker
from ipamkit.errors import InvalidPoolError, InvalidSubPoolError

__all__ = [
    "PoolKey",
    "check_sub_pool",
    "cidr_text",
    "format_pool_id",
    "parse_pool_id",
    "prefix_text",
    "reserved_ordinals",
    "unusable_ordinals",
]

_OCTETS = tuple(str(octet) for octet in range(256))
# The IPv4-mapped IPv6 addresses, ::ffff:0:0/96, as integers.
_MAPPED = range(IPV4_MAPPED << 32, (IPV4_MAPPED + 1) << 32)


class PoolKey(NamedTuple):
    """What a pool ID names.

    ``master_id`` and ``pool_id`` are the canonical IDs of the master and of the
    whole pool (the spelling :func:`format_pool_id` gives), or None when a
    prefix has host bits: such an ID is well formed but names no pool.
    """

    space: str
    master: Network
    child: Network | None
    master_id: str | None
    pool_id: str | None


def prefix_text(network: Network) -> str:
    """Return ``str(network)``, the way pool IDs spell prefixes (Go's ``netip`` agrees)."""
    return cidr_text(network.version, int(network.network_address), network.prefixlen)


def cidr_text(version: int, first: int, prefixlen: int) -> str:
    """Return the text of the prefix ``first/prefixlen`` as ``str()`` of its network would."""
    if version == 4:
        # str() of an IPv4Network costs 1.2 µs here and inet_ntop 0.3 µs, a
        # quarter and a tenth of the budget of a whole request_pool; dotted
        # decimal has one spelling.
        octets = _OCTETS
        return (
            f"{octets[first >> 24]}.{octets[first >> 16 & 255]}."
            f"{octets[first >> 8 & 255]}.{octets[first & 255]}/{prefixlen}"
        )
    # inet_ntop's IPv6 spelling differs from Python's in places (embedded IPv4).
    return f"{IPv6Address(first)}/{prefixlen}"


def format_pool_id(space: str, master: str, child: str | None = None) -> str:
    """Return the ID of a master (or of its subpool) from their CIDR texts."""
    if child is None:
        return f"{space}/{master}"
    return f"{space}/{master}/{child}"


def parse_pool_id(text: str) -> PoolKey:
    """Parse a pool ID; a malformed one is :class:`~ipamkit.errors.InvalidPoolError` (D1).

    Other spellings of the same prefixes (upper-case or uncompressed IPv6) name
    the same pool, as in Docker, which compares parsed prefixes.
    """
    parts = text.split("/")
    if len(parts) not in (3, 5):
        raise InvalidPoolError(
            f"invalid pool id {text!r}: expected <address space>/<pool> "
            "or <address space>/<pool>/<subpool>"
        )
    try:
        master, master_exact = _parse_prefix(parts[1], parts[2])
        child, child_exact = None, True
        if len(parts) == 5:
            child, child_exact = _parse_prefix(parts[3], parts[4])
    except InvalidPoolError as exc:
        raise InvalidPoolError(f"invalid pool id {text!r}: {exc}") from None
    space = parts[0]
    master_id = format_pool_id(space, prefix_text(master)) if master_exact else None
    pool_id = master_id if master_exact and child_exact else None
    if child is not None and pool_id is not None:
        pool_id = format_pool_id(space, prefix_text(master), prefix_text(child))
    return PoolKey(space, master, child, master_id, pool_id)


def _parse_prefix(address: str, length: str) -> tuple[Network, bool]:
    version, first, prefixlen, exact = parse_prefix(f"{address}/{length}")
    return network_maker(version)(first, prefixlen), exact


def check_sub_pool(network: Network, child: Network) -> None:
    """Refuse a subpool of the other family, or one outside its pool (deviation D3).

    Raises :class:`~ipamkit.errors.InvalidSubPoolError`; a subpool equal to its
    pool is allowed.
    """
    if child.version != network.version:
        raise InvalidSubPoolError(
            f"subpool {child} is IPv{child.version} but pool {network} is IPv{network.version}"
        )
    if not child.subnet_of(network):  # type: ignore[arg-type]  # same version
        raise InvalidSubPoolError(f"subpool {child} does not lie inside pool {network}")


def reserved_ordinals(version: int, size: int) -> tuple[int, ...]:
    """Return the ordinals of a pool that Docker reserves: never handed out.

    IPv4 reserves the network and broadcast addresses, except in /31 and /32
    (RFC 3021); IPv6 reserves only the subnet-router anycast address.
    """
    if version == 6:
        return (0,)
    return (0, size - 1) if size > 2 else ()


def unusable_ordinals(version: int, first: int, size: int) -> range:
    """Return the ordinals of a pool that are never handed out because no call accepts them.

    They are its IPv4-mapped IPv6 addresses (``::ffff:0:0/96``), which
    :func:`~ipamkit.parse_address` refuses (they would silently change family):
    handed out, one could never be released. The range is empty unless an
    IPv6 pool of /95 or wider covers them, and then holds all 2**32 of them,
    starting on a multiple of 2**32 (no pool lies inside them: those are refused
    too). Unlike a reserved address, an unusable one is no address of the pool
    to a call: requesting or releasing it is
    :class:`~ipamkit.errors.InvalidParameterError`.
    """
    if version != 6:
        return range(0)
    start, stop = max(_MAPPED.start, first), min(_MAPPED.stop, first + size)
    return range(start - first, stop - first) if start < stop else range(0)
