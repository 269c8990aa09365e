"""The default driver under concurrent calls."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

import pytest

from ipamkit import errors
from ipamkit.drivers.default import DefaultIpam

THREADS = 8


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    # Make the interpreter switch threads often, so that races would show.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run_threads(target: Callable[[int], None]) -> None:
    barrier = threading.Barrier(THREADS)

    def run(number: int) -> None:
        barrier.wait()
        target(number)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("serial", [False, True])
def test_eight_threads_fill_and_release_a_21(ipam: DefaultIpam, serial: bool) -> None:
    pool_id = ipam.request_pool("LocalDefault", "10.0.0.0/21").pool_id
    empty = ipam.snapshot()
    options = {"com.docker.network.ipam.serial": "true"} if serial else None
    got: list[list[IPv4Address]] = [[] for _ in range(THREADS)]

    def fill(number: int) -> None:
        while True:
            try:
                result = ipam.request_address(pool_id, None, options)
            except errors.NoAvailableIPsError:
                return
            assert result.address is not None
            got[number].append(result.address.ip)  # type: ignore[arg-type]

    run_threads(fill)
    every = [address for addresses in got for address in addresses]
    assert len(every) == len(set(every)) == 2046
    assert set(every) == {IPv4Address(0x0A000000 + i) for i in range(1, 2047)}

    def release(number: int) -> None:
        for address in got[number]:
            ipam.release_address(pool_id, address)

    run_threads(release)
    snapshot = ipam.snapshot()
    assert snapshot["LocalDefault"]["masters"]["10.0.0.0/21"][0] == (0, 1, 2047, 2048)  # type: ignore[index]
    assert {k: v for k, v in snapshot.items() if k != "LocalDefault"} == {
        k: v for k, v in empty.items() if k != "LocalDefault"
    }


def test_concurrent_predefined_pools_are_distinct(ipam: DefaultIpam) -> None:
    got: list[str] = []

    def take(_: int) -> None:
        for _ in range(100):
            got.append(str(ipam.request_pool("GlobalDefault").pool))

    run_threads(take)
    assert len(got) == len(set(got)) == THREADS * 100


def test_concurrent_churn_keeps_every_address_once(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool("LocalDefault", "10.0.0.0/24").pool_id
    held: list[set[IPv4Address]] = [set() for _ in range(THREADS)]

    def churn(number: int) -> None:
        mine = held[number]
        for step in range(600):
            if step % 3 == 2 and mine:
                ipam.release_address(pool_id, mine.pop())
                continue
            try:
                result = ipam.request_address(pool_id)
            except errors.NoAvailableIPsError:
                continue
            mine.add(result.address.ip)  # type: ignore[union-attr]

    run_threads(churn)
    every = [address for addresses in held for address in addresses]
    assert len(every) == len(set(every))
    free = 254 - len(every)
    for _ in range(free):
        ipam.request_address(pool_id)
    with pytest.raises(errors.NoAvailableIPsError):
        ipam.request_address(pool_id)


def test_pools_and_addresses_come_and_go_concurrently(ipam: DefaultIpam) -> None:
    # Every thread creates and releases pools (explicit, predefined, subpools
    # of a shared master) while taking and returning addresses; afterwards
    # nothing is left but the shared master, exactly as it started.
    shared = ipam.request_pool("LocalDefault", "10.200.0.0/16").pool_id
    start = ipam.snapshot()
    failures: list[Exception] = []

    def work(number: int) -> None:
        try:
            for step in range(40):
                own = ipam.request_pool("LocalDefault", f"10.{number}.{step}.0/24").pool_id
                chosen = ipam.request_pool("GlobalDefault").pool_id
                child = ipam.request_pool(
                    "LocalDefault", "10.200.0.0/16", f"10.200.{number}.{step * 4}/30"
                ).pool_id
                taken = [ipam.request_address(pool).address for pool in (own, chosen, child)]
                taken.append(
                    ipam.request_address(
                        shared, None, {"com.docker.network.ipam.serial": "true"}
                    ).address
                )
                for pool, address in zip((own, chosen, child, shared), taken, strict=True):
                    ipam.release_address(pool, address.ip)  # type: ignore[union-attr]
                for pool in (own, chosen, child):
                    ipam.release_pool(pool)
        except Exception as exc:  # reported below, with the others
            failures.append(exc)

    run_threads(work)
    assert failures == []
    after = ipam.snapshot()
    # Only the predefined start index and the shared master's serial cursor moved on.
    assert after["routes"] == start["routes"]
    assert after["GlobalDefault"]["masters"] == {}  # type: ignore[index]
    local = after["LocalDefault"]["masters"]  # type: ignore[index]
    assert list(local) == ["10.200.0.0/16"]
    assert local["10.200.0.0/16"][0] == (0, 1, 65535, 65536)
