"""One host in a separate process: joins a shared pool and allocates addresses.

Each acknowledged address is written to ``--out`` at once (a line per address,
flushed), so a SIGKILL loses no acknowledgement. With ``--go``, it creates
``<out>.ready`` once it holds the pool, then waits for the ``--go`` file.
Prints, at the end, a JSON line: the count, the longest wait for one
allocation, when the allocations began and ended (``time.time()``, to add up
rates across hosts), the CPU time they took and the HTTP requests they sent.
``--naive`` is the benchmark's baseline: no driver, every host takes the
lowest free ordinal with one create-if-absent transaction per try.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from ipamkit_etcd import _client as etcd

from ipamkit import Host

_GO_TIMEOUT = 120.0
#: HTTP requests sent by every client of this process, retries included.
_sent = [0]


def _counting(exchange: Any) -> Any:
    def count(self: Any, request: bytes) -> Any:
        _sent[0] += 1
        return exchange(self, request)

    return count


etcd._Endpoint.exchange = _counting(etcd._Endpoint.exchange)  # type: ignore[method-assign]


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + _GO_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"no {path} after {_GO_TIMEOUT:g} s")
        time.sleep(0.005)


def _naive(args: argparse.Namespace, out: Any) -> tuple[int, float]:
    client = etcd.EtcdClient(args.endpoints.split(","), timeout=0.5, retry=10)
    root = f"{args.prefix}naive/"
    cursor, longest, failed = 1, 0.0, 0
    for _ in range(args.count):
        started = time.monotonic()
        while True:
            key = f"{root}{cursor:08x}"
            value = f'{{"h":"{args.host}"}}'.encode()
            outcome = client.txn([etcd.absent(key)], [etcd.put(key, value)])
            cursor += 1
            if outcome.succeeded:
                break
            failed += 1
        longest = max(longest, time.monotonic() - started)
        out.write(f"{cursor - 1}\n")
        out.flush()
    client.close()
    return failed, longest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--go", help="wait for this file before allocating")
    parser.add_argument("--naive", action="store_true", help="the lowest-free baseline")
    args = parser.parse_args()
    options = {"endpoints": args.endpoints, "prefix": args.prefix, "host": args.host}
    driver = Host(options={"etcd": options}).driver("etcd")
    pool_id = driver.request_pool("GlobalDefault", args.pool).pool_id
    if args.go:
        open(f"{args.out}.ready", "w").close()
        _wait_for(args.go)
    began, cpu, sent = time.time(), time.process_time(), _sent[0]
    longest, failed = 0.0, 0
    with open(args.out, "a") as out:
        if args.naive:
            failed, longest = _naive(args, out)
        else:
            for _ in range(args.count):
                started = time.monotonic()
                address = driver.request_address(pool_id).address
                longest = max(longest, time.monotonic() - started)
                out.write(f"{address.ip}\n")  # type: ignore[union-attr]
                out.flush()
    ended, cpu, sent = time.time(), time.process_time() - cpu, _sent[0] - sent
    driver.close()
    summary = {"host": args.host, "count": args.count, "longest": longest, "failed": failed}
    print(json.dumps(summary | {"began": began, "ended": ended, "cpu": cpu, "requests": sent}))


if __name__ == "__main__":
    main()
