"""Benchmark of the ``default`` driver against a deliberately simple baseline.

Run ``python bench/bench_default.py`` (``--quick`` for smaller sizes,
``--repeat N`` for more repeats, ``--wall`` for wall-clock time). Each workload
is timed through the public API of a driver from ``ipamkit.Host()``, best of
several repeats with a ``gc.collect()`` before each, and reported per
operation. The clock is this process's CPU time: on a shared machine wall-clock
time also counts the time other processes hold the CPU (it doubled some
figures here). The baseline is a set of integers per pool over ``ipaddress``
objects, measured in the same run. For the address workloads (1 to 3) the
floor is measured too: what the contract alone costs per call in this
interpreter (see :class:`Floor`), which no driver can go below; for the pool
workloads (5 and 6) the first and the last tenth are also timed on their own,
since per-call cost must not grow with the number of pools. Workload 7 runs
in a subprocess of its own so that its peak memory is its own; it reports both
clocks.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_network,
)
from typing import Any, NamedTuple

import ipamkit
from ipamkit import AddressResult, PoolResult
from ipamkit._interfaces import interface_maker

SEED = 20261130
#: The clock the workloads read; main() switches it to wall-clock time on --wall.
clock = time.process_time
LOCAL = "LocalDefault"
GLOBAL = "GlobalDefault"
V4_16 = "10.0.0.0/16"
V6_64 = "2001:db8::/64"


class Baseline:
    """The obvious allocator: a set of allocated integers per pool, ``ipaddress`` throughout.

    First-free takes the smallest released ordinal from a heap, else the next
    never-used one, so that neither filling nor churning a pool is quadratic.
    Pool overlaps are checked against every pool, as libnetwork did before v27.
    """

    def __init__(self) -> None:
        self.pools: dict[str, tuple[Any, set[int], list[int], list[int]]] = {}
        self.candidates = list(ip_network("10.0.0.0/8").subnets(new_prefix=24))
        self.start = 0
        self.spans: list[tuple[int, int]] = []

    def request_pool(self, pool: str = "") -> str:
        if not pool:
            for step in range(len(self.candidates)):
                candidate = self.candidates[(self.start + step) % len(self.candidates)]
                if not self._overlaps(candidate):
                    self.start = (self.start + step + 1) % len(self.candidates)
                    return self._add(candidate)
            raise RuntimeError("no pool left")
        network = ip_network(pool)
        if self._overlaps(network):
            raise RuntimeError("overlap")
        return self._add(network)

    def _overlaps(self, network: Any) -> bool:
        first = int(network.network_address)
        last = int(network.broadcast_address)
        return any(start <= last and first <= end for start, end in self.spans)

    def _add(self, network: Any) -> str:
        pool_id = str(network)
        # used, freed (a heap), next never-used ordinal
        self.pools[pool_id] = (network, {0, network.num_addresses - 1}, [], [1])
        self.spans.append((int(network.network_address), int(network.broadcast_address)))
        return pool_id

    def request_address(self, pool_id: str, address: str | None = None) -> Any:
        network, used, freed, fresh = self.pools[pool_id]
        base = int(network.network_address)
        if address is not None:
            ordinal = int(ip_address(address)) - base
            if ordinal in used:
                raise RuntimeError("in use")
        else:
            ordinal = -1
            while freed and ordinal < 0:
                candidate = heapq.heappop(freed)
                if candidate not in used:
                    ordinal = candidate
            if ordinal < 0:
                while fresh[0] in used:
                    fresh[0] += 1
                ordinal = fresh[0]
                if ordinal >= network.num_addresses:
                    raise RuntimeError("full")
        used.add(ordinal)
        interface = IPv6Interface if network.version == 6 else IPv4Interface
        return interface((base + ordinal, network.prefixlen))

    def release_address(self, pool_id: str, address: Any) -> None:
        network, used, freed, _ = self.pools[pool_id]
        ordinal = int(ip_address(address)) - int(network.network_address)
        if ordinal in used:
            used.discard(ordinal)
            heapq.heappush(freed, ordinal)


class Floor:
    """Not an allocator: the least any driver does per address call, through this API.

    ``request_address`` takes a lock, counts up from the pool's first address
    with no bookkeeping at all, and builds what the contract returns (an
    interface, with the driver's own fast builder, in an ``AddressResult``);
    ``release_address`` takes the lock and does nothing. What a driver spends
    above this is its own logic.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, list[Any]] = {}

    def request_pool(self, space: str, pool: str) -> PoolResult:
        network = ip_network(pool)
        pool_id = f"{space}/{pool}"
        self._pools[pool_id] = [interface_maker(network), int(network.network_address)]
        return PoolResult(pool_id, network, {})

    def request_address(self, pool_id: str) -> AddressResult:
        lock = self._lock
        lock.acquire()
        try:
            state = self._pools[pool_id]
            state[1] += 1
            return tuple.__new__(AddressResult, (state[0](state[1]), {}))
        finally:
            lock.release()

    def release_address(self, pool_id: str, address: Any) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self._pools[pool_id]
        finally:
            lock.release()


