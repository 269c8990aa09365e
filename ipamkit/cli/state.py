"""``ipamkit state PATH``: what a durable ``default`` driver's state file holds, read-only."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ipamkit.cli._table import format_table
from ipamkit.drivers.default import StateReport, read_state
from ipamkit.errors import IpamError

NAME = "state"
HELP = "show the pools and addresses of a default driver's state file, without writing to it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the state file (the driver's option state)")
    parser.add_argument(
        "--addresses", action="store_true", help="list the allocated addresses of each pool"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _text(report: StateReport, addresses: bool) -> str:
    rows = [
        [
            pool.pool_id,
            f"{pool.size:,}",
            f"{pool.used:,}",
            f"{pool.free:,}",
            "auto-release" if pool.auto_release else "",
        ]
        for pool in report.pools
    ]
    lines = [format_table(["POOL", "SIZE", "USED", "FREE", ""], rows)]
    starts = ", ".join(f"{name} {start}" for name, start in report.starts.items())
    lines.append(f"\nnext predefined pool index: {starts}")
    if addresses:
        for pool in report.pools:
            if pool.master is None:
                lines.append(f"\n{pool.pool_id}:")
                lines.extend(f"  {address}" for address in pool.addresses)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = read_state(args.path, addresses=args.addresses)
    except IpamError as exc:
        print(f"ipamkit state: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        document = asdict(report)
        if not args.addresses:
            for pool in document["pools"]:
                del pool["addresses"]
        print(json.dumps(document, indent=2))
    else:
        print(_text(report, args.addresses))
    return 0
