"""``ipamkit check``: the suite as a command, with a table and a JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Each test runs pytest in subprocesses: minutes in all, so only one Python runs them.
pytestmark = pytest.mark.slow

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)


def _check(installed: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\nfrom ipamkit.cli import main\n"
        "sys.modules.update({k: None for k in sys.argv[1:2] if k})\n"
        "sys.exit(main(sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_prints_a_table_and_writes_json(installed: Path, tmp_path: Path) -> None:
    done = _check(installed, tmp_path, "", "check", "reference", "--json", "report.json")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CLAUSE", "RESULT", "REASON"]
    assert any(line.startswith("C11-refcounted-reading") and "skipped" in line for line in lines)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True
    assert report["driver"] == "reference"
    outcomes = {c["id"]: c["outcome"] for c in report["clauses"]}
    assert outcomes["C07-pools-never-overlap"] == "passed"
    assert outcomes["C11-refcounted-reading"] == "skipped"


def test_check_fails_on_a_broken_driver(installed: Path, tmp_path: Path) -> None:
    done = _check(installed, tmp_path, "", "check", "broken-out-of-range-accepted")
    assert done.returncode == 1
    assert "FAILED" in done.stdout
    table = done.stdout[done.stdout.index("CLAUSE  ") :]
    assert "C20-address-out-of-range            failed" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "no-such-driver"], "known drivers:"),
        (["check", "null", "--driver-opt", "novalue"], "wants KEY=VALUE"),
    ],
)
def test_check_usage_errors(installed: Path, tmp_path: Path, args: list[str], message: str) -> None:
    done = _check(installed, tmp_path, "", *args)
    assert done.returncode in (2, 4)
    assert message in done.stdout + done.stderr


def test_check_without_the_suite_says_how_to_get_it(installed: Path, tmp_path: Path) -> None:
    done = _check(installed, tmp_path, "ipamkit_conformance", "check", "null")
    assert done.returncode == 2
    assert "pip install ipamkit-conformance" in done.stdout
