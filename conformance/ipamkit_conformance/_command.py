"""``ipamkit check NAME``: the suite as a command, a table of clauses for a person.

The suite contributes this command to ``ipamkit`` through the entry point group
``ipamkit.commands``. This module is imported whenever ``ipamkit`` builds its
parser, so pytest, hypothesis and the suite are imported only when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ipamkit import Feature, PoolReading
from ipamkit.cli import format_table, status

from ipamkit_conformance._clauses import CLAUSES, find_clause

if TYPE_CHECKING:
    from ipamkit_conformance._run import CheckReport

NAME = "check"
HELP = "run the conformance suite against a driver and print a clause-by-clause table"

_COLOURS = {"passed": "32", "failed": "31", "blocked": "35", "skipped": "33", "xfailed": "36"}
#: pytest's exit statuses, as the command's (see ipamkit.cli.status).
_STATUS = {0: status.OK, 1: status.FAILURE, 4: status.USAGE}
#: Seconds ``check`` waits for a remote plugin it cannot reach at the start,
#: unless ``--driver-opt retry=SECONDS`` says otherwise. A plugin absent then is
#: most likely not started or misnamed; the driver's own budget (Docker's 15 s,
#: meant for a plugin that restarts) would only be silence.
_FIRST_CONTACT = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("driver", metavar="NAME", nargs="?", help="the driver to check")
    parser.add_argument(
        "--driver-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the driver's plugin (repeatable)",
    )
    parser.add_argument(
        "--pool-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option the suite passes on every request_pool, as Docker's --ipam-opt "
        "(repeatable)",
    )
    parser.add_argument(
        "--address-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option the suite passes on every request_address (repeatable)",
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
        "--probe",
        action="store_true",
        help="decide features and pool reading with a few harmless calls (for a remote "
        "plugin); --feature and --pool-reading still add to and replace the findings",
    )
    parser.add_argument(
        "--xfail",
        action="append",
        default=[],
        metavar="CLAUSE",
        help="a clause expected to fail (repeatable)",
    )
    parser.add_argument(
        "--clause",
        action="append",
        default=[],
        metavar="CLAUSE",
        help="run only this clause, C17 or its full id (repeatable)",
    )
    parser.add_argument(
        "--list-clauses", action="store_true", help="list the clauses of the suite and exit"
    )
    parser.add_argument(
        "--profile",
        choices=("dev", "ci", "thorough"),
        help="how hard the state machine tries (default: ci when CI is set, else dev)",
    )
    parser.add_argument(
        "--shared", action="store_true", help="other clients hold pools in this driver"
    )
    parser.add_argument(
        "--peer-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option that differs for the second instance of a shared driver, laid "
        "over --driver-opt (a host identity; url for a remote plugin) (repeatable)",
    )
    parser.add_argument(
        "--restart-cmd",
        metavar="COMMAND",
        help="a shell command run when a persistent driver is restarted, after the old "
        "instance is closed and before the new one is built (to restart a plugin's process)",
    )
    parser.add_argument(
        "--restart-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long the restart command may take (default: 60)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail when a clause is skipped (for CI)"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the report as JSON to PATH (- for stdout)"
    )
    parser.add_argument(
        "--wire-log",
        metavar="PATH",
        help="write every exchange with a remote plugin to PATH, one JSON object a line",
    )
    parser.add_argument(
        "--database",
        metavar="DIR",
        help="where hypothesis keeps failures for the next run (default: "
        "$HYPOTHESIS_STORAGE_DIRECTORY, else $XDG_CACHE_HOME/ipamkit/hypothesis, "
        "else ~/.cache/ipamkit/hypothesis)",
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the results (auto: on a terminal, unless NO_COLOR is set)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print pytest's report of each failure"
    )


def _reach(options: dict[str, str]) -> None:
    """Load ``remote`` once with a short retry budget, so an absent plugin fails fast."""
    # Imported here, as in check(): only when the command runs.
    from ipamkit import Host  # noqa: PLC0415
    from ipamkit.errors import IpamError  # noqa: PLC0415

    from ipamkit_conformance._target import DriverUnavailableError  # noqa: PLC0415

    try:
        Host(options={"remote": {**options, "retry": f"{_FIRST_CONTACT:g}"}}).driver(
            "remote"
        ).close()
    except IpamError as exc:
        raise DriverUnavailableError(
            f"cannot load IPAM driver 'remote': {exc}; start the plugin first, or give "
            "--driver-opt retry=SECONDS to wait for it"
        ) from exc


def _options(pairs: list[str], flag: str) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} wants KEY=VALUE, not {pair!r}")
        options[key] = value
    return options


def _painter(choice: str, stream: IO[str]) -> Callable[[str], str] | None:
    if choice == "never":
        return None
    if choice == "auto" and (
        not stream.isatty() or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb"
    ):
        return None

    def paint(cell: str) -> str:
        code = _COLOURS.get(cell.strip())
        return f"\x1b[{code}m{cell}\x1b[0m" if code else cell

    return paint


def _database(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return os.environ["HYPOTHESIS_STORAGE_DIRECTORY"]
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(cache) / "ipamkit" / "hypothesis")


def _list_clauses() -> int:
    rows = [[c.id, c.title] for c in CLAUSES]
    print(format_table(["CLAUSE", "TITLE"], rows))
    return status.OK


def run(args: argparse.Namespace) -> int:
    if args.list_clauses:
        return _list_clauses()
    if args.driver is None:
        return status.error(NAME, "give the driver to check: ipamkit check NAME", status.USAGE)
    try:
        options = _options(args.driver_opt, "--driver-opt")
        pool_options = _options(args.pool_opt, "--pool-opt")
        address_options = _options(args.address_opt, "--address-opt")
        peer_options = _options(args.peer_opt, "--peer-opt")
    except ValueError as exc:
        return status.error(NAME, str(exc), status.USAGE)
    unknown = [c for c in args.clause if find_clause(c) is None]
    if unknown:
        return status.error(NAME, f"--clause {unknown[0]!r} names no clause", status.USAGE)
    # Hypothesis reads where to keep its examples when it first needs them:
    # set before the suite runs, so no .hypothesis/ folder lands where this runs.
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _database(args.database)
    # Imported here: ``ipamkit --help`` imports this module, and needs none of this.
    from ipamkit_conformance._profiles import default_profile  # noqa: PLC0415
    from ipamkit_conformance._report import summary  # noqa: PLC0415
    from ipamkit_conformance._run import Progress, run_check  # noqa: PLC0415
    from ipamkit_conformance._target import (  # noqa: PLC0415
        DriverUnavailableError,
        Target,
        TargetError,
    )

    # With the JSON on stdout, what a person reads goes to stderr.
    out = sys.stderr if args.json == "-" else sys.stdout
    # Loading a remote driver waits for its plugin; say so rather than sit silent.
    remote = args.driver == "remote" or {"url", "plugin"} & set(options)
    hint = " (a plugin that cannot be reached is retried: driver option retry=SECONDS)"
    waiting = threading.Timer(
        1.0,
        lambda: print(
            f"ipamkit check: waiting for driver {args.driver!r} to load"
            + (hint if remote else "")
            + "...",
            file=sys.stderr,
            flush=True,
        ),
    )
    waiting.start()
    try:
        if args.driver == "remote" and "retry" not in options:
            _reach(options)
        target, warnings = Target.resolve(
            args.driver,
            options,
            features=args.feature,
            pool_reading=args.pool_reading,
            xfail=args.xfail,
            shared=args.shared,
            probe=args.probe,
            pool_options=pool_options,
            address_options=address_options,
            peer_options=peer_options,
            restart_command=args.restart_cmd or "",
            restart_timeout=args.restart_timeout,
            flag_prefix="--",
        )
    except DriverUnavailableError as exc:
        return status.error(NAME, str(exc), status.DRIVER)
    except TargetError as exc:
        return status.error(NAME, str(exc), status.USAGE)
    finally:
        waiting.cancel()
    for warning in warnings:
        print(f"ipamkit check: warning: {warning}", file=sys.stderr)
    profile = args.profile or default_profile()
    print(summary(target, profile), file=out, flush=True)
    report = run_check(
        target,
        profile=profile,
        strict=args.strict,
        clauses=args.clause,
        wire_log=args.wire_log,
        progress=Progress(),
        # The table below is the output: no pytest terminal, no configuration
        # file of whatever folder this runs in.
        pytest_args=["-p", "no:terminal", "-c", os.devnull],
    )
    if args.json == "-":
        print(json.dumps(report.as_dict(), indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if not report.results:
        # pytest has said why on stderr.
        return _STATUS.get(report.exit_code, status.FAILURE)
    _print_report(report, args, out)
    if report.exit_code == 0 and any(r.outcome == "failed" for r in report.results):
        return status.FAILURE
    return _STATUS.get(report.exit_code, status.FAILURE)


def _print_report(report: CheckReport, args: argparse.Namespace, out: IO[str]) -> None:
    from ipamkit_conformance._report import format_results, mostly_skipped  # noqa: PLC0415

    chosen = {c.id for c in map(find_clause, args.clause) if c is not None}
    shown = [r for r in report.results if not chosen or r.clause.id in chosen]
    print(format_results(shown, _painter(args.color, out)), file=out)
    for result in report.results:
        if result.outcome != "failed":
            continue
        print(f"\n{result.clause.id} failed: {result.reason}", file=out)
        failure = next((f for f in result.failures if f.program or f.wire), None)
        if failure is None:
            continue
        if failure.test:
            print(f"  in {failure.test}", file=out)
        if failure.program:
            print("  the shortest replay (paste into a test):", file=out)
            print(textwrap.indent(failure.program, "      "), file=out)
        if failure.wire:
            print("  the plugin's last exchange:", file=out)
            print(textwrap.indent(failure.wire, "      "), file=out)
    if args.verbose:
        for test, text in report.failures.items():
            print(f"\nFAILED {test}\n{text}", file=out)
    warning = mostly_skipped(report.results)
    if warning is not None:
        print("\n" + textwrap.fill(warning, 100), file=out)
    if args.strict and any(r.outcome == "skipped" for r in report.results):
        print("--strict: skipped clauses fail the run", file=out)
    if report.stopped:
        print(f"\nipamkit check: {report.stopped}", file=out)
    counts: dict[str, int] = {}
    for result in shown:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    tally = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    print(
        f"\n{report.target.name if report.target else args.driver}: {tally} "
        f"({report.seconds:.1f}s, profile {report.profile})",
        file=out,
    )
