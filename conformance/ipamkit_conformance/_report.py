"""Results per clause, collected from pytest's reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from ipamkit_conformance._clauses import CLAUSES, Clause
from ipamkit_conformance._target import Target

__all__ = ["ClauseResult", "Collector", "format_results"]

CLAUSE_PROPERTY = "ipam_clause"
VIOLATION_PROPERTY = "ipam_violation"


@dataclass
class ClauseResult:
    """How one clause fared: ``passed``, ``failed``, ``skipped``, ``xfailed`` or ``not run``."""

    clause: Clause
    outcome: str = "not run"
    #: Why tests were skipped or failed, without repeats.
    reasons: list[str] = field(default_factory=list)
    #: Test outcome to how many tests of the clause had it.
    tests: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return {
            "id": self.clause.id,
            "title": self.clause.title,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "tests": dict(self.tests),
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
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            self._reason(clause, f"xfail: {report.wasxfail}")
        elif report.skipped:
            outcome = "skipped"
            self._reason(clause, _skip_reason(report))
        else:
            outcome = report.outcome
        self._tests.setdefault(clause, Counter())[outcome] += 1
        violated = properties.get(VIOLATION_PROPERTY)
        if isinstance(violated, str) and report.failed and violated != clause:
            self._violated.setdefault(violated, []).append(clause)

    def results(self) -> list[ClauseResult]:
        """One result per clause of the suite, in clause order."""
        results = []
        for clause in CLAUSES:
            tests = self._tests.get(clause.id, Counter())
            result = ClauseResult(
                clause, tests=dict(tests), reasons=self._reasons.get(clause.id, [])
            )
            by = self._violated.get(clause.id)
            if by:
                result.reasons.append(f"broken in {', '.join(sorted(set(by)))}")
            if tests["failed"] or by:
                result.outcome = "failed"
            elif tests["xfailed"]:
                result.outcome = "xfailed"
            elif tests["passed"] or tests["xpassed"]:
                result.outcome = "passed"
            elif tests["skipped"]:
                result.outcome = "skipped"
            results.append(result)
        return results


def format_results(results: list[ClauseResult]) -> str:
    """Lay the results out as a table: clause, result, reason."""
    rows = [("CLAUSE", "RESULT", "REASON")]
    for result in results:
        if result.outcome == "passed":
            # A passed clause may still have skipped parts; say which.
            reasons = [f"partly skipped: {r}" for r in result.reasons if not r.startswith("xfail")]
        else:
            reasons = result.reasons
        rows.append((result.clause.id, result.outcome, "; ".join(reasons)))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}".rstrip() for row in rows
    )


def summary(target: Target, profile: str) -> str:
    """One line that says what was tested and how."""
    features = ", ".join(sorted(f.value for f in target.features)) or "none"
    return (
        f"ipamkit-conformance: driver {target.name!r} (features: {features}; "
        f"pool reading: {target.pool_reading.value}; profile: {profile})"
    )
