"""Benchmark of the etcd driver: allocations/s from 1 and 4 hosts, a leader kill.

Each host is a separate process (``drivers/etcd/tests/host_worker.py``) on one
shared pool, started together; the rate is every allocation over the time from
the first host's start to the last host's end. Beside the driver, in the same
run, the naive baseline: every host takes the lowest free address with one
create-if-absent transaction per try. Then the leader of the 3-member cluster
is killed under load, and the longest pause of each host is printed; and the
two HTTP clients considered for etcd's JSON gateway are timed on the same
member. Prints figures, asserts nothing. Needs ``etcd`` on PATH.

    python bench/bench_etcd.py [--per-host N] [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

_TESTS = Path(__file__).resolve().parent.parent / "drivers" / "etcd" / "tests"
sys.path.insert(0, str(_TESTS))

from etcd_cluster import Cluster  # noqa: E402

_POOL = "10.64.0.0/14"


def _run_hosts(
    cluster: Cluster, workdir: Path, hosts: int, per_host: int, *, naive: bool
) -> tuple[float, list[dict[str, float]], Path]:
    """Run ``hosts`` host processes together; return allocations/s and their summaries."""
    run = Path(tempfile.mkdtemp(dir=workdir))
    go = run / "go"
    prefix = f"/bench/{run.name}/"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(_TESTS / "host_worker.py"),
                f"--endpoints={','.join(cluster.endpoints)}",
                f"--prefix={prefix}",
                f"--host=h{i}",
                f"--pool={_POOL}",
                f"--count={per_host}",
                f"--out={run / f'h{i}.txt'}",
                f"--go={go}",
                *(["--naive"] if naive else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(hosts)
    ]
    time.sleep(1.5)  # every host has joined the pool and waits
    go.touch()
    summaries = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(s["ended"] for s in summaries) - min(s["began"] for s in summaries)
    return hosts * per_host / seconds, summaries, run


def _rates(cluster: Cluster, workdir: Path, label: str, per_host: int, rounds: int) -> None:
    """Print the median of ``rounds`` runs of each workload, the runs interleaved."""
    for hosts in (1, 4):
        rates: dict[bool, list[float]] = {False: [], True: []}
        failed: list[float] = []
        for _ in range(rounds):
            for naive in (False, True):
                rate, summaries, _ = _run_hosts(cluster, workdir, hosts, per_host, naive=naive)
                rates[naive].append(rate)
                if naive:
                    failed.append(sum(s["failed"] for s in summaries) / (hosts * per_host))
        for naive in (False, True):
            name = "naive lowest-free" if naive else "etcd driver"
            extra = f", {median(failed):.2f} failed txns per allocation" if naive else ""
            runs = ", ".join(f"{r:.0f}" for r in rates[naive])
            print(
                f"{label:<18} {hosts} host(s)  {name:<18} {median(rates[naive]):8.0f} "
                f"allocations/s (median of {runs}){extra}"
            )


def _leader_kill(cluster: Cluster, workdir: Path, per_host: int) -> None:
    run = Path(tempfile.mkdtemp(dir=workdir))
    prefix = f"/bench/{run.name}/"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(_TESTS / "host_worker.py"),
                f"--endpoints={','.join(cluster.endpoints)}",
                f"--prefix={prefix}",
                f"--host=h{i}",
                f"--pool={_POOL}",
                f"--count={per_host}",
                f"--out={run / f'h{i}.txt'}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    deadline = time.monotonic() + 120
    out = run / "h0.txt"
    while (not out.exists() or len(out.read_text().split()) < per_host // 4) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    leader = cluster.wait_leader()
    killed = time.monotonic()
    cluster.kill(leader)
    elected = cluster.wait_leader()
    election = time.monotonic() - killed
    pauses = []
    for worker in workers:
        summary = json.loads(worker.communicate(timeout=600)[0].strip().splitlines()[-1])
        pauses.append(summary["longest"])
    print(
        f"leader m{leader} killed under 4 hosts' load: m{elected} leads after {election:.2f} s; "
        f"longest pause per host: {', '.join(f'{p:.2f} s' for p in pauses)}"
    )
    cluster.restart(leader)


def _clients(cluster: Cluster, calls: int) -> None:
    import base64  # noqa: PLC0415

    import httpx  # noqa: PLC0415
    import urllib3  # noqa: PLC0415

    url = cluster.endpoints[0]

    def body(name: str, i: int) -> bytes:
        key = base64.b64encode(f"/clients/{name}/{i}".encode()).decode()
        return json.dumps(
            {
                "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
                "success": [{"request_put": {"key": key, "value": "eA=="}}],
            }
        ).encode()

    with httpx.Client(base_url=url) as client:
        posts = {"httpx": lambda data: client.post("/v3/kv/txn", content=data).content}
        pool = urllib3.PoolManager()
        posts["urllib3"] = lambda data: pool.request("POST", url + "/v3/kv/txn", body=data).data
        for name, post in posts.items():
            cpu, start = time.process_time(), time.perf_counter()
            for i in range(calls):
                post(body(name, i))
            elapsed, used = time.perf_counter() - start, time.process_time() - cpu
            print(
                f"client {name:<8} one caller: {calls / elapsed:6.0f} txns/s, "
                f"{used / calls * 1e6:5.0f} us client CPU per txn"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-host", type=int, default=1000, help="allocations per host")
    parser.add_argument("--calls", type=int, default=1000, help="txns per HTTP client timed")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each workload")
    args = parser.parse_args()
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as tmp:
        workdir = Path(tmp)
        with Cluster(1, workdir / "one") as one:
            _clients(one, args.calls)
            _rates(one, workdir, "one member", args.per_host, args.rounds)
        with Cluster(3, workdir / "three") as three:
            three.wait_leader()
            _rates(three, workdir, "3-member cluster", args.per_host, args.rounds)
            _leader_kill(three, workdir, args.per_host)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
