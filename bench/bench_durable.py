"""Benchmark of the durable ``default`` driver (option ``state``) against its baselines.

Run ``python bench/bench_durable.py`` (``--quick`` for smaller sizes and one
round). In the same run it measures, by wall-clock time (the durable figures
wait for the disk, which CPU time would hide), median of the rounds:

1. allocations per second, first-free in a /16;
2. allocate+release cycles per second;

each for the in-memory ``default``, the durable one at ``durability=full`` and
``relaxed``, and a baseline in the style of CNI host-local: one file per address
created with ``O_EXCL`` under an ``flock``, with and without ``fsync`` (of the
file and its directory, what a durable creation takes). Then

3. read-only calls, durable against in-memory, in microseconds per call;
4. start-up of a durable driver on a file with 100,000 live addresses.

It prints the figures, the ratios and the issue's targets; it asserts nothing.
The disk's fsync latency swings widely on a shared machine: say so with figures.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from ipamkit.drivers.default import DefaultIpam, DurableDefaultIpam
from ipamkit.errors import IpamError

L = "LocalDefault"
POOL = "10.0.0.0/16"
TARGETS = {"durable full": 4_000, "durable relaxed": 20_000}


class HostLocal:
    """The baseline: CNI host-local's scheme, one file per allocated address.

    A file named by the address, created with ``O_CREAT | O_EXCL``, is the
    reservation (holding its owner); an ``flock`` on the directory's lock file
    serialises the host. The next candidate follows the last one handed out, as
    host-local's last-reserved IP does (kept in memory here, which spares the
    baseline a write).
    """

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.directory = directory
        directory.mkdir()
        self.fsync = fsync
        self._dir_fd = os.open(directory, os.O_RDONLY)
        self._lock = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._next = 1

    def request_address(self, owner: str = "container") -> str:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            for _ in range(65_534):
                ordinal, self._next = self._next, self._next % 65_534 + 1
                address = f"10.0.{ordinal >> 8}.{ordinal & 255}"
                try:
                    fd = os.open(self.directory / address, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    continue
                try:
                    os.write(fd, owner.encode())
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if self.fsync:
                    os.fsync(self._dir_fd)
                return address
            raise RuntimeError("the pool is full")
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def release_address(self, address: str) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            os.unlink(self.directory / address)
            if self.fsync:
                os.fsync(self._dir_fd)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._dir_fd)
        os.close(self._lock)


class Subject:
    """One allocator under test, with a uniform allocate and release."""

    def __init__(self, name: str, make: Callable[[Path], Any]) -> None:
        self.name = name
        self.make = make

    def allocations(self, directory: Path, count: int) -> float:
        allocator, allocate, _ = self._open(directory)
        try:
            start = time.perf_counter()
            for _ in range(count):
                allocate()
            return count / (time.perf_counter() - start)
        finally:
            allocator.close()

    def cycles(self, directory: Path, count: int) -> float:
        allocator, allocate, release = self._open(directory)
        try:
            for _ in range(1_000):  # a pool in use, not an empty one
                allocate()
            start = time.perf_counter()
            for _ in range(count):
                release(allocate())
            return count / (time.perf_counter() - start)
        finally:
            allocator.close()

    def _open(self, directory: Path) -> tuple[Any, Callable[[], Any], Callable[[Any], None]]:
        allocator = self.make(directory)
        if isinstance(allocator, HostLocal):
            return allocator, allocator.request_address, allocator.release_address
        pool_id = allocator.request_pool(L, POOL).pool_id
        request, release = allocator.request_address, allocator.release_address

        def allocate() -> Any:
            return request(pool_id).address

        return allocator, allocate, lambda address: release(pool_id, address)


SUBJECTS = [
    Subject("in-memory", lambda directory: DefaultIpam()),
    Subject("durable full", lambda directory: DurableDefaultIpam(directory / "state.db")),
    Subject(
        "durable relaxed",
        lambda directory: DurableDefaultIpam(directory / "state.db", durability="relaxed"),
    ),
    Subject("host-local fsync", lambda directory: HostLocal(directory / "pool", fsync=True)),
    Subject("host-local no fsync", lambda directory: HostLocal(directory / "pool", fsync=False)),
]


def median_rate(measure: Callable[[Path, int], float], count: int, rounds: int) -> float:
    rates = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
            rates.append(measure(Path(directory), count))
    return statistics.median(rates)


def per_call_us(call: Callable[[], object], count: int) -> float:
    """One loop of ``count`` calls, in microseconds per call."""
    start = time.perf_counter()
    for _ in range(count):
        with suppress(IpamError):  # the failing call is a workload
            call()
    return (time.perf_counter() - start) / count * 1e6


def read_calls(driver: DefaultIpam) -> dict[str, Callable[[], object]]:
    """Calls that change nothing, on a driver with one pool and one held address."""
    pool_id = driver.request_pool(L, POOL).pool_id
    held = str(driver.request_address(pool_id).address.ip)  # type: ignore[union-attr]
    return {
        "get_default_address_spaces": driver.get_default_address_spaces,
        "request_address of a held address (fails)": lambda: driver.request_address(pool_id, held),
        "release_address of a free address (no-op)": lambda: driver.release_address(
            pool_id, "10.0.200.1"
        ),
    }


def read_only(directory: Path, count: int) -> list[tuple[str, float, float]]:
    """Best of five loops per call and driver, the two drivers' loops taken in turn.

    In turn, so that neither driver gets the quieter moments of a shared machine.
    """
    with DefaultIpam() as memory, DurableDefaultIpam(directory / "reads.db") as durable:
        calls = read_calls(memory), read_calls(durable)
        rows = []
        for name in calls[0]:
            best = [float("inf"), float("inf")]
            for _ in range(5):
                for side, driver_calls in enumerate(calls):
                    best[side] = min(best[side], per_call_us(driver_calls[name], count))
            rows.append((name, best[0], best[1]))
    return rows


def start_up(directory: Path, addresses: int) -> tuple[float, float]:
    """Seconds to open a state holding ``addresses`` live addresses (best of 3); its MiB."""
    path = directory / "startup.db"
    with DurableDefaultIpam(path, durability="relaxed") as driver:
        pool_id = driver.request_pool(L, "10.0.0.0/14").pool_id
        for _ in range(addresses):
            driver.request_address(pool_id)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        driver = DurableDefaultIpam(path)
        best = min(best, time.perf_counter() - start)
        driver.close()
    return best, path.stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 3, quick 1)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    count = 500 if args.quick else 5_000
    live = 10_000 if args.quick else 100_000
    print(
        f"durable default, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"wall clock, median of {rounds}, {os.cpu_count()} CPUs, "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    header = "".join(f"{subject.name:>21}" for subject in SUBJECTS)
    print(f" #  {'per second':<28}{header}")
    figures: dict[str, dict[str, float]] = {}
    for number, (workload, measure) in enumerate(
        (("allocations", Subject.allocations), ("allocate+release cycles", Subject.cycles)),
        start=1,
    ):
        figures[workload] = {
            subject.name: median_rate(partial(measure, subject), count, rounds)
            for subject in SUBJECTS
        }
        cells = "".join(f"{figures[workload][s.name]:>21,.0f}" for s in SUBJECTS)
        print(f" {number}  {workload:<28}{cells}")
    allocations = figures["allocations"]
    for name, target in TARGETS.items():
        rate = allocations[name]
        print(
            f"    {name}: {rate:,.0f} allocations/s, target {target:,}: "
            f"{'met' if rate >= target else 'NOT met'}; "
            f"{allocations['in-memory'] / rate:.0f}x slower than in memory, "
            f"{rate / allocations['host-local fsync']:.1f}x host-local with fsync, "
            f"{rate / allocations['host-local no fsync']:.1f}x host-local without"
        )
    print(f" 3  read-only calls, us per call{'in-memory':>21}{'durable':>21}{'ratio':>10}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        for name, memory, durable in read_only(Path(directory), 2_000 if args.quick else 20_000):
            print(f"    {name:<45}{memory:>8.2f} us{durable:>18.2f} us{durable / memory:>9.2f}x")
        seconds, mib = start_up(Path(directory), live)
    print(
        f" 4  start-up with {live:,} live addresses: {seconds:.3f} s "
        f"(target < 1 s: {'met' if seconds < 1 else 'NOT met'}), file {mib:.1f} MiB"
    )


if __name__ == "__main__":
    main()
