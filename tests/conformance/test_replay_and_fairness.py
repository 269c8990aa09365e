"""Replays that replay, and a fair hearing for drivers that differ from ipamkit's own."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest_plugins = ["pytester"]

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)

Run = Callable[..., pytest.RunResult]

#: A pytest plugin for the runs below: it notes how many examples each fetch of the
#: suite's keys in hypothesis' database found.
FETCH_LOG = """
from pathlib import Path

from hypothesis.database import DirectoryBasedExampleDatabase

_fetch = DirectoryBasedExampleDatabase.fetch


def _logged(self, key):
    values = list(_fetch(self, key))
    if key.startswith(b"ipamkit:"):
        with (Path(__file__).parent / "fetched.log").open("a") as log:
            log.write(f"{len(values)}\\n")
    yield from values


DirectoryBasedExampleDatabase.fetch = _logged
"""


#: Selects C26's random sequences, not C29's (with restarts), which skip here.
C26_ONLY = "random_call and not restarts"


def _fetched(folder: Path) -> list[int]:
    log = folder / "fetched.log"
    counts = [int(n) for n in log.read_text().split()] if log.exists() else []
    log.unlink(missing_ok=True)
    return counts


def test_the_next_process_replays_a_failure_from_the_database(
    pytester: pytest.Pytester, run_suite: Run, installed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(fetch_log=FETCH_LOG)
    monkeypatch.setenv("PYTHONPATH", f"{pytester.path}{os.pathsep}{installed}")
    args = ("--ipam-driver=broken-held-address-granted", "-p", "fetch_log", "-k", C26_ONLY)
    # Hash seeds differ between processes, as they do by default; fixed here so that
    # a key that depends on them (the order of a set) differs for sure.
    monkeypatch.setenv("PYTHONHASHSEED", "1")
    first = run_suite(*args)
    first.assert_outcomes(failed=1)
    assert not any(_fetched(pytester.path)), "the first run found examples already saved"
    monkeypatch.setenv("PYTHONHASHSEED", "2")
    second = run_suite(*args)
    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines(["*[C19-address-already-allocated]*"])
    assert any(_fetched(pytester.path)), "the second run found nothing the first one saved"


def test_under_ci_the_replay_hint_does_not_promise_a_database(
    run_suite: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hypothesis turns its example database off under CI, whatever the profile.
    monkeypatch.setenv("CI", "true")
    result = run_suite(
        "--ipam-driver=broken-held-address-granted", "--ipam-profile=dev", "-k", C26_ONLY
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Replay: add --hypothesis-seed=N*(no example database)*"])
    assert "the example database keeps the failure" not in result.stdout.str()


def _program(lines: list[str]) -> str:
    """The replay a failure printed, from pytest's ``E``-prefixed lines."""
    start = next(i for i, line in enumerate(lines) if "The driver calls that led here" in line)
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("E"):
            break
        block.append(line[1:])
    return textwrap.dedent("\n".join(block)).strip()


def test_the_replay_of_a_wrong_error_class_expects_the_exact_class(
    pytester: pytest.Pytester, run_suite: Run
) -> None:
    driver = "broken-wrong-error-class"
    result = run_suite(
        f"--ipam-driver={driver}", "-k", "test_unknown_pool_id and exact and release_pool"
    )
    result.assert_outcomes(failed=1)
    program = _program(result.outlines)
    assert "pytest.raises((ipamkit.errors.BadPoolError, ipamkit.errors.InvalidPoolError))" in (
        program
    )
    body = textwrap.indent(program, "    ")
    pytester.makepyfile(test_replay=f"def test_replay():\n{body}\n")
    run_suite("test_replay.py").assert_outcomes(failed=1)
    pytester.makepyfile(test_replay=f"def test_replay():\n{body.replace(driver, 'reference')}\n")
    run_suite("test_replay.py").assert_outcomes(passed=1)


def test_request_options_reach_the_driver_on_every_request(run_suite: Run) -> None:
    bare = run_suite("--ipam-driver=reference-needs-options", "-k", "test_explicit_pool")
    bare.stdout.fnmatch_lines(["*option tenant=blue is required*"])
    assert bare.ret == pytest.ExitCode.TESTS_FAILED
    given = run_suite(
        "--ipam-driver=reference-needs-options",
        "--ipam-pool-opt=tenant=blue",
        "--ipam-address-opt=tenant=blue",
    )
    assert given.ret == 0, given.stdout.str()


def test_a_request_option_must_be_key_value(run_suite: Run) -> None:
    result = run_suite("--ipam-driver=reference", "--ipam-address-opt=tenant")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ipam-address-opt wants KEY=VALUE, not 'tenant'*"])


def test_the_concurrency_clause_leaves_a_reading_mismatch_to_the_reading_clauses(
    run_suite: Run,
) -> None:
    result = run_suite(
        "--ipam-driver=reference",
        "--ipam-driver-opt=reading=refcounted",
        "--ipam-pool-reading=exclusive",
        "-k",
        "test_exclusive_reading or test_concurrent",
        "-rs",
    )
    result.stdout.fnmatch_lines(
        ["*answered as the refcounted reading, not the declared exclusive one*C10*"]
    )
    result.stdout.fnmatch_lines(["*C10-exclusive-reading*failed*", "*C25-thread-safety*passed*"])


def test_random_sequences_look_past_a_clause_expected_to_fail(run_suite: Run) -> None:
    args = ("--ipam-driver=broken-two-bugs", "--ipam-profile=ci", "-k", C26_ONLY)
    one = run_suite(*args, "--ipam-xfail=C16")
    one.assert_outcomes(failed=1)
    one.stdout.fnmatch_lines(["*[C13-bad-pool-id]*"])
    assert "[C16-prefix-length]" not in one.stdout.str()
    both = run_suite(*args, "--ipam-xfail=C16", "--ipam-xfail=C13")
    both.assert_outcomes(xfailed=1)
