"""Pool IDs in Docker's form: ``<space>/<pool>`` or ``<space>/<pool>/<subpool>``."""

from __future__ import annotations

from ipaddress import ip_address
from typing import NamedTuple

from ipamkit._arguments import parse_pool
from ipamkit._contract import Network
from ipamkit.errors import InvalidPoolError

__all__ = ["PoolKey", "format_pool_id", "parse_pool_id"]


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


def format_pool_id(space: str, master: Network, child: Network | None = None) -> str:
    """Return the ID of ``master`` (or of its subpool ``child``) in ``space``."""
    if child is None:
        return f"{space}/{master}"
    return f"{space}/{master}/{child}"


def parse_pool_id(text: str) -> PoolKey:
    """Parse a pool ID; a malformed one is :class:`InvalidPoolError` (deviation D1).

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
    master_id = format_pool_id(space, master) if master_exact else None
    pool_id = master_id if master_exact and child_exact else None
    if child is not None and pool_id is not None:
        pool_id = format_pool_id(space, master, child)
    return PoolKey(space, master, child, master_id, pool_id)


def _parse_prefix(address: str, length: str) -> tuple[Network, bool]:
    network = parse_pool(f"{address}/{length}")
    assert network is not None  # only "" parses to None, and the text holds a "/"
    return network, int(ip_address(address)) == int(network.network_address)
