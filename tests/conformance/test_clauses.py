"""The clauses as data, and the suite's tests that check them."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)

from ipamkit_conformance import (
    CLAUSES,
    find_clause,
    suite,
)


def _tests() -> dict[str, object]:
    return {n: f for n, f in vars(suite).items() if n.startswith("test_") and inspect.isfunction(f)}


def test_clauses_are_numbered_in_order_and_described() -> None:
    assert [c.number for c in CLAUSES] == [f"C{i:02d}" for i in range(1, len(CLAUSES) + 1)]
    for clause in CLAUSES:
        assert clause.title
        assert clause.text.endswith(".")
        assert find_clause(clause.id) is find_clause(clause.number) is clause


def test_every_test_names_one_clause_and_every_clause_has_tests() -> None:
    named: dict[str, list[str]] = {}
    for name, function in _tests().items():
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "ipam_clause"]
        assert len(marks) == 1, f"{name} names {len(marks)} clauses"
        named.setdefault(marks[0].args[0], []).append(name)
    assert sorted(named) == sorted(c.id for c in CLAUSES)
