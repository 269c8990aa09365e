"""The suite on drivers whose state outlives an instance: restarts, peers, child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import failed_clauses

# Each test runs pytest in subprocesses: minutes in all, so only one Python runs them.
pytestmark = pytest.mark.slow

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)

#: The suite's tests of persistent and shared drivers, without the random sequences.
OWN_TESTS = "(test_persistence or test_sharing) and not test_random"

#: Broken driver to the clauses its bug breaks. Addresses cached per instance also
#: keep a peer from seeing a release, so that driver breaks C32 too.
BROKEN = {
    "broken-restart-loses-addresses": {"C27-restart-keeps-state"},
    "broken-restart-resurrects-released": {"C28-restart-keeps-releases"},
    "broken-shared-addresses-cached": {"C31-shared-addresses", "C32-shared-releases"},
    "broken-shared-overlap-own-pools": {"C30-shared-pools"},
}
#: Broken driver to the clause the random sequences with restarts find it breaking.
MACHINE = {
    "broken-restart-loses-addresses": "C19-address-already-allocated",
    "broken-restart-resurrects-released": "C21-exhaustion",
}


@dataclass
class Outcome:
    code: int
    output: str
    failed: dict[str, set[str]]
    folder: Path


def _run(installed: Path, folder: Path, driver: str, *args: str) -> Outcome:
    """Run the suite on ``driver`` with its state in ``folder`` and a peer on host ``b``."""
    folder.mkdir()
    junit = folder / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--ipam-driver={driver}"]
    if driver != "reference":
        command += [f"--ipam-driver-opt=state={folder / 'state.json'}", "--ipam-peer-opt=host=b"]
    command += [*args, f"--junitxml={junit}"]
    done = subprocess.run(
        command,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(installed), "CI": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    failed = failed_clauses(junit) if junit.exists() else {}
    return Outcome(done.returncode, done.stdout + done.stderr, failed, folder)


@pytest.fixture(scope="module")
def runs(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[Outcome]]:
    """Every run this module checks, started at once (each is a pytest of its own)."""
    root = tmp_path_factory.mktemp("state")
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    futures = {
        f"reference-{reading}": pool.submit(
            _run,
            installed,
            root / f"reference-{reading}",
            "reference-file",
            f"--ipam-driver-opt=reading={reading}",
            "--ipam-profile=ci",
        )
        for reading in ("exclusive", "refcounted")
    }
    for driver in BROKEN:
        futures[driver] = pool.submit(_run, installed, root / driver, driver, "-k", OWN_TESTS)
    for driver in MACHINE:
        futures[f"machine-{driver}"] = pool.submit(
            _run,
            installed,
            root / f"machine-{driver}",
            driver,
            "-k",
            "test_random_call_sequences_with",
            "--ipam-profile=ci",
        )
    pool.shutdown(wait=False)
    return futures


@pytest.mark.parametrize("reading", ["exclusive", "refcounted"])
def test_the_reference_passes_every_clause_and_leaves_nothing_behind(
    runs: dict[str, Future[Outcome]], reading: str
) -> None:
    outcome = runs[f"reference-{reading}"].result()
    assert outcome.code == 0, outcome.output
    table = [line.split()[:2] for line in outcome.output.splitlines() if line.startswith("C")]
    results = dict(row for row in table if len(row) == 2 and "-" in row[0])
    expected_skip = "C10-exclusive-reading" if reading == "refcounted" else "C11-refcounted-reading"
    assert [c for c, result in results.items() if result != "passed"] == [expected_skip]
    state = json.loads((outcome.folder / "state.json").read_text())
    assert state["pools"] == {}


@pytest.mark.parametrize("driver", sorted(BROKEN))
def test_a_broken_driver_fails_its_clause(runs: dict[str, Future[Outcome]], driver: str) -> None:
    outcome = runs[driver].result()
    assert outcome.code == pytest.ExitCode.TESTS_FAILED, outcome.output
    assert set(outcome.failed) == BROKEN[driver], outcome.output


@pytest.mark.parametrize("driver", sorted(MACHINE))
def test_random_restarts_find_the_bug(runs: dict[str, Future[Outcome]], driver: str) -> None:
    outcome = runs[f"machine-{driver}"].result()
    assert set(outcome.failed) == {"C29-random-restarts"}, outcome.output
    assert f"[{MACHINE[driver]}] " in outcome.output
    assert "ipam.close()  # restart" in outcome.output


def test_an_in_memory_driver_declared_persistent_fails_the_restart(
    installed: Path, tmp_path: Path
) -> None:
    # A restart builds a new driver from a fresh host: nothing in memory survives it.
    outcome = _run(
        installed, tmp_path / "run", "reference", "--ipam-feature=persistent", "-k", OWN_TESTS
    )
    assert "C27-restart-keeps-state" in outcome.failed, outcome.output


def test_the_restart_command_runs_at_each_restart_and_its_failure_is_told(
    installed: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "restarts"
    ran = _run(
        installed,
        tmp_path / "ok",
        "reference-file",
        f"--ipam-restart-cmd=echo restarted >> {marks}",
        "-k",
        "test_restart_keeps_pools or test_restart_keeps_addresses",
    )
    assert ran.code == 0, ran.output
    assert marks.read_text().splitlines() == ["restarted"] * 2
    failing = _run(
        installed,
        tmp_path / "failing",
        "reference-file",
        "--ipam-restart-cmd=echo no plugin here >&2; exit 3",
        "-k",
        "test_restart_keeps_pools",
    )
    assert failing.code == pytest.ExitCode.TESTS_FAILED
    assert "exited with 3: no plugin here" in failing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ipam-peer-opt=novalue"], "--ipam-peer-opt wants KEY=VALUE, not 'novalue'"),
        (["--ipam-peer-opt=colour=blue"], "cannot load the peer of 'reference-file'"),
        (["--ipam-restart-timeout=0"], "--ipam-restart-timeout must be positive"),
    ],
)
def test_bad_peer_and_restart_options_are_usage_errors(
    installed: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    outcome = _run(installed, tmp_path / "run", "reference-file", *args)
    assert outcome.code == pytest.ExitCode.USAGE_ERROR
    assert message in outcome.output
