"""The benchmarks run and print every figure; what the figures are is theirs to report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# Each runs a benchmark in quick form, seconds of CPU: one Python runs them.
pytestmark = pytest.mark.slow

BENCH = Path(__file__).parent.parent / "bench"


def run(script: str, *arguments: str) -> str:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *arguments],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout


def test_bench_default_prints_every_workload() -> None:
    output = run("bench_default.py", "--quick")
    rows = {int(line.split()[0]): line for line in output.splitlines() if re.match(r" ?\d ", line)}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7]
    for number in (1, 2, 3):  # default, floor, baseline, speed-up
        assert len(re.findall(r"\d+\.\d\d us", rows[number])) == 3, rows[number]
        assert re.search(r"\d+\.\dx$", rows[number]), rows[number]
    for number in (4, 5, 6):  # no floor
        assert len(re.findall(r"\d+\.\d\d us", rows[number])) == 2, rows[number]
    assert re.search(r"peak RSS \d+\.\d MiB", rows[7]), rows[7]
    growth = r"5\. \d+\.\d\d -> \d+\.\d\d us, 6\. \d+\.\d\d -> \d+\.\d\d us"
    assert re.search(rf"first tenth of the pools -> last tenth: {growth}", output), output


def test_bench_remote_prints_its_rate_and_the_baselines() -> None:
    output = run("bench_remote.py", "--calls", "200", "--rounds", "1")
    assert re.search(
        r"ipamkit remote \(spin=0.0002 s\): median [\d,]+ calls/s.*CPU per call: client \d+ µs, "
        r"server (\d+ µs|n/a); target 15,000 calls/s: (met|NOT met)",
        output,
    )
    assert re.search(
        r"ipamkit remote, never polling \(spin=0\): median [\d,]+ calls/s.*CPU per call", output
    )
    assert re.search(r"baseline \(httpx\): median [\d,]+ calls/s.*ipamkit \d+\.\dx faster", output)


def test_bench_serve_prints_every_server_at_every_concurrency() -> None:
    output = run("bench_serve.py", "--quick")
    rows = re.findall(
        r"^ +([\d,]+)  (.+?) +([\d,]+) calls/s +([\d,]+) errors +(\d+\.\d) us CPU/call  "
        r"peak RSS +(\d+\.\d) MiB$",
        output,
        re.MULTILINE,
    )
    servers = ["ipamkit", "ipamkit, 4 threads", "ipamkit, logged", "ipamkit, spin=0"]
    if "baseline skipped: " not in output:  # it needs git and the baseline's commit
        servers.append("threads")
    assert [(callers, server) for callers, server, *_ in rows] == [
        (callers, server) for callers in ("1", "8", "200") for server in servers
    ], output


def test_bench_durable_prints_every_figure() -> None:
    output = run("bench_durable.py", "--quick")
    subjects = ["in-memory", "durable full", "durable relaxed", "host-local fsync"]
    assert all(subject in output.splitlines()[1] for subject in subjects), output
    for number, workload in ((1, "allocations"), (2, r"allocate\+release cycles")):
        assert re.search(rf"^ {number}  {workload}( +[\d,]+){{5}}$", output, re.M), output
    for name in ("full", "relaxed"):
        assert re.search(
            rf"durable {name}: [\d,]+ allocations/s, target [\d,]+: (met|NOT met); "
            r"\d+x slower than in memory, \d+\.\dx host-local with fsync",
            output,
        ), output
    assert len(re.findall(r"^    \S.* +\d+\.\d\d us +\d+\.\d\d us +\d+\.\d\dx$", output, re.M)) == 3
    assert re.search(r"^ 4  start-up with 10,000 live addresses: \d+\.\d{3} s ", output, re.M)
