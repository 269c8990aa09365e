"""Hosts as separate processes on one shared pool: concurrency, a leader kill, a host kill.

Each host is ``host_worker.py`` in its own process, with its own identity; it
writes every acknowledged address to a file the moment it has it. What etcd
holds afterwards is compared with those acknowledgements.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import Factory, start_cluster
from etcd_cluster import Cluster
from ipamkit_etcd import EtcdIpam
from ipamkit_etcd._client import EtcdClient, EtcdUnavailableError, prefix_end, put

from ipamkit import Host
from ipamkit.errors import BadPoolError

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("host_worker.py")
POOL = "10.20.0.0/20"
POOL_ID = f"GlobalDefault/{POOL}"
HOSTS = 4
_WAIT = 180.0


def _start(
    endpoints: list[str], prefix: str, host: str, count: int, out: Path
) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        str(WORKER),
        f"--endpoints={','.join(endpoints)}",
        f"--prefix={prefix}",
        f"--host={host}",
        f"--pool={POOL}",
        f"--count={count}",
        f"--out={out}",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = process.communicate(timeout=_WAIT)
    assert process.returncode == 0, out
    summary: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return summary


def _acknowledged(files: list[Path]) -> Counter[str]:
    return Counter(line for path in files for line in path.read_text().split())


def _held(endpoints: list[str], prefix: str) -> dict[str, str]:
    """Every address etcd holds under ``prefix``, with its host."""
    driver = _driver(endpoints, prefix, "inspector")
    try:
        return {address: ",".join(hosts) for address, hosts in driver.holdings(POOL_ID).items()}
    finally:
        driver.close()


def _driver(endpoints: list[str], prefix: str, host: str) -> EtcdIpam:
    options = {"endpoints": ",".join(endpoints), "prefix": prefix, "host": host}
    driver = Host(options={"etcd": options}).driver("etcd")
    assert isinstance(driver, EtcdIpam)
    return driver


def _check(acks: Counter[str], held: dict[str, str], *, in_flight: int = 0) -> None:
    doubled = [address for address, count in acks.items() if count > 1]
    assert not doubled, f"addresses acknowledged to two callers: {doubled[:10]}"
    lost = sorted(set(acks) - set(held))
    assert not lost, f"acknowledged but not in etcd: {lost[:10]}"
    unacknowledged = sorted(set(held) - set(acks))
    # A process killed between etcd's answer and its own note leaves at most
    # one address per kill that nobody was told of (Docker would never learn
    # of it either); none otherwise.
    assert len(unacknowledged) <= in_flight, unacknowledged


def test_four_hosts_allocate_from_one_pool(
    make_driver: Factory, etcd_member: Cluster, etcd_prefix: str, tmp_path: Path
) -> None:
    files = [tmp_path / f"h{i}.txt" for i in range(HOSTS)]
    workers = [
        _start(etcd_member.endpoints, etcd_prefix, f"h{i}", 250, files[i]) for i in range(HOSTS)
    ]
    summaries = [_finish(worker) for worker in workers]
    acks = _acknowledged(files)
    assert sum(acks.values()) == 250 * HOSTS
    held = _held(etcd_member.endpoints, etcd_prefix)
    _check(acks, held)
    by_host = Counter(held.values())
    assert by_host == {f"h{i}": 250 for i in range(HOSTS)}
    print("longest allocation per host (s):", [s["longest"] for s in summaries])
    # Counts balance: each host releases what it holds and its reference.
    for i in range(HOSTS):
        driver = make_driver(f"h{i}")
        for address in files[i].read_text().split():
            driver.release_address(POOL_ID, address)
        driver.release_pool(POOL_ID)
    with pytest.raises(BadPoolError):
        make_driver("h0").release_pool(POOL_ID)
    client = EtcdClient(etcd_member.endpoints, timeout=1, retry=5)
    left = client.range_all(etcd_prefix, prefix_end(etcd_prefix))
    client.close()
    assert [kv.key for kv in left] == [etcd_prefix + "space/global"]  # no pool, no address


def test_leader_killed_under_load(tmp_path: Path, etcd_prefix: str) -> None:
    cluster = start_cluster(3, tmp_path / "etcd")
    try:
        files = [tmp_path / f"h{i}.txt" for i in range(HOSTS)]
        workers = [
            _start(cluster.endpoints, etcd_prefix, f"h{i}", 400, files[i]) for i in range(HOSTS)
        ]
        deadline = time.monotonic() + _WAIT
        while sum(len(p.read_text().split()) for p in files if p.exists()) < 200:
            assert time.monotonic() < deadline, "the hosts made no progress"
            time.sleep(0.05)
        leader = cluster.wait_leader()
        killed_at = time.monotonic()
        cluster.kill(leader)
        new_leader = cluster.wait_leader()
        election = time.monotonic() - killed_at
        summaries = [_finish(worker) for worker in workers]
        print(
            f"leader m{leader} killed; m{new_leader} leads after {election:.2f} s; "
            "longest pause per host (s):",
            [round(float(s["longest"]), 2) for s in summaries],  # type: ignore[arg-type]
        )
        live = [url for i, url in enumerate(cluster.endpoints) if i != leader]
        _check(_acknowledged(files), _held(live, etcd_prefix))
        assert sum(_acknowledged(files).values()) == 400 * HOSTS
    finally:
        cluster.stop()


def test_a_member_without_a_leader_answers_at_once(tmp_path: Path) -> None:
    """With its quorum gone, a member says "no leader" at once rather than holding each
    request to its deadline: a caller retries within its budget, and sees why."""
    cluster = start_cluster(3, tmp_path / "etcd")
    try:
        leader = cluster.wait_leader()
        survivor = cluster.members[(leader + 1) % 3]
        for index in range(3):
            if cluster.members[index] is not survivor:
                cluster.kill(index)
        deadline = time.monotonic() + _WAIT
        while cluster.status(survivor).get("leader") not in (None, "0"):
            assert time.monotonic() < deadline, "the last member still follows a dead leader"
            time.sleep(0.05)
        # A deadline far beyond the budget: a held request would end in "timed out".
        client = EtcdClient([survivor.url], timeout=30, retry=0.5)
        with pytest.raises(EtcdUnavailableError, match="no leader"):
            client.txn([], [put("/quorum/lost", b"x")])
        client.close()
    finally:
        cluster.stop()


def test_host_killed_mid_load_and_restarted(
    etcd_member: Cluster, etcd_prefix: str, tmp_path: Path
) -> None:
    files = [tmp_path / f"h{i}.txt" for i in range(HOSTS)]
    workers = [
        _start(etcd_member.endpoints, etcd_prefix, f"h{i}", 300, files[i]) for i in range(HOSTS)
    ]
    deadline = time.monotonic() + _WAIT
    while not files[0].exists() or len(files[0].read_text().split()) < 100:
        assert time.monotonic() < deadline, "host h0 made no progress"
        time.sleep(0.01)
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].wait(timeout=_WAIT)
    done = len(files[0].read_text().split())
    restarted = _start(etcd_member.endpoints, etcd_prefix, "h0", 300 - done, files[0])
    for worker in [restarted, *workers[1:]]:
        _finish(worker)
    acks = _acknowledged(files)
    assert sum(acks.values()) == 300 * HOSTS
    held = _held(etcd_member.endpoints, etcd_prefix)
    _check(acks, held, in_flight=1)
    print(f"h0 killed after {done} acknowledged; unacknowledged in etcd: {len(held) - len(acks)}")


def test_two_served_hosts_through_dockers_plugin_protocol(
    etcd_member: Cluster, etcd_prefix: str, tmp_path: Path
) -> None:
    # As deployed: each host runs `ipamkit serve etcd` with its own identity,
    # and its Docker daemon talks to it over a unix socket.
    servers, drivers = [], []
    try:
        for host in ("h1", "h2"):
            socket_path = tmp_path / f"{host}.sock"
            command = [sys.executable, "-m", "ipamkit", "serve", "etcd", "--socket"]
            command += [str(socket_path), "--driver-opt", f"endpoints={etcd_member.endpoints[0]}"]
            command += ["--driver-opt", f"prefix={etcd_prefix}", "--driver-opt", f"host={host}"]
            servers.append(subprocess.Popen(command))
            deadline = time.monotonic() + 30
            while not socket_path.exists():
                assert time.monotonic() < deadline, f"ipamkit serve for {host} did not start"
                time.sleep(0.05)
            drivers.append(Host(options={"remote": {"url": str(socket_path)}}).driver("remote"))
        one, two = drivers
        gateway = {"RequestAddressType": "com.docker.network.gateway"}
        pool_id = one.request_pool("GlobalDefault", "192.168.50.0/24").pool_id
        assert two.request_pool("GlobalDefault", "192.168.50.0/24").pool_id == pool_id
        assert str(one.request_address(pool_id, "192.168.50.1", gateway).address) == (
            "192.168.50.1/24"
        )
        assert str(two.request_address(pool_id, "192.168.50.1", gateway).address) == (
            "192.168.50.1/24"
        )
        taken = [d.request_address(pool_id).address for d in drivers for _ in range(5)]
        assert len(set(taken)) == 10
        assert "192.168.50.1/24" not in {str(a) for a in taken}
        for driver in drivers:
            driver.release_address(pool_id, "192.168.50.1")
            driver.release_pool(pool_id)
        with pytest.raises(BadPoolError):
            one.release_pool(pool_id)
    finally:
        for driver in drivers:
            driver.close()
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
