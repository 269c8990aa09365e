"""The run-boundary sets behind the default driver's pools."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamkit.drivers.default._bitmap import AddressSet, RunSet


def members(runs: RunSet) -> set[int]:
    bounds = runs.bounds
    runs_ = zip(bounds[::2], bounds[1::2], strict=True)
    return {x for start, stop in runs_ for x in range(start, stop)}


def test_runs_merge_and_split() -> None:
    runs = AddressSet(16, ())
    for value in (3, 5, 4):
        assert runs.add(value)
    assert runs.bounds == [3, 6]  # 3 and 5 were two runs; 4 joined them
    assert not runs.add(4)
    runs.release(4)
    assert runs.bounds == [3, 4, 5, 6]
    runs.release(4)
    assert runs.bounds == [3, 4, 5, 6]
    assert runs.free_run(3) == (4, 5)
    assert runs.free_run(0) == (0, 3)
    assert runs.free_run(6) == (6, 16)  # up to the size


def test_ranges() -> None:
    runs = RunSet(1 << 128)
    assert runs.claim(10, 20)
    assert runs.claim(20, 30)
    assert not runs.claim(25, 35)
    assert not runs.claim(5, 11)
    assert runs.claim(1 << 127, 1 << 128)
    assert runs.bounds == [10, 30, 1 << 127, 1 << 128]
    runs.discard_range(15, 25)
    assert runs.bounds == [10, 15, 25, 30, 1 << 127, 1 << 128]
    assert runs.free_run((1 << 127) + 5) == (1 << 128, 1 << 128)  # none left


def test_memory_follows_runs_not_size() -> None:
    addresses = AddressSet(1 << 64, (0,))
    for _ in range(100_000):
        addresses.take_first(0, (1 << 64) - 1)
    assert addresses.bounds == [0, 100_001]


def test_reserved_are_taken_and_never_released() -> None:
    addresses = AddressSet(8, (0, 7))
    assert addresses.bounds == [0, 1, 7, 8]
    addresses.release(0)
    addresses.release(7)
    addresses.release(3)  # free: nothing happens
    assert addresses.bounds == [0, 1, 7, 8]
    assert [addresses.take_first(0, 7) for _ in range(7)] == [1, 2, 3, 4, 5, 6, None]


def test_take_first_stays_in_range() -> None:
    addresses = AddressSet(256, ())
    assert addresses.take_first(250, 251) == 250
    assert addresses.take_first(250, 251) == 251
    assert addresses.take_first(250, 251) is None
    assert addresses.cursor == 252


def check_invariants(runs: RunSet) -> None:
    bounds = runs.bounds
    assert bounds == sorted(bounds)
    assert len(set(bounds)) == len(bounds)  # runs are maximal: no empty or touching runs
    assert all(len(chunk) % 2 == 0 for chunk in runs.chunks)  # runs never span chunks
    assert all(runs.chunks) or runs.chunks == [[]]
    assert runs.firsts == [chunk[0] for chunk in runs.chunks[1:]]
    assert all(len(chunk) <= runs.chunk_limit for chunk in runs.chunks)


operation = st.tuples(st.sampled_from(["add", "free_run", "take", "release"]), st.integers(0, 63))


class SmallChunks(AddressSet):
    """Chunks of two runs at most, so that every splice meets a chunk boundary."""

    __slots__ = ()
    chunk_limit = 4


class MidChunks(AddressSet):
    __slots__ = ()
    chunk_limit = 6


@pytest.mark.parametrize("kind", [SmallChunks, MidChunks, AddressSet])
@given(operations=st.lists(operation, max_size=200))
def test_agrees_with_a_set(kind: type[AddressSet], operations: list[tuple[str, int]]) -> None:
    addresses = kind(64, (0, 63))
    model = {0, 63}
    for name, value in operations:
        if name == "add":
            assert addresses.add(value) == (value not in model)
            model.add(value)
        elif name == "free_run":
            free = min(x for x in [*range(value, 64), 64] if x not in model)
            stop = min(x for x in [*range(free, 64), 64] if x in model or x == 64)
            assert addresses.free_run(value) == (free, stop)
        elif name == "take":
            low = value
            free_list = [x for x in range(low, 64) if x not in model]
            got = addresses.take_first(low, 63)
            assert got == (free_list[0] if free_list else None)
            if free_list:
                model.add(free_list[0])
        else:
            addresses.release(value)
            if value not in (0, 63):
                model.discard(value)
        assert members(addresses) == model
        check_invariants(addresses)


@pytest.mark.parametrize("kind", [SmallChunks, AddressSet])
@given(ranges=st.lists(st.tuples(st.booleans(), st.integers(0, 31), st.integers(1, 4))))
def test_ranges_agree_with_a_set(
    kind: type[AddressSet], ranges: list[tuple[bool, int, int]]
) -> None:
    runs = kind(40, ())
    model: set[int] = set()
    for adding, start, length in ranges:
        span = set(range(start, start + length))
        if adding:
            free = not span & model
            assert runs.claim(start, start + length) == free
            if free:
                model |= span
        elif not adding and span <= model:  # then the span lies inside one run
            runs.discard_range(start, start + length)
            model -= span
        assert members(runs) == model
        check_invariants(runs)


@pytest.mark.parametrize("kind", [SmallChunks, MidChunks, AddressSet])
@given(
    members_=st.sets(st.integers(0, 63)),
    operations=st.lists(st.tuples(st.booleans(), st.integers(0, 63)), max_size=40),
)
def test_fill_builds_what_adding_builds(
    kind: type[AddressSet], members_: set[int], operations: list[tuple[bool, int]]
) -> None:
    filled, added = kind(64, (0,), range(60, 64)), kind(64, (0,), range(60, 64))
    model = {0, 60, 61, 62, 63} | members_
    # The runs may touch and overlap the reserved and unusable ones, as a restore's do.
    filled.fill(sorted([(0, 1), (60, 64)] + [(value, value + 1) for value in members_]))
    for value in members_:
        added.add(value)
    assert members(filled) == members(added) == model
    check_invariants(filled)
    assert all((value in filled) == (value in model) for value in range(64))
    for adding, value in operations:  # and it goes on as the other one does
        if adding:
            assert filled.add(value) == added.add(value)
        else:
            filled.release(value)
            added.release(value)
        assert members(filled) == members(added)
        check_invariants(filled)


def test_the_unusable_run_is_taken_from_the_start() -> None:
    addresses = AddressSet(16, (0,), range(8, 16))
    assert addresses.bounds == [0, 1, 8, 16]
    assert [addresses.take_first(0, 15) for _ in range(8)] == [1, 2, 3, 4, 5, 6, 7, None]
