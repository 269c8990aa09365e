"""Results per clause, collected from pytest's reports."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from ipamkit.cli import format_table

from ipamkit_conformance._clauses import CLAUSES, Clause
from ipamkit_conformance._target import Target

__all__ = ["ClauseResult", "Collector", "Failure", "format_results"]

CLAUSE_PROPERTY = "ipam_clause"
VIOLATION_PROPERTY = "ipam_violation"
#: Comma-separated features whose absence skipped a test.
MISSING_PROPERTY = "ipam_missing"
#: A failed test's :class:`Failure`, as JSON.
FAILURE_PROPERTY = "ipam_failure"
#: The clause whose failure kept a test from setting up, and why, as JSON.
BLOCKED_PROPERTY = "ipam_blocked"


@dataclass
class Failure:
    """One failed test: what it says, the calls that led there and the wire exchange."""

    test: str
    #: The clause the failure names (the test's own, unless the driver broke another).
    clause: str
    #: The failure's reason, one line.
    message: str
    #: The driver calls that led there, as Python to paste into a test ("" if none).
    program: str = ""
    #: The last exchanges with a remote plugin, as text ("" for other drivers).
    wire: str = ""
    #: pytest's full report of the failure.
    traceback: str = ""

    @classmethod
    def from_json(cls, text: str) -> Failure:
        """Rebuild a failure from :meth:`to_json`'s text."""
        return cls(**json.loads(text))

    def to_json(self) -> str:
        """The failure as JSON (for a pytest report's properties)."""
        return json.dumps(asdict(self))


@dataclass
class ClauseResult:
    """How one clause fared.

    ``passed``, ``failed``, ``blocked`` (its tests could not set up because another
    clause failed), ``skipped``, ``xfailed`` or ``not run``.
    """

    clause: Clause
    outcome: str = "not run"
    #: Why tests were skipped, without repeats.
    reasons: list[str] = field(default_factory=list)
    #: Test outcome to how many tests of the clause had it.
    tests: dict[str, int] = field(default_factory=dict)
    #: The failed tests, the one with the shortest program first.
    failures: list[Failure] = field(default_factory=list)
    #: The clause (and its reason) that kept tests of this one from setting up.
    blocked_by: str = ""
    #: The clauses whose tests this one's failure kept from setting up.
    blocks: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """Why the clause fared as it did, as one line."""
        if self.outcome == "failed" and self.failures:
            more = len({f.message for f in self.failures}) - 1
            text = self.failures[0].message + (f" (and {more} more)" if more > 0 else "")
            return text + (f"; blocks {', '.join(self.blocks)}" if self.blocks else "")
        if self.outcome == "blocked":
            return f"blocked by {self.blocked_by}"
        if self.outcome == "passed":
            return "; ".join(
                f"partly skipped: {r}" for r in self.reasons if not r.startswith("xfail")
            )
        return "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "id": self.clause.id,
            "title": self.clause.title,
            "outcome": self.outcome,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "tests": dict(self.tests),
            "blocked_by": self.blocked_by,
            "blocks": list(self.blocks),
            "failures": [asdict(f) for f in self.failures],
        }


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class Collector:
    """A pytest plugin that files each test's outcome under its clause."""

    def __init__(self) -> None:
        self._tests: dict[str, Counter[str]] = {}
        self._reasons: dict[str, list[str]] = {}
        self._violated: dict[str, list[str]] = {}
        self._missing: dict[str, set[str]] = {}
        self._failures: dict[str, list[Failure]] = {}
        #: Blocked clause to the clause (with its reason) that blocked it.
        self._blocked: dict[str, str] = {}
        #: Blocking clause to its reason and the clauses it blocked.
        self._blocking: dict[str, tuple[str, set[str]]] = {}

    def _reason(self, clause: str, reason: str) -> None:
        reasons = self._reasons.setdefault(clause, [])
        if reason not in reasons:
            reasons.append(reason)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        clause = properties.get(CLAUSE_PROPERTY)
        if not isinstance(clause, str):
            return
        if report.when != "call" and not (report.failed or report.skipped):
            return
        blocked = properties.get(BLOCKED_PROPERTY)
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            self._reason(clause, f"xfail: {report.wasxfail}")
        elif isinstance(blocked, str):
            outcome = "blocked"
            by, why = json.loads(blocked)
            self._blocked.setdefault(clause, f"{by}: {why}")
            self._blocking.setdefault(by, (why, set()))[1].add(clause)
        elif report.skipped:
            outcome = "skipped"
            missing = properties.get(MISSING_PROPERTY)
            if isinstance(missing, str):
                self._missing.setdefault(clause, set()).update(missing.split(","))
            else:
                self._reason(clause, _skip_reason(report))
        else:
            outcome = report.outcome
        self._tests.setdefault(clause, Counter())[outcome] += 1
        failure = properties.get(FAILURE_PROPERTY)
        if report.failed and isinstance(failure, str):
            self._failures.setdefault(clause, []).append(Failure.from_json(failure))
        violated = properties.get(VIOLATION_PROPERTY)
        if isinstance(violated, str) and report.failed and violated != clause:
            self._violated.setdefault(violated, []).append(clause)

    @property
    def blocked(self) -> bool:
        """Whether any test could not set up because of a failed clause."""
        return bool(self._blocked)

    def results(self) -> list[ClauseResult]:
        """One result per clause of the suite, in clause order."""
        results = []
        for clause in CLAUSES:
            tests = self._tests.get(clause.id, Counter())
            reasons = list(self._reasons.get(clause.id, []))
            missing = self._missing.get(clause.id)
            if missing:
                reasons.insert(0, missing_text(missing))
            failures = sorted(
                self._failures.get(clause.id, []), key=lambda f: len(f.program.splitlines())
            )
            result = ClauseResult(
                clause,
                tests=dict(tests),
                reasons=reasons,
                failures=failures,
                blocked_by=self._blocked.get(clause.id, ""),
            )
            by = self._violated.get(clause.id)
            if by:
                result.failures.append(
                    Failure("", clause.id, f"broken in {', '.join(sorted(set(by)))}")
                )
            blocking = self._blocking.get(clause.id)
            if blocking is not None:
                why, blocked = blocking
                result.blocks = sorted(blocked)
                if not result.failures:
                    result.failures.append(Failure("", clause.id, why))
            if tests["failed"] or by or blocking:
                result.outcome = "failed"
            elif tests["blocked"]:
                result.outcome = "blocked"
            elif tests["xfailed"]:
                result.outcome = "xfailed"
            elif tests["passed"] or tests["xpassed"]:
                result.outcome = "passed"
            elif tests["skipped"]:
                result.outcome = "skipped"
            results.append(result)
        return results