# -- workloads: each times one fresh allocator -----------------------------------


class Timing(NamedTuple):
    seconds: float
    operations: int
    #: Seconds per operation in the first and in the last tenth, where the
    #: workload adds pools: per-call cost must not grow with their number.
    tenths: tuple[float, float] | None = None

    @property
    def per_operation(self) -> float:
        return self.seconds / self.operations


def in_tenths(request: Callable[..., object], arguments: list[tuple[Any, ...]]) -> Timing:
    """Time ``request(*each)`` over ``arguments``, the first and last tenths on their own."""
    tenth = len(arguments) // 10
    first, middle, last = arguments[:tenth], arguments[tenth:-tenth], arguments[-tenth:]
    start = clock()
    for each in first:
        request(*each)
    first_done = clock()
    for each in middle:
        request(*each)
    last_start = clock()
    for each in last:
        request(*each)
    end = clock()
    tenths = ((first_done - start) / tenth, (end - last_start) / tenth)
    return Timing(end - start, len(arguments), tenths)


def default_driver() -> Any:
    return ipamkit.Host().driver("default")


def first_free(make: Callable[[], Any], pool: str, count: int) -> Timing:
    ipam = make()
    pool_id = _pool(ipam, LOCAL, pool)
    request = ipam.request_address
    start = clock()
    for _ in range(count):
        request(pool_id)
    return Timing(clock() - start, count)


def churn_16(make: Callable[[], Any], cycles: int) -> Timing:
    ipam = make()
    pool_id = _pool(ipam, LOCAL, V4_16)
    for _ in range(65_534):
        ipam.request_address(pool_id)
    rng = random.Random(SEED)
    victims = [IPv4Address(0x0A00_0000 + rng.randrange(1, 65_535)) for _ in range(cycles)]
    request, release = ipam.request_address, ipam.release_address
    start = clock()
    for victim in victims:
        release(pool_id, victim)
        request(pool_id)
    return Timing(clock() - start, cycles)


def specific_64(make: Callable[[], Any], count: int) -> Timing:
    ipam = make()
    pool_id = _pool(ipam, LOCAL, V6_64)
    rng = random.Random(SEED)
    base = int(IPv6Address("2001:db8::"))
    values = list(dict.fromkeys(rng.randrange(1, 1 << 64) for _ in range(count)))
    addresses = [str(IPv6Address(base + value)) for value in values]
    request = ipam.request_address
    start = clock()
    for address in addresses:
        request(pool_id, address)
    return Timing(clock() - start, len(addresses))


def predefined_pools(make: Callable[[], Any], count: int) -> Timing:
    ipam = make()
    arguments = [() if isinstance(ipam, Baseline) else (GLOBAL,)] * count
    return in_tenths(ipam.request_pool, arguments)


def explicit_pools(make: Callable[[], Any], count: int) -> Timing:
    ipam = make()
    rng = random.Random(SEED)
    pools = [f"10.{n >> 8}.{n & 255}.0/24" for n in rng.sample(range(65_536), count)]
    space = () if isinstance(ipam, Baseline) else (LOCAL,)
    return in_tenths(ipam.request_pool, [(*space, pool) for pool in pools])


def _pool(ipam: Any, space: str, pool: str) -> str:
    if isinstance(ipam, Baseline):
        return ipam.request_pool(pool)
    return str(ipam.request_pool(space, pool).pool_id)


def best_of(repeat: int, run: Callable[[], Timing]) -> Timing:
    """The timing of the fastest of ``repeat`` runs, per operation."""
    timings = []
    for _ in range(repeat):
        gc.collect()
        timings.append(run())
    return min(timings, key=lambda timing: timing.per_operation)


# -- workload 7, in a subprocess -------------------------------------------------


