"""What a durable driver's state file holds, read without writing to it."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from ipamkit._arguments import parse_prefix
from ipamkit.drivers.default._store import (
    StateFileError,
    decode_ordinal,
    encode_ordinal,
    open_read_only,
)
from ipamkit.drivers.default._structures import new_address_set
from ipamkit.errors import IpamError
from ipamkit.pools import format_pool_id

__all__ = ["PoolUsage", "StateReport", "read_state"]


@dataclass(frozen=True)
class PoolUsage:
    """One pool of a state: a master, or a subpool (``master`` names its master's ID)."""

    pool_id: str
    size: int
    #: Allocated addresses.
    used: int
    #: Addresses that can still be handed out (reserved and unusable ones excluded).
    free: int
    #: The ID of the master pool, for a subpool; None for a master.
    master: str | None = None
    #: A master released (or made by a subpool request): it goes with its last subpool.
    auto_release: bool = False
    #: The allocated addresses, when asked for.
    addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StateReport:
    """Everything a state file holds."""

    path: str
    #: Each address space's rotation index into its predefined list.
    starts: dict[str, int]
    pools: list[PoolUsage]


def read_state(path: str, addresses: bool = False) -> StateReport:
    """Read the state file at ``path`` (``mode=ro``: it never writes, its owner may run).

    :class:`~ipamkit.drivers.default.StateFileError` for a missing, foreign,
    newer or corrupt file.
    """
    db = open_read_only(path)
    try:
        db.execute("BEGIN")  # one snapshot of the file, even while its owner writes
        return StateReport(
            path,
            dict(db.execute("SELECT name, start FROM spaces ORDER BY name").fetchall()),
            _pools(db, addresses),
        )
    except (sqlite3.Error, IpamError, ValueError) as exc:
        raise StateFileError(f"state file {path} cannot be read: {exc}") from None
    finally:
        db.close()


def _pools(db: sqlite3.Connection, addresses: bool) -> list[PoolUsage]:
    pools: list[PoolUsage] = []
    masters = db.execute(
        "SELECT id, space, cidr, auto_release FROM masters ORDER BY space, id"
    ).fetchall()
    for row, space, cidr, auto_release in masters:
        version, first, prefixlen, _ = parse_prefix(cidr)
        size = 1 << ((128 if version == 6 else 32) - prefixlen)
        unusable = new_address_set(version, first, size).bounds
        master_id = format_pool_id(space, cidr)
        held = db.execute("SELECT count(*) FROM addresses WHERE master = ?", (row,)).fetchone()[0]
        listed = []
        if addresses:
            ordinals = db.execute(
                "SELECT ordinal FROM addresses WHERE master = ? ORDER BY ordinal", (row,)
            )
            make = IPv6Address if version == 6 else IPv4Address
            listed = [str(make(first + decode_ordinal(value))) for (value,) in ordinals]
        pools.append(
            PoolUsage(
                master_id,
                size,
                held,
                size - held - _members(unusable, 0, size),
                auto_release=bool(auto_release),
                addresses=listed,
            )
        )
        subpools = db.execute(
            "SELECT prefix FROM subpools WHERE master = ? ORDER BY prefix", (row,)
        ).fetchall()
        for (prefix,) in subpools:
            _, child_first, child_length, _ = parse_prefix(prefix)
            low = child_first - first
            stop = low + (1 << ((128 if version == 6 else 32) - child_length))
            used = db.execute(
                "SELECT count(*) FROM addresses WHERE master = ? AND ordinal BETWEEN ? AND ?",
                (row, encode_ordinal(low), encode_ordinal(stop - 1)),
            ).fetchone()[0]
            pools.append(
                PoolUsage(
                    format_pool_id(space, cidr, prefix),
                    stop - low,
                    used,
                    stop - low - used - _members(unusable, low, stop),
                    master=master_id,
                )
            )
    return pools


def _members(bounds: list[int], low: int, stop: int) -> int:
    """How many members of the runs ``bounds`` lie in ``[low, stop)``."""
    return sum(
        max(0, min(end, stop) - max(start, low))
        for start, end in zip(bounds[::2], bounds[1::2], strict=True)
    )
