"""``ipamkit drivers``: list every driver the host can find and how it fared."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ipamkit._contract import Capability
from ipamkit._host import DriverInfo, Host
from ipamkit.cli import status
from ipamkit.cli._table import format_table
from ipamkit.errors import DriverLoadError

NAME = "drivers"
HELP = "list every built-in and installed driver with its status and capabilities"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any plugin is broken"
    )


def _capabilities(capability: Capability | None) -> str:
    if capability is None:
        return "-"
    names = [name for name, value in asdict(capability).items() if value]
    return ",".join(names) or "none"


def _row(info: DriverInfo) -> list[str]:
    origin = f"{info.distribution} {info.version}" if info.distribution else "registered in code"
    return [
        info.name,
        info.status,
        _capabilities(info.capability),
        "yes" if info.builtin else "no",
        origin,
        info.reason,
    ]


def run(args: argparse.Namespace) -> int:
    try:
        rows = Host(strict=False).describe()
    except DriverLoadError as exc:  # pragma: no cover - describe() reports, it does not raise
        return status.error(NAME, str(exc), status.DRIVER)
    if args.json:
        print(json.dumps([asdict(info) for info in rows], indent=2))
    else:
        print(
            format_table(
                ["NAME", "STATUS", "CAPABILITIES", "BUILT-IN", "FROM", "REASON"],
                [_row(i) for i in rows],
            )
        )
    broken = any(info.status == "failed" for info in rows)
    return status.FAILURE if args.strict and broken else status.OK
