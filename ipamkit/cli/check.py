"""``ipamkit check NAME``: run the conformance suite against a driver, clause by clause."""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import Any

from ipamkit._contract import Feature, PoolReading
from ipamkit.cli._table import format_table

NAME = "check"
HELP = "run the conformance suite against a driver and print a clause-by-clause table"

#: Exit status when the suite is not installed or the arguments are unusable.
USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("driver", metavar="NAME", help="the driver to check")
    parser.add_argument(
        "--driver-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the driver's plugin (repeatable)",
    )
    parser.add_argument(
        "--feature",
        action="append",
        default=[],
        choices=[f.value for f in Feature],
        metavar="NAME",
        help="declare a feature the driver cannot declare itself (repeatable): "
        + ", ".join(f.value for f in Feature),
    )
    parser.add_argument(
        "--pool-reading",
        choices=[r.value for r in PoolReading],
        help="declare how the driver reads a repeated request_pool",
    )
    parser.add_argument(
        "--xfail",
        action="append",
        default=[],
        metavar="CLAUSE",
        help="a clause expected to fail (repeatable)",
    )
    parser.add_argument(
        "--profile",
        choices=("dev", "ci", "thorough"),
        help="how hard the state machine tries (default: ci when CI is set, else dev)",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="other clients hold pools in this driver",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")


def _options(pairs: list[str]) -> dict[str, str] | None:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return None
        options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    try:
        # The suite is a distribution of its own, which ipamkit (and its type
        # check) does without: imported by name, on demand.
        suite: Any = importlib.import_module("ipamkit_conformance")
    except ImportError:
        print("error: ipamkit check needs the conformance suite: pip install ipamkit-conformance")
        return USAGE
    options = _options(args.driver_opt)
    if options is None:
        print("error: --driver-opt wants KEY=VALUE")
        return USAGE
    report: Any = suite.run_check(
        args.driver,
        options,
        features=args.feature,
        pool_reading=args.pool_reading,
        profile=args.profile,
        xfail=args.xfail,
        shared=args.shared,
        # The table below is the output: no pytest terminal, no configuration
        # file of whatever folder this runs in.
        pytest_args=["-p", "no:terminal", "-c", os.devnull],
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if not report.results:
        # pytest has said why on stderr (an unknown driver, a bad declaration).
        return int(report.exit_code) or USAGE
    for test, text in report.failures.items():
        print(f"FAILED {test}\n{text}\n")
    rows = [[r.clause.id, r.outcome, r.reason] for r in report.results]
    print(format_table(["CLAUSE", "RESULT", "REASON"], rows))
    counts: dict[str, int] = {}
    for result in report.results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    print(f"\n{args.driver}: {summary} ({report.seconds:.1f}s, profile {report.profile})")
    return int(report.exit_code)
