"""The run-boundary sets behind the default driver's pools."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ipamkit.drivers.default._bitmap import AddressSet, RunSet


def members(runs: RunSet) -> set[int]:
    bounds = runs.bounds
    runs_ = zip(bounds[::2], bounds[1::2], strict=True)
    return {x for start, stop in runs_ for x in range(start, stop)}


def test_runs_merge_and_split() -> None:
    runs = RunSet(16)
    for value in (3, 5, 4):
        assert runs.add(value)
    assert runs.bounds == [3, 6]  # 3 and 5 were two runs; 4 joined them
    assert not runs.add(4)
    assert runs.discard(4)
    assert runs.bounds == [3, 4, 5, 6]
    assert not runs.discard(4)
    assert runs.first_free(3) == 4
    assert runs.first_member(4) == 5
    assert runs.first_member(6) == 16  # none: the size


def test_ranges() -> None:
    runs = RunSet(1 << 128)
    runs.add_range(10, 20)
    runs.add_range(20, 30)
    runs.add_range(1 << 127, 1 << 128)
    assert runs.bounds == [10, 30, 1 << 127, 1 << 128]
    runs.discard_range(15, 25)
    assert runs.bounds == [10, 15, 25, 30, 1 << 127, 1 << 128]
    assert runs.first_free((1 << 127) + 5) == 1 << 128


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


operation = st.tuples(st.sampled_from(["add", "discard", "take", "release"]), st.integers(0, 63))


@given(st.lists(operation, max_size=200))
def test_agrees_with_a_set(operations: list[tuple[str, int]]) -> None:
    addresses = AddressSet(64, (0, 63))
    model = {0, 63}
    for name, value in operations:
        if name == "add":
            assert addresses.add(value) == (value not in model)
            model.add(value)
        elif name == "discard":
            if value in (0, 63):
                continue
            assert addresses.discard(value) == (value in model)
            model.discard(value)
        elif name == "take":
            low = value
            free = [x for x in range(low, 64) if x not in model]
            got = addresses.take_first(low, 63)
            assert got == (free[0] if free else None)
            if free:
                model.add(free[0])
        else:
            addresses.release(value)
            if value not in (0, 63):
                model.discard(value)
        assert members(addresses) == model
        bounds = addresses.bounds
        assert bounds == sorted(bounds)
        assert len(set(bounds)) == len(bounds)  # runs are maximal: no empty or touching runs
