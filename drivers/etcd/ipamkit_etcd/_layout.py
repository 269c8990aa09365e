"""What the driver keeps in etcd, and under which keys.

Everything lives under one prefix (``/ipamkit/`` unless configured); a scope is
``global``, ``shared-local`` (``LocalDefault`` of every host) or ``local/<host>``
(``LocalDefault`` of one host, with option ``local_scope=host``):

``<prefix>space/<scope>``
    The address space: its master pools, who holds a reference to each (and to
    each subpool), the predefined walk's start, and the nonces of the latest
    changes. JSON; every change is a compare-and-swap on its revision.
``<prefix>pool/<scope>/<pool>[/<subpool>]``
    One key per live pool ID. Its create revision names this life of the pool:
    an address is only written while the key of its pool is that one. A
    master's key holds ``{"gateway": ordinal}`` once a gateway was taken.
``<prefix>addr/<scope>/<pool>/<ordinal>``
    One key per held address, created only if absent; ``ordinal`` is the
    address's offset in the pool, fixed-width hex (so keys sort as addresses
    do). The value names the holder: ``{"a": address, "h": host, "n": nonce}``,
    or for a gateway ``{"a": address, "g": [[host, nonce], ...]}``.
``<prefix>block/<scope>/<pool>/<block>``
    A block of 64 addresses claimed by one host (``{"h": host}``), where that
    host hands out dynamic addresses first.
``<prefix>host/<host>``
    Written by a host before it undoes writes whose outcome it never learnt
    (``{"h": host, "n": nonce}``). Every write of the host that an undo covers
    (a pool reference, an address, a hold on a gateway) compares this key's
    revision, so none sent before the undo can land after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BLOCK_BITS",
    "MasterRecord",
    "Ref",
    "SpaceRecord",
    "address_value",
    "gateway_value",
    "read_holder",
]

#: A block holds 2**BLOCK_BITS ordinals (Calico's default block is a /26 too).
BLOCK_BITS = 6
#: How many recent change nonces a space record keeps (a retry looks for its own).
_RECENT = 64

#: One reference to a pool: the host that took it and the nonce of that request.
Ref = list[str]


@dataclass
class MasterRecord:
    """A master pool: references to it, and to each of its subpools."""

    refs: list[Ref] = field(default_factory=list)
    children: dict[str, list[Ref]] = field(default_factory=dict)

    def holders(self) -> set[str]:
        """Every host holding a reference to the master or one of its subpools."""
        hosts = {ref[0] for ref in self.refs}
        for refs in self.children.values():
            hosts.update(ref[0] for ref in refs)
        return hosts


@dataclass
class SpaceRecord:
    """An address space as stored in ``space/<scope>``."""

    masters: dict[str, MasterRecord] = field(default_factory=dict)
    #: Docker's predefined start index: where the next walk begins.
    start: int = 0
    #: ``[nonce, pool_id]`` of the latest changes, newest last.
    recent: list[list[str]] = field(default_factory=list)

    @classmethod
    def decode(cls, data: bytes) -> SpaceRecord:
        """Read a record (an empty value is an empty space)."""
        if not data:
            return cls()
        raw = json.loads(data)
        masters = {
            cidr: MasterRecord(entry["refs"], entry["children"])
            for cidr, entry in raw["masters"].items()
        }
        return cls(masters, raw["start"], raw["recent"])

    def encode(self) -> bytes:
        """The record as stored."""
        masters = {
            cidr: {"refs": master.refs, "children": master.children}
            for cidr, master in self.masters.items()
        }
        return json.dumps(
            {"masters": masters, "start": self.start, "recent": self.recent},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    def done(self, nonce: str) -> str | None:
        """The pool ID a change with ``nonce`` gave, if it is recorded (it landed)."""
        for seen, pool_id in self.recent:
            if seen == nonce:
                return pool_id
        return None

    def record(self, nonce: str, pool_id: str) -> None:
        """Remember a change, forgetting the oldest beyond the last few."""
        self.recent.append([nonce, pool_id])
        del self.recent[:-_RECENT]


def address_value(address: str, host: str, nonce: str) -> bytes:
    """The value of an address one host holds."""
    return json.dumps({"a": address, "h": host, "n": nonce}, separators=(",", ":")).encode()


def gateway_value(address: str, holders: list[Ref]) -> bytes:
    """The value of a gateway address, held by every host in ``holders``."""
    return json.dumps({"a": address, "g": holders}, separators=(",", ":")).encode()


def read_holder(value: bytes) -> dict[str, Any]:
    """Decode an address value."""
    decoded: dict[str, Any] = json.loads(value)
    return decoded
