"""Console sessions in the docs: ``$ command`` lines, each followed by its output.

Shown output is compared as doctest compares (``...`` matches anything, runs of
whitespace are equal, so table columns may be wider or narrower). A command
shown without output may print anything, as a reader expects of ``pip install``.
"""

from __future__ import annotations

import doctest
import re
from dataclasses import dataclass

PROMPT = "$ "
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
_CHECKER = doctest.OutputChecker()
# ipamkit check's progress (standard error): redrawn in place and erased on a
# terminal, so never in the docs; off a terminal a line every 15 s, so in a
# captured output only when the machine is slow.
_PROGRESS = re.compile(r"^ipamkit check: \d+/\d+ tests, \d+ s\n", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    line: str
    #: The output the docs show, or None when they show none.
    expected: str | None

    def mismatch(self, output: str) -> str | None:
        """Say how ``output`` differs from the shown output, or return None if it matches."""
        output = _PROGRESS.sub("", output)
        if self.expected is None or _CHECKER.check_output(self.expected, output, _FLAGS):
            return None
        return f"$ {self.line}\nexpected:\n{self.expected}got:\n{output}"


def parse_session(text: str) -> list[Command]:
    """Split a console block into its commands and their shown output."""
    commands: list[Command] = []
    line: str | None = None
    output: list[str] = []
    for row in text.splitlines():
        if row.startswith(PROMPT):
            if line is not None:
                commands.append(_command(line, output))
            line, output = row[len(PROMPT) :], []
        elif line is None:
            if row.strip():
                raise ValueError(f"console block text before the first {PROMPT!r}: {row!r}")
        else:
            output.append(row)
    if line is not None:
        commands.append(_command(line, output))
    return commands


def _command(line: str, output: list[str]) -> Command:
    text = "\n".join(output).strip("\n")
    return Command(line, text + "\n" if text else None)
