"""The ``ipamkit`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ipamkit.cli import check, drivers, serve, state

__all__ = ["main"]

#: Each command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``.
COMMANDS = (drivers, check, serve, state)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every ``ipamkit`` command."""
    parser = argparse.ArgumentParser(
        prog="ipamkit", description="Load, check and serve IPAM drivers."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
