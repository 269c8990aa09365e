"""The state machine meets the situations allocators get wrong, often, on every CI run.

The CI profile is derandomized, so these counts are the same on every run of the
same suite against the same driver; the floors are well below what it meets
today (see the figures in each entry), so only a real decay fails here.
"""

from __future__ import annotations

import pytest

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)

from hypothesis.stateful import run_state_machine_as_test
from ipamkit_conformance import Target, machine_for
from ipamkit_conformance._profiles import machine_settings

#: Situation to the fewest times a CI-profile run against ``default`` must meet it.
#: The comment is what the run meets now (it met none of the release situations
#: before the rules for them).
FLOORS = {
    "dynamic: a released address of the pool is free": 5000,  # 34,000
    "dynamic: request #1 after a release": 300,  # 900
    "dynamic: request #2 after a release": 250,  # 800
    "dynamic: request #3 after a release": 200,  # 700
    "dynamic: the pool was full, then had an address released": 1000,  # 5,000
    "dynamic: an address released, then requested by name, is held": 1000,  # 8,000
    "dynamic: the pool is full": 60,  # 190
    "dynamic: the pool was released and requested again": 300,  # 1,100
    "dynamic: the subpool is full, the pool has room": 100,  # 290
    "request_pool chosen after a release_pool": 70,  # 200
    "request_pool explicit where a pool was released": 5,  # 16
    "specific: released in this pool": 80,  # 230
    "specific: held": 15,  # 43
    "specific: never handed out": 70,  # 200
    "specific: an edge of the pool": 60,  # 180
    "specific: an edge of the subpool": 5,  # 14
    "specific: across 2**64 in a pool wider than /64": 5,  # 14
    "specific: in a /31, /32, /127 or /128 pool": 5,  # 14
    "specific: outside the subpool": 15,  # 44
    "specific: outside the pool": 15,  # 52
}


def test_ci_profile_meets_each_situation_often_against_default() -> None:
    target, _ = Target.resolve("default")
    machine = machine_for(target)
    run_state_machine_as_test(machine, settings=machine_settings("ci", target))
    short = {
        situation: (machine.tally[situation], floor)
        for situation, floor in FLOORS.items()
        if machine.tally[situation] < floor
    }
    assert not short, f"situations met too seldom (met, floor): {short}"
