"""Benchmark of the etcd driver: allocations/s from 1 and 4 hosts, a leader kill.

Each host is a separate process (``drivers/etcd/tests/host_worker.py``) on one
shared pool, started together; the rate is every allocation over the time from
the first host's start to the last host's end. Beside the driver, in the same
run, the naive baseline: every host takes the lowest free address with one
create-if-absent transaction per try. Beside each rate, the HTTP requests and
the client CPU per allocation. Then the leader of the 3-member cluster is
killed under load, and the longest pause of each host is printed; and the HTTP
clients considered for etcd's JSON gateway are timed on one member beside this
package's own. Prints figures, asserts nothing. Needs ``etcd`` on PATH.

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
from collections.abc import Callable
from pathlib import Path
from statistics import median

_TESTS = Path(__file__).resolve().parent.parent / "drivers" / "etcd" / "tests"
sys.path.insert(0, str(_TESTS))

from etcd_cluster import Cluster  # noqa: E402

_POOL = "10.64.0.0/14"


def _etcd_cpu(cluster: Cluster) -> float:
    """The CPU seconds the running members have used so far (from Linux's /proc)."""
    total = 0
    for member in cluster.members:
        if member.process is not None:
            stat = Path(f"/proc/{member.process.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _run_hosts(
    cluster: Cluster, workdir: Path, hosts: int, per_host: int, *, naive: bool
) -> tuple[float, list[dict[str, float]], float]:
    """Run ``hosts`` host processes together; return allocations/s, their summaries
    and the CPU seconds etcd used meanwhile."""
    run = Path(tempfile.mkdtemp(dir=workdir))
    go = run / "go"
    prefix = f"/bench/{run.name}/"
    outs = [run / f"h{i}.txt" for i in range(hosts)]
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
                f"--out={out}",
                f"--go={go}",
                *(["--naive"] if naive else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, out in enumerate(outs)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{out}.ready").exists() for out in outs):  # every host holds the pool
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            break  # the summaries below tell why
        time.sleep(0.01)
    etcd_cpu = _etcd_cpu(cluster)
    go.touch()
    summaries = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    etcd_cpu = _etcd_cpu(cluster) - etcd_cpu
    seconds = max(s["ended"] for s in summaries) - min(s["began"] for s in summaries)
    return hosts * per_host / seconds, summaries, etcd_cpu


def _rates(cluster: Cluster, workdir: Path, label: str, per_host: int, rounds: int) -> None:
    """Print the median of ``rounds`` runs of each workload, the runs interleaved.

    Beside each rate, per allocation: the HTTP requests, the client CPU (of
    every host's process) and etcd's CPU (of every member), which depend far
    less than the rate on what else the machine runs.
    """
    for hosts in (1, 4):
        rates: dict[bool, list[float]] = {False: [], True: []}
        requests: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        server: dict[bool, list[float]] = {False: [], True: []}
        count = hosts * per_host
        for _ in range(rounds):
            for naive in (False, True):
                rate, summaries, etcd_cpu = _run_hosts(
                    cluster, workdir, hosts, per_host, naive=naive
                )
                rates[naive].append(rate)
                requests[naive].append(sum(s["requests"] for s in summaries) / count)
                cpu[naive].append(sum(s["cpu"] for s in summaries) / count)
                server[naive].append(etcd_cpu / count)
        for naive in (False, True):
            name = "naive lowest-free" if naive else "etcd driver"
            runs = ", ".join(f"{r:.0f}" for r in rates[naive])
            print(
                f"{label:<18} {hosts} host(s)  {name:<18} {median(rates[naive]):8.0f} "
                f"allocations/s (median of {runs}); per allocation: "
                f"{median(requests[naive]):.3f} requests, "
                f"{median(cpu[naive]) * 1e6:.0f} us client CPU, "
                f"{median(server[naive]) * 1e6:.0f} us etcd CPU"
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


def _clients(cluster: Cluster, calls: int) -> None:
    """Time one caller doing create-if-absent transactions with each HTTP client
    considered, this package's own last (its transactions built as the driver's are)."""
    import base64  # noqa: PLC0415
    import http.client  # noqa: PLC0415

    from ipamkit_etcd import _client as etcd  # noqa: PLC0415

    try:
        import httpx  # noqa: PLC0415
        import urllib3  # noqa: PLC0415
    except ImportError as exc:
        print(f"clients skipped: {exc} (pip install httpx urllib3)")
        return

    url = cluster.endpoints[0]
    host, port = url.removeprefix("http://").split(":")

    def body(name: str, i: int) -> bytes:
        key = base64.b64encode(f"/clients/{name}/{i}".encode()).decode()
        return json.dumps(
            {
                "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
                "success": [{"request_put": {"key": key, "value": "eA=="}}],
            }
        ).encode()

    connection = http.client.HTTPConnection(host, int(port))

    def stdlib(data: bytes) -> bytes:
        connection.request("POST", "/v3/kv/txn", data, {"Content-Type": "application/json"})
        return connection.getresponse().read()

    own = etcd.EtcdClient([url], timeout=5, retry=10)

    def ipamkit_etcd(name: str, i: int) -> None:
        key = f"/clients/{name}/{i}"
        own.txn([etcd.absent(key)], [etcd.put(key, b"x")])

    with httpx.Client(base_url=url) as client:
        pool = urllib3.PoolManager()
        posts: dict[str, Callable[[str, int], object]] = {
            "httpx": lambda name, i: client.post("/v3/kv/txn", content=body(name, i)).content,
            "urllib3": lambda name, i: (
                pool.request("POST", url + "/v3/kv/txn", body=body(name, i)).data
            ),
            "http.client": lambda name, i: stdlib(body(name, i)),
            "ipamkit-etcd": ipamkit_etcd,
        }
        for name, post in posts.items():
            cpu, start = time.process_time(), time.perf_counter()
            for i in range(calls):
                post(name, i)
            elapsed, used = time.perf_counter() - start, time.process_time() - cpu
            print(
                f"client {name:<12} one caller: {calls / elapsed:6.0f} txns/s, "
                f"{used / calls * 1e6:5.0f} us client CPU per txn"
            )
    connection.close()
    own.close()


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
