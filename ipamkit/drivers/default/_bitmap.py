"""Sets of integers kept as runs: the allocator's "bitmap".

Docker keeps a pool's addresses in a run-length list of 32-bit blocks that it
walks from the head on every call. Here a set of ordinals is a sorted Python
list of run boundaries ``[s0, e0, s1, e1, ...]`` where each ``[s, e)`` is a run
of members. ``bisect_right(bounds, x)`` is odd exactly when ``x`` is a member,
and its result is also where a run starting or ending at ``x`` would be spliced
in, so every operation is a binary search plus a splice of at most two items.
Memory grows with the number of runs, never with the size of the universe, and
ordinals are Python ints, so a 128-bit IPv6 pool costs what a /30 costs.

Hand-written rather than taken from sortedcontainers or an interval-tree
package: those cost 0.6-0.7 µs per update here against ~0.1 µs for a bisect and
a splice on a short list, and the common case (filling a pool from the bottom)
keeps this list at four items.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["AddressSet", "RunSet"]


class RunSet:
    """A set of integers in ``[0, size)``, stored as sorted run boundaries."""

    __slots__ = ("bounds", "size")

    def __init__(self, size: int, bounds: list[int] | None = None) -> None:
        self.size = size
        #: ``[s0, e0, s1, e1, ...]``: members are every ``x`` with ``s <= x < e``.
        self.bounds: list[int] = [] if bounds is None else bounds

    def __contains__(self, value: int) -> bool:
        return bisect_right(self.bounds, value) & 1 == 1

    def first_free(self, start: int) -> int:
        """Return the smallest non-member ``>= start`` (``size`` or more when there is none)."""
        bounds = self.bounds
        i = bisect_right(bounds, start)
        # An odd index means start is inside a run; the run's end is free (or
        # is the end of the universe). len(bounds) is even, so bounds[i] exists.
        return bounds[i] if i & 1 else start

    def first_member(self, start: int) -> int:
        """Return the smallest member ``>= start``, or ``size`` when there is none."""
        bounds = self.bounds
        i = bisect_right(bounds, start)
        if i & 1:
            return start
        return bounds[i] if i < len(bounds) else self.size

    def add(self, value: int) -> bool:
        """Add ``value``; return False (and change nothing) if it was already a member."""
        i = bisect_right(self.bounds, value)
        if i & 1:
            return False
        self._join(i, value, value + 1)
        return True

    def discard(self, value: int) -> bool:
        """Remove ``value``; return False (and change nothing) if it was not a member."""
        i = bisect_right(self.bounds, value)
        if not i & 1:
            return False
        self._cut(i, value, value + 1)
        return True

    def add_range(self, start: int, stop: int) -> None:
        """Add ``[start, stop)``, which the caller knows holds no member."""
        self._join(bisect_right(self.bounds, start), start, stop)

    def discard_range(self, start: int, stop: int) -> None:
        """Remove ``[start, stop)``, which the caller knows lies inside one run."""
        self._cut(bisect_right(self.bounds, start), start, stop)

    def _join(self, i: int, start: int, stop: int) -> None:
        # [start, stop) lies in the gap between bounds[i-1] (end of the run
        # before) and bounds[i] (start of the run after).
        bounds = self.bounds
        left = i > 0 and bounds[i - 1] == start
        right = i < len(bounds) and bounds[i] == stop
        if left and right:
            del bounds[i - 1 : i + 1]
        elif left:
            bounds[i - 1] = stop
        elif right:
            bounds[i] = start
        else:
            bounds[i:i] = (start, stop)

    def _cut(self, i: int, start: int, stop: int) -> None:
        # [start, stop) lies in the run [bounds[i-1], bounds[i]).
        bounds = self.bounds
        left = bounds[i - 1] == start
        right = bounds[i] == stop
        if left and right:
            del bounds[i - 1 : i + 1]
        elif left:
            bounds[i - 1] = stop
        elif right:
            bounds[i] = start
        else:
            bounds[i:i] = (start, stop)


class AddressSet(RunSet):
    """The allocated addresses of one master pool, as ordinals from its first address.

    Reserved ordinals are members from the start and can never be released.
    ``cursor`` is Docker's serial cursor: one past the last address handed out by
    :meth:`take_any`, shared by the master and all its subpools.
    """

    __slots__ = ("cursor", "reserved")

    def __init__(self, size: int, reserved: tuple[int, ...]) -> None:
        bounds: list[int] = []
        for ordinal in reserved:  # never next to each other: each is a run of its own
            bounds += (ordinal, ordinal + 1)
        RunSet.__init__(self, size, bounds)  # not super(): this runs once per pool
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
        bounds = self.bounds
        i = bisect_right(bounds, low)
        ordinal = bounds[i] if i & 1 else low
        if ordinal > high:
            return None
        if i & 1:
            # The run before ordinal grows by one, and meets the next run if
            # that starts right after.
            if i + 1 < len(bounds) and bounds[i + 1] == ordinal + 1:
                del bounds[i : i + 2]
            else:
                bounds[i] = ordinal + 1
        else:
            self._join(i, low, low + 1)
        self.cursor = ordinal + 1
        return ordinal

    def release(self, ordinal: int) -> None:
        """Free ``ordinal``; a free or reserved ordinal is left as it is (deviation D5)."""
        if ordinal not in self.reserved:
            i = bisect_right(self.bounds, ordinal)
            if i & 1:
                self._cut(i, ordinal, ordinal + 1)
