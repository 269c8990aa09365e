"""ipamkit-conformance: the conformance suite for ipamkit IPAM drivers.

Run it with ``pytest --ipam-driver=NAME`` or ``ipamkit check NAME``. The clauses
are data (:data:`CLAUSES`), for reports and documentation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ipamkit_conformance._clauses import CLAUSES, Clause, find_clause
from ipamkit_conformance._target import Target, TargetError

if TYPE_CHECKING:
    from ipamkit_conformance._checks import ClauseViolation
    from ipamkit_conformance._machine import machine_for
    from ipamkit_conformance._report import ClauseResult, Failure
    from ipamkit_conformance._run import CheckReport, Progress, run_check

__all__ = [
    "CLAUSES",
    "CheckReport",
    "Clause",
    "ClauseResult",
    "ClauseViolation",
    "Failure",
    "Progress",
    "Target",
    "TargetError",
    "find_clause",
    "machine_for",
    "run_check",
]

# pytest imports this package in every run (the plugin lives in it), so what needs
# hypothesis is imported on first use only.
_LAZY = {
    "ClauseViolation": "ipamkit_conformance._checks",
    "machine_for": "ipamkit_conformance._machine",
    "ClauseResult": "ipamkit_conformance._report",
    "Failure": "ipamkit_conformance._report",
    "CheckReport": "ipamkit_conformance._run",
    "Progress": "ipamkit_conformance._run",
    "run_check": "ipamkit_conformance._run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
