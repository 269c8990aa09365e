"""Each broken driver fails the clause its bug breaks, and no other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import failed_clauses

pytest_plugins = ["pytester"]

Run = Callable[..., pytest.RunResult]

#: Broken driver to the clause its bug breaks (and driver options).
BROKEN = {
    "broken-duplicate-address": "C17-no-duplicate-addresses",
    "broken-overlap-allowed": "C07-pools-never-overlap",
    "broken-wrong-error-class": "C13-bad-pool-id",
    "broken-release-frees-nothing": "C21-exhaustion",
    "broken-ignores-subpool": "C15-dynamic-address-in-subpool",
    "broken-wrong-prefix": "C16-prefix-length",
    "broken-failing-call-changes-state": "C24-errors-change-nothing",
    "broken-double-release-accepted": "C13-bad-pool-id",
    "broken-chosen-overlaps-explicit": "C08-chosen-pools-never-overlap",
    "broken-refcount-wrong": "C11-refcounted-reading",
    "broken-v6-flag-ignored": "C09-v6-flag",
    "broken-spaces-shared": "C03-address-spaces-independent",
    "broken-held-address-granted": "C19-address-already-allocated",
    "broken-out-of-range-accepted": "C20-address-out-of-range",
    "broken-exhaustion-misreported": "C21-exhaustion",
    "broken-thread-unsafe": "C25-thread-safety",
    "broken-released-pool-keeps-addresses": "C12-released-pool-comes-back-empty",
}
OPTIONS = {"broken-refcount-wrong": ["--ipam-driver-opt=reading=refcounted"]}


@pytest.mark.parametrize("driver", sorted(BROKEN))
def test_broken_driver_fails_its_clause_only(
    run_suite: Run, pytester: pytest.Pytester, driver: str
) -> None:
    junit = Path(pytester.path) / "junit.xml"
    # The state machine is checked on its own below; here the clause tests speak.
    result = run_suite(
        f"--ipam-driver={driver}",
        *OPTIONS.get(driver, []),
        "-k",
        "not test_random_call_sequences",
        f"--junitxml={junit}",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert set(failed_clauses(junit)) == {BROKEN[driver]}
    result.stdout.fnmatch_lines([f"*{BROKEN[driver]}*failed*"])


#: Broken drivers the state machine catches with the CI profile, and the clause it names.
MACHINE = {
    "broken-overlap-allowed": "C07-pools-never-overlap",
    "broken-wrong-error-class": "C13-bad-pool-id",
    "broken-duplicate-address": "C17-no-duplicate-addresses",
    "broken-v6-flag-ignored": "C09-v6-flag",
    "broken-out-of-range-accepted": "C20-address-out-of-range",
}


@pytest.mark.parametrize("driver", sorted(MACHINE))
def test_state_machine_names_the_broken_clause(run_suite: Run, driver: str) -> None:
    result = run_suite(
        f"--ipam-driver={driver}", "-k", "test_random_call_sequences", "--ipam-profile=ci"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*[[]{MACHINE[driver]}[]]*", f"*{MACHINE[driver]}*failed*"])
