"""Round trips of ``request_address`` through a unix socket, client and server in two processes.

    python bench/bench_remote.py [--calls N] [--driver NAME]

The server process serves ``--driver`` through ``ipamkit.Host`` (for example
``default``), or by default a trivial in-bench driver, so that the figure is
the protocol's cost and not an allocator's. The client is ipamkit's ``remote``
driver with one keep-alive connection, as Docker's daemon uses. Target on a
2-core machine: at least 5,000 calls/s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from ipamkit import Address, AddressResult, Capability, Feature, Host, Ipam, PoolResult
from ipamkit.drivers.remote import Endpoint, connect
from ipamkit.server import open_unix_server

TARGET = 5000
POOL = IPv4Network("10.0.0.0/8")


class Counting(Ipam):
    """Hands out the addresses of 10.0.0.0/8 in order; the cheapest driver possible."""

    features = frozenset({Feature.THREAD_SAFE})

    def __init__(self) -> None:
        self._next = int(POOL.network_address)
        self._lock = threading.Lock()

    def get_default_address_spaces(self) -> tuple[str, str]:
        return "local", "global"

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        return PoolResult("bench", POOL, {})

    def release_pool(self, pool_id: str) -> None:
        pass

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        with self._lock:
            self._next += 1
            return AddressResult(IPv4Interface((self._next, POOL.prefixlen)), {})

    def release_address(self, pool_id: str, address: Address | str) -> None:
        pass

    def is_builtin(self) -> bool:
        return False


def serve(path: str, driver_name: str | None) -> None:
    """The server process: serve until SIGTERM."""
    if driver_name is None:
        driver: Ipam = Counting()
        capability = Capability()
    else:
        host = Host()
        driver, capability = host.driver(driver_name), host.capability(driver_name)
    server = open_unix_server(driver, capability, path)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    server.close()


def measure(path: str, calls: int, rounds: int) -> tuple[list[float], float]:
    """Calls per second of each round after a warm-up, and the client's CPU seconds per call.

    Round trips are wall-clock by nature: the two processes take turns, and on
    a shared machine other processes' turns count too, hence the median.
    """
    client, _ = connect(Endpoint.parse(path))
    pool_id = client.request_pool(*client.get_default_address_spaces()[:1], "10.0.0.0/8").pool_id
    for _ in range(500):
        client.request_address(pool_id)
    rates = []
    cpu = time.process_time()
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            client.request_address(pool_id)
        rates.append(calls / (time.perf_counter() - started))
    cpu = (time.process_time() - cpu) / (rounds * calls)
    client.close()
    return rates, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--driver", help="serve this registered driver instead of the trivial one")
    parser.add_argument("--serve", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.driver)
        return 0
    directory = Path(tempfile.mkdtemp(prefix="ipk-bench-", dir="/tmp"))
    path = str(directory / "bench.sock")
    command = [sys.executable, __file__, "--serve", path]
    if args.driver:
        command += ["--driver", args.driver]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            print("the server did not start", file=sys.stderr)
            return 1
        rates, client_cpu = measure(path, args.calls, args.rounds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        os.rmdir(directory)
    best, median = max(rates), statistics.median(rates)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"request_address over a unix socket ({args.driver or 'trivial'} driver, "
        f"{args.rounds} x {args.calls} calls, {os.cpu_count()} CPUs, load average {load}): "
        f"median {median:,.0f} calls/s ({1e6 / median:.0f} µs each), best {best:,.0f} calls/s, "
        f"client CPU {client_cpu * 1e6:.0f} µs per call; "
        f"target {TARGET:,}: {'met' if median >= TARGET else 'NOT met'}"
    )
    return 0  # the figures are reported, never judged: the status says it ran


if __name__ == "__main__":
    sys.exit(main())
