"""How a check fails: an error that names its clause and shows the calls made."""

from __future__ import annotations

import textwrap

from ipamkit import Feature
from ipamkit.errors import IpamError

from ipamkit_conformance._clauses import find_clause
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target

__all__ = ["ClauseViolation", "clause_id", "error_matches", "violation"]


def clause_id(number: str) -> str:
    """Return the full id of clause ``number`` (``"C07"``); a typo fails at import."""
    clause = find_clause(number)
    if clause is None:
        raise KeyError(f"no clause {number}")
    return clause.id


class ClauseViolation(AssertionError):
    """A driver broke a clause; the message names it and shows the calls that led there."""

    def __init__(self, clause: str, message: str, program: str = "") -> None:
        self.clause = clause
        text = f"[{clause}] {message}"
        if program:
            text += (
                "\n\nThe driver calls that led here (paste into a test to replay):\n\n"
                + textwrap.indent(program, "    ")
            )
        super().__init__(text)


def violation(clause: str, message: str, ipam: Recorder | None = None) -> ClauseViolation:
    """Build the error for a broken clause, with the program ``ipam`` recorded."""
    if ipam is not None:
        ipam.note(f"^ breaks {clause}: {message}")
    return ClauseViolation(clause, message, ipam.program if ipam is not None else "")


def error_matches(
    target: Target, error: BaseException, expected: type[IpamError] | tuple[type[IpamError], ...]
) -> bool:
    """Tell whether ``error`` is acceptable where ``expected`` is the contract's answer.

    Without :attr:`Feature.EXACT_ERRORS` any :class:`IpamError` will do.
    """
    if target.has(Feature.EXACT_ERRORS):
        return isinstance(error, expected)
    return isinstance(error, IpamError)


def describe(expected: type[IpamError] | tuple[type[IpamError], ...]) -> str:
    """Name the expected class (or classes) for a message."""
    classes = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(c.__name__ for c in classes)
