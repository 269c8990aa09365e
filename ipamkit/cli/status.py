"""Exit statuses and the one error format of every ``ipamkit`` command.

Each kind of mistake has one status, whichever command meets it; commands that
other distributions contribute use the same ones (see ``docs/cli.rst``).
"""

from __future__ import annotations

import sys

__all__ = ["DRIVER", "FAILURE", "NOT_INSTALLED", "OK", "USAGE", "error"]

#: The command did what it was asked and found nothing wrong.
OK = 0
#: The command ran and found a failure: a clause failed, a plugin is broken, a
#: server could not listen.
FAILURE = 1
#: The command line is wrong: an unknown option, a malformed value (argparse's
#: own status for the same mistakes).
USAGE = 2
#: The command belongs to a distribution that is not installed.
NOT_INSTALLED = 3
#: The driver named is unknown, or cannot be loaded or configured.
DRIVER = 4


def error(command: str, message: str, status: int) -> int:
    """Print ``ipamkit COMMAND: error: MESSAGE`` to stderr and return ``status``."""
    prefix = f"ipamkit {command}" if command else "ipamkit"
    print(f"{prefix}: error: {message}", file=sys.stderr, flush=True)
    return status