def exhaust_8_child(prefix: str) -> None:
    """Exhaust ``prefix`` with first-free requests; print time and peak memory as JSON."""
    ipam = default_driver()
    pool_id = ipam.request_pool(LOCAL, prefix).pool_id
    count = ipam_size(prefix)
    request = ipam.request_address
    gc.collect()
    start, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        request(pool_id)
    seconds, wall = time.process_time() - start, time.perf_counter() - wall
    peak_mib = peak_rss_kib() / 1024
    print(json.dumps({"seconds": seconds, "wall": wall, "count": count, "peak_mib": peak_mib}))


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    Linux's ``ru_maxrss`` keeps the peak of the process image replaced by exec,
    here the parent's copy made by fork; ``VmHWM`` covers this program alone.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def ipam_size(prefix: str) -> int:
    return int(ip_network(prefix).num_addresses) - 2


def exhaust_8(prefix: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child-exhaust", prefix],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output))


def _micros(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.per_operation * 1e6:9.2f} us"


@dataclass
class Row:
    number: int
    name: str
    target: str
    default: Timing
    floor: Timing | None
    baseline: Timing | None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per workload")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock")
    parser.add_argument("--child-exhaust", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_exhaust:
        exhaust_8_child(args.child_exhaust)
        return
    global clock  # noqa: PLW0603
    if args.wall:
        clock = time.perf_counter
    quick = args.quick
    repeat = args.repeat or (1 if quick else 5)
    big, small = (20_000, 2_000) if quick else (200_000, 20_000)
    workloads: list[tuple[int, str, str, Callable[[Callable[[], Any]], Timing]]] = [
        (1, "exhaust a /16, first-free", "<= 0.8 us", lambda m: first_free(m, V4_16, 65_534)),
        (2, f"churn a full /16, {big:,} cycles", "<= 1.3 us", lambda m: churn_16(m, big)),
        (3, f"{big:,} first-free in a /64", "<= 0.7 us", lambda m: first_free(m, V6_64, big)),
        (4, f"{small:,} specific in a /64", "<= 5 us", lambda m: specific_64(m, small)),
        (5, f"{small:,} predefined global pools", "<= 5 us", lambda m: predefined_pools(m, small)),
        (6, f"{small:,} explicit /24 in 10/8", "<= 5 us", lambda m: explicit_pools(m, small)),
    ]
    rows = []
    for number, name, target, workload in workloads:
        default = best_of(repeat, lambda w=workload: w(default_driver))  # type: ignore[misc]
        floor = best_of(repeat, lambda w=workload: w(Floor)) if number <= 3 else None  # type: ignore[misc]
        baseline = None
        if not args.no_baseline:
            baseline = best_of(1 if number in (5, 6) else repeat, lambda w=workload: w(Baseline))  # type: ignore[misc]
        rows.append(Row(number, name, target, default, floor, baseline))
        print(f"  measured workload {number}", file=sys.stderr, flush=True)
    prefix = V4_16 if quick else "10.0.0.0/8"
    seven = exhaust_8(prefix)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"default driver, Python {sys.version.split()[0]}, best of {repeat}, "
        f"{'wall-clock' if args.wall else 'CPU'} time, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
    print(
        f"{'#':>2}  {'workload':38} {'target':>10} {'default':>12} {'floor':>12} "
        f"{'baseline':>12} {'speed-up':>9}"
    )
    for row in rows:
        ratio = "-"
        if row.baseline is not None:
            ratio = f"{row.baseline.per_operation / row.default.per_operation:8.1f}x"
        print(
            f"{row.number:>2}  {row.name:38} {row.target:>10} {_micros(row.default):>12} "
            f"{_micros(row.floor):>12} {_micros(row.baseline):>12} {ratio:>9}"
        )
    growth = ", ".join(
        f"{row.number}. {first * 1e6:.2f} -> {last * 1e6:.2f} us"
        for row in rows
        if row.default.tenths is not None
        for first, last in [row.default.tenths]
    )
    print(f"    default, first tenth of the pools -> last tenth: {growth}")
    print(
        f" 7  exhaust {prefix} ({seven['count']:,.0f} addresses)"
        f"{'< 20 s, < 64 MiB':>22}  {seven['seconds']:.1f} s CPU "
        f"({seven['wall']:.1f} s wall), "
        f"{seven['seconds'] / seven['count'] * 1e6:.2f} us/op, "
        f"peak RSS {seven['peak_mib']:.1f} MiB (baseline not run: ~1 GiB of set)"
    )


if __name__ == "__main__":
    main()
