"""One host in a separate process: joins a shared pool and allocates addresses.

Each acknowledged address is written to ``--out`` at once (a line per address,
flushed), so a SIGKILL loses no acknowledgement. Prints, at the end, a JSON
line with the count and the longest wait for one allocation.
"""

from __future__ import annotations

import argparse
import json
import time

from ipamkit import Host


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--release", action="store_true", help="release all at the end")
    args = parser.parse_args()
    options = {"endpoints": args.endpoints, "prefix": args.prefix, "host": args.host}
    driver = Host(options={"etcd": options}).driver("etcd")
    pool_id = driver.request_pool("GlobalDefault", args.pool).pool_id
    longest = 0.0
    taken = []
    with open(args.out, "a") as out:
        for _ in range(args.count):
            started = time.monotonic()
            address = driver.request_address(pool_id).address
            longest = max(longest, time.monotonic() - started)
            out.write(f"{address.ip}\n")  # type: ignore[union-attr]
            out.flush()
            taken.append(address)
    if args.release:
        for address in taken:
            driver.release_address(pool_id, address.ip)  # type: ignore[union-attr]
        driver.release_pool(pool_id)
    driver.close()  # type: ignore[attr-defined]
    print(json.dumps({"host": args.host, "count": len(taken), "longest": longest}))


if __name__ == "__main__":
    main()