def missing_text(features: Iterable[str]) -> str:
    """Say which features the driver lacks."""
    names = sorted(features)
    plural = "s" if len(names) > 1 else ""
    return f"needs feature{plural} {', '.join(names)} (not declared by the driver)"


def format_results(results: list[ClauseResult], paint: Callable[[str], str] | None = None) -> str:
    """Lay the results out as a table: clause, result, reason.

    ``paint`` decorates a result cell (colour); it gets the padded outcome.
    """
    rows = [[r.clause.id, r.outcome, r.reason] for r in results]
    return format_table(
        ["CLAUSE", "RESULT", "REASON"], rows, paint={1: paint} if paint is not None else None
    )


def mostly_skipped(results: list[ClauseResult]) -> str | None:
    """A loud warning when most clauses that ran were skipped, else None."""
    ran = [r for r in results if r.outcome != "not run"]
    skipped = [r for r in ran if r.outcome == "skipped"]
    if not ran or len(skipped) * 2 <= len(ran):
        return None
    return (
        f"WARNING: {len(skipped)} of {len(ran)} clauses were skipped, so this run says "
        "little about the driver. Does it declare its features (Ipam.features)? Declare "
        "them for a driver that cannot (--ipam-feature / --feature), or probe a remote "
        "plugin (--ipam-probe / --probe); --ipam-strict / --strict fails such a run."
    )


def summary(target: Target, profile: str) -> str:
    """What was tested and how: the driver, its declarations and the profile."""
    features = ", ".join(sorted(f.value for f in target.features)) or "none"
    lines = [
        f"ipamkit-conformance: driver {target.name!r} (features: {features}; "
        f"pool reading: {target.pool_reading.value}; profile: {profile})"
    ]
    lines += [f"  probed: {line}" for line in target.probed]
    return "\n".join(lines)
