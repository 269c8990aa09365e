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
#: Comma-separated features whose absence skipped a test.
MISSING_PROPERTY = "ipam_missing"


@dataclass
class ClauseResult:
    """How one clause fared: ``passed``, ``failed``, ``skipped``, ``xfailed`` or ``not run``."""

    clause: Clause
    outcome: str = "not run"
    #: Why tests were skipped or failed, without repeats.
    reasons: list[str] = field(default_factory=list)
    #: Test outcome to how many tests of the clause had it.
    tests: dict[str, int] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """The reasons as one line; for a passed clause, the parts that were skipped."""
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
            missing = properties.get(MISSING_PROPERTY)
            if isinstance(missing, str):
                self._missing.setdefault(clause, set()).update(missing.split(","))
            else:
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
            reasons = list(self._reasons.get(clause.id, []))
            missing = self._missing.get(clause.id)
            if missing:
                reasons.insert(0, missing_text(missing))
            result = ClauseResult(clause, tests=dict(tests), reasons=reasons)
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


def missing_text(features: set[str] | list[str]) -> str:
    """Say which features the driver lacks."""
    names = ", ".join(sorted(features))
    return f"needs feature{'s' if len(features) > 1 else ''} {names} (not declared by the driver)"


def format_results(results: list[ClauseResult]) -> str:
    """Lay the results out as a table: clause, result, reason."""
    rows = [("CLAUSE", "RESULT", "REASON")]
    rows += [(r.clause.id, r.outcome, r.reason) for r in results]
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
