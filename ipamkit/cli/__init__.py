"""The ``ipamkit`` command line.

A command is a module (or any object) with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int`` (an exit status of
:mod:`ipamkit.cli.status`). The built-in commands are listed here; other
distributions contribute theirs through the entry point group
``ipamkit.commands`` (the conformance suite contributes ``check``), so this
package imports none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Protocol, runtime_checkable

from ipamkit.cli import drivers, serve, state, status
from ipamkit.cli._table import format_table

__all__ = ["COMMANDS", "ENTRY_POINT_GROUP", "Command", "build_parser", "format_table", "main"]

#: The entry point group whose entries are commands; an entry's name is the command's.
ENTRY_POINT_GROUP = "ipamkit.commands"


@runtime_checkable
class Command(Protocol):
    """What ``ipamkit`` needs of a command."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's arguments."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the work; return the exit status."""


#: The commands of ipamkit itself.
COMMANDS: tuple[Command, ...] = (drivers, serve, state)

#: Commands that come with another distribution of ipamkit, and how to install it.
#: Neither is on a package index, so the instruction installs it from a clone.
_ELSEWHERE = {
    "check": (
        "ipamkit-conformance",
        "the conformance suite, which is not installed. It is not on a package index: "
        "install it from the root of a clone of ipamkit's repository (the one ipamkit "
        "came from) with: python -m pip install ./conformance",
    )
}


class _Unavailable:
    """Stands in for a command that cannot run, and says why when called."""

    def __init__(self, name: str, help: str, message: str) -> None:
        self.NAME = name
        self.HELP = help
        self._message = message

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # Whatever follows the name, the answer is the same message.
        parser.add_argument("ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(self, args: argparse.Namespace) -> int:
        return status.error(self.NAME, self._message, status.NOT_INSTALLED)


def _origin(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return f"{dist.name} {dist.version}" if dist is not None else entry_point.value


def _load(entry_point: metadata.EntryPoint) -> Command:
    try:
        command = entry_point.load()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if isinstance(command, Command) and entry_point.name == command.NAME:
            return command
        problem = (
            f"{entry_point.value} is no command named {entry_point.name!r} "
            "(it needs NAME, HELP, add_arguments and run)"
        )
    return _Unavailable(
        entry_point.name,
        f"(broken: from {_origin(entry_point)})",
        f"the command from {_origin(entry_point)} cannot be loaded: {problem}",
    )


def contributed() -> dict[str, tuple[Command, str]]:
    """The commands installed distributions contribute: name to command and origin."""
    builtin = {command.NAME for command in COMMANDS}
    found: dict[str, tuple[Command, str]] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        name, origin = entry_point.name, _origin(entry_point)
        if name in builtin:
            print(
                f"ipamkit: warning: command {name!r} from {origin} ignored: "
                "a built-in command has that name",
                file=sys.stderr,
            )
        elif name in found:
            # Two distributions claim one name: neither is chosen behind the user's back.
            message = f"two distributions contribute it: {found[name][1]} and {origin}"
            found[name] = (_Unavailable(name, "(broken: claimed twice)", message), origin)
        else:
            found[name] = (_load(entry_point), origin)
    return found


def _version(extra: dict[str, tuple[Command, str]]) -> str:
    try:
        own = metadata.version("ipamkit")
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        own = "(not installed)"
    lines = [f"ipamkit {own}"]
    lines += [f"  {name}: from {origin}" for name, (_, origin) in sorted(extra.items())]
    return "\n".join(lines)


class _Version(argparse.Action):
    # argparse's own version action re-wraps the text into one paragraph.
    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(self.default)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every ``ipamkit`` command, built-in and contributed."""
    extra = contributed()
    commands = list(COMMANDS) + [command for command, _ in extra.values()]
    for name, (dist, message) in _ELSEWHERE.items():
        if name not in extra:
            commands.append(_Unavailable(name, f"(needs {dist}: not installed)", message))
    parser = argparse.ArgumentParser(
        prog="ipamkit", description="Load, check and serve IPAM drivers."
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        default=_version(extra),
        help="show the versions of ipamkit and of the distributions of its commands",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        sub = subparsers.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.HELP,
            add_help=not isinstance(command, _Unavailable),
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run, parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        # Said by the command's parser, so the message names the command.
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (| head): nothing more to say, and nowhere to say it.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return status.FAILURE
    return result


if __name__ == "__main__":
    sys.exit(main())
