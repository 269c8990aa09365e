"""bench/bench_etcd.py runs and prints every figure; what they are is its to report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import start_cluster

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_etcd.py"


def test_bench_etcd_prints_every_figure(tmp_path: Path) -> None:
    start_cluster(1, tmp_path).stop()  # skips (fails under CI) where etcd cannot run
    result = subprocess.run(
        [sys.executable, str(BENCH), "--per-host", "30", "--calls", "30", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for label in ("one member", "3-member cluster"):
        for hosts in ("1 host(s)", "4 host(s)"):
            for kind in ("etcd driver", "naive lowest-free"):
                row = [line for line in lines if label in line and hosts in line and kind in line]
                assert row, f"no figure for {label}, {hosts}, {kind}"
    assert any(line.startswith("leader m") and "longest pause per host" in line for line in lines)
    for client in ("httpx", "urllib3", "http.client", "ipamkit-etcd"):
        assert any(line.startswith(f"client {client} ") for line in lines), client
    assert all("requests" in line for line in lines if "allocations/s" in line)
