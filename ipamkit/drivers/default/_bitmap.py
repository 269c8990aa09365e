"""Sets of integers kept as runs: the allocator's "bitmap".

Docker keeps a pool's addresses in a run-length list of 32-bit blocks that it
walks from the head on every call. Here a set of ordinals is a sorted list of
run boundaries ``[s0, e0, s1, e1, ...]`` where each ``[s, e)`` is a maximal run
of members. ``bisect_right(bounds, x)`` is odd exactly when ``x`` is a member,
and its result is also where a run starting or ending at ``x`` would be spliced
in, so every operation is a binary search plus a splice of at most two items.
Memory grows with the number of runs, never with the size of the universe, and
ordinals are Python ints, so a 128-bit IPv6 pool costs what a /30 costs.

The boundaries are cut into chunks of at most :attr:`RunSet.chunk_limit`, each
holding whole runs, with the first boundary of every chunk but the first in
``firsts``: a splice then moves at most one chunk instead of the whole list
(inserting into a list of 40,000 items costs 2 µs here, growing with it).

Hand-written rather than taken from sortedcontainers or an interval-tree
package: those cost 0.6-0.7 µs per update here against ~0.1 µs for a bisect and
a splice on a short list, and the common case (filling a pool from the bottom)
keeps the first chunk at four items, where the driver's fast path works on it
directly.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

__all__ = ["AddressSet", "RunSet"]


class RunSet:
    """A set of integers in ``[0, size)``, stored as sorted run boundaries in chunks."""

    __slots__ = ("chunks", "firsts", "size")

    #: The most boundaries a chunk holds before it is split in two (even).
    chunk_limit = 512

    def __init__(self, size: int, bounds: list[int] | None = None) -> None:
        self.size = size
        #: Run boundaries, chunk by chunk; only the first chunk may be empty.
        self.chunks: list[list[int]] = [[] if bounds is None else bounds]
        #: ``firsts[k]`` is ``chunks[k + 1][0]``: where each later chunk begins.
        self.firsts: list[int] = []

    @property
    def bounds(self) -> list[int]:
        """All run boundaries in one list (a copy)."""
        return [bound for chunk in self.chunks for bound in chunk]

    def fill(self, runs: Iterable[tuple[int, int]]) -> None:
        """Replace the members with the runs ``[start, stop)``, sorted by start.

        Runs may touch or overlap. Restoring a set this way costs one pass, where
        adding each member would cost a search and a splice.
        """
        bounds: list[int] = []
        for start, stop in runs:
            if bounds and start <= bounds[-1]:
                bounds[-1] = max(bounds[-1], stop)
            else:
                bounds += (start, stop)
        step = max(2, self.chunk_limit // 2 & ~1)  # even, and leaves room to grow
        self.chunks = [bounds[i : i + step] for i in range(0, len(bounds), step)] or [[]]
        self.firsts = [chunk[0] for chunk in self.chunks[1:]]

    def __contains__(self, value: int) -> bool:
        return bool(self._locate(value)[2] & 1)

    def _locate(self, value: int) -> tuple[int, list[int], int]:
        k = bisect_right(self.firsts, value)
        chunk = self.chunks[k]
        return k, chunk, bisect_right(chunk, value)

    def free_run(self, start: int) -> tuple[int, int]:
        """Return ``[first, stop)``: the first run of non-members at or after ``start``.

        ``first`` is ``size`` or more when there is none.
        """
        k, chunk, i = self._locate(start)
        if i & 1:
            start = chunk[i]
            i += 1
        if i < len(chunk):
            return start, chunk[i]
        if k + 1 < len(self.chunks):
            return start, self.firsts[k]
        return start, self.size

    def add(self, value: int) -> bool:
        """Add ``value``; return False (and change nothing) if it was already a member."""
        k, chunk, i = self._locate(value)
        if i & 1:
            return False
        self._join(k, chunk, i, value, value + 1)
        return True

    def claim(self, start: int, stop: int) -> bool:
        """Add ``[start, stop)`` if it holds no member; tell whether it did."""
        k, chunk, i = self._locate(start)
        if i & 1:
            return False
        if i < len(chunk):
            if chunk[i] < stop:
                return False
        elif k + 1 < len(self.chunks) and self.firsts[k] < stop:
            return False
        self._join(k, chunk, i, start, stop)
        return True

    def discard_range(self, start: int, stop: int) -> None:
        """Remove ``[start, stop)``, which the caller knows lies inside one run."""
        self._cut(*self._locate(start), start, stop)

    def _join(self, k: int, chunk: list[int], i: int, start: int, stop: int) -> None:
        # [start, stop) lies in the gap after chunk[i - 1] (the end of the run
        # before, always in this chunk) and before the next run, which opens
        # the next chunk when i is the end of this one.
        left = i > 0 and chunk[i - 1] == start
        if i < len(chunk):
            right = chunk[i] == stop
            if left and right:
                del chunk[i - 1 : i + 1]
            elif left:
                chunk[i - 1] = stop
            elif right:
                chunk[i] = start
            else:
                chunk[i:i] = (start, stop)
                if len(chunk) > self.chunk_limit:
                    self._split(k)
            return
        following = self.chunks[k + 1] if k + 1 < len(self.chunks) else None
        if following is not None and following[0] == stop:
            if left:  # the run before and the run after become one
                chunk[i - 1] = following[1]
                del following[:2]
                self._drop_or_renew(k + 1)
            else:
                following[0] = self.firsts[k] = start
        elif left:
            chunk[i - 1] = stop
        else:
            chunk += (start, stop)
            if len(chunk) > self.chunk_limit:
                self._split(k)

    def _cut(self, k: int, chunk: list[int], i: int, start: int, stop: int) -> None:
        # [start, stop) lies in the run [chunk[i - 1], chunk[i]).
        left = chunk[i - 1] == start
        right = chunk[i] == stop
        if left and right:
            del chunk[i - 1 : i + 1]
            if i == 1:
                self._drop_or_renew(k)
        elif left:
            chunk[i - 1] = stop
            if i == 1 and k:
                self.firsts[k - 1] = stop
        elif right:
            chunk[i] = start
        else:
            chunk[i:i] = (start, stop)
            if len(chunk) > self.chunk_limit:
                self._split(k)

    def _drop_or_renew(self, k: int) -> None:
        # Chunk k lost its first run: drop it if that emptied it, else record
        # its new first boundary.
        chunk = self.chunks[k]
        if not chunk:
            if len(self.chunks) > 1:
                del self.chunks[k]
                del self.firsts[k - 1 if k else 0]
        elif k:
            self.firsts[k - 1] = chunk[0]

    def _split(self, k: int) -> None:
        chunk = self.chunks[k]
        half = len(chunk) // 2 & ~1  # even, so that runs stay whole
        self.chunks.insert(k + 1, chunk[half:])
        self.firsts.insert(k, chunk[half])
        del chunk[half:]


class AddressSet(RunSet):
    """The allocated addresses of one master pool, as ordinals from its first address.

    Reserved ordinals are members from the start and never released; so is the
    run ``unusable``, whose addresses no call accepts (so none releases them).
    ``cursor`` is Docker's serial cursor: one past the last address handed out
    by :meth:`take_any`, shared by the master and all its subpools.
    """

    __slots__ = ("cursor", "reserved")

    def __init__(self, size: int, reserved: tuple[int, ...], unusable: range = range(0)) -> None:
        RunSet.__init__(self, size)  # not super(): this runs once per pool
        runs = [(ordinal, ordinal + 1) for ordinal in reserved]
        if unusable:
            runs.append((unusable.start, unusable.stop))
            runs.sort()
        self.fill(runs)
        self.reserved = reserved
        self.cursor = 0

    def take_any(self, low: int, high: int, serial: bool) -> int | None:
        """Allocate and return a free ordinal in ``[low, high]``, or None when all are taken.

        First-free takes the lowest. Serial starts at the cursor and wraps round
        to ``low``, as Docker's bitmap does.
        """
        if serial and self.cursor > low:
            ordinal = self.take_first(self.cursor, high)
            if ordinal is not None:
                return ordinal
        return self.take_first(low, high)

    def take_first(self, low: int, high: int) -> int | None:
        """Allocate and return the lowest free ordinal in ``[low, high]``, or None."""
        k, chunk, i = self._locate(low)
        ordinal = low
        if i & 1:  # low is taken: the end of its run is free, and sorts after it
            ordinal = chunk[i]
            i += 1
        if ordinal > high:
            return None
        self._join(k, chunk, i, ordinal, ordinal + 1)
        self.cursor = ordinal + 1
        return ordinal

    def release(self, ordinal: int) -> bool:
        """Free ``ordinal``; tell whether it was held.

        A free or reserved ordinal is left as it is (deviation D5).
        """
        if ordinal in self.reserved:
            return False
        # _locate, inline: this is half of every churn cycle
        k = bisect_right(self.firsts, ordinal)
        chunk = self.chunks[k]
        i = bisect_right(chunk, ordinal)
        if not i & 1:
            return False
        after = ordinal + 1
        if chunk[i - 1] < ordinal and after < chunk[i] and len(chunk) < self.chunk_limit:
            chunk[i:i] = (ordinal, after)  # _cut's usual case: split the run in two
        else:
            self._cut(k, chunk, i, ordinal, after)
        return True
