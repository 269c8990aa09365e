"""Running the suite in-process, for ``ipamkit check``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from ipamkit_conformance._report import ClauseResult, Collector
from ipamkit_conformance._session import COLLECTOR_NAME, SUITE_PATH, profile_of, target_of
from ipamkit_conformance._target import Target

__all__ = ["CheckReport", "run_check"]


@dataclass
class CheckReport:
    """What one run of the suite found."""

    #: pytest's exit status (0 all passed, 1 some failed, 4 a usage error...).
    exit_code: int
    target: Target | None = None
    profile: str = ""
    results: list[ClauseResult] = field(default_factory=list)
    #: Test id to the failure as pytest tells it.
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        target = self.target
        return {
            "driver": target.name if target else None,
            "options": dict(target.options) if target else {},
            "features": sorted(f.value for f in target.features) if target else [],
            "pool_reading": target.pool_reading.value if target else None,
            "profile": self.profile,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "clauses": [r.as_dict() for r in self.results],
            "failures": dict(self.failures),
        }


class _Grab:
    def __init__(self, report: CheckReport) -> None:
        self.report = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.report.failures[report.nodeid] = report.longreprtext

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        collector = config.pluginmanager.get_plugin(COLLECTOR_NAME)
        if isinstance(collector, Collector):
            self.report.results = collector.results()
        self.report.target = target_of(config)
        self.report.profile = profile_of(config)


def run_check(
    name: str,
    options: Mapping[str, str] | None = None,
    *,
    features: Iterable[str] = (),
    pool_reading: str | None = None,
    profile: str | None = None,
    xfail: Iterable[str] = (),
    shared: bool = False,
    pytest_args: Iterable[str] = (),
) -> CheckReport:
    """Run the packaged suite against driver ``name`` in this process."""
    args = [str(SUITE_PATH), f"--ipam-driver={name}", "-p", "no:cacheprovider"]
    args += [f"--ipam-driver-opt={k}={v}" for k, v in (options or {}).items()]
    args += [f"--ipam-feature={f}" for f in features]
    args += [f"--ipam-xfail={x}" for x in xfail]
    if pool_reading is not None:
        args.append(f"--ipam-pool-reading={pool_reading}")
    if profile is not None:
        args.append(f"--ipam-profile={profile}")
    if shared:
        args.append("--ipam-shared")
    args += list(pytest_args)
    report = CheckReport(exit_code=0)
    start = time.monotonic()
    report.exit_code = int(pytest.main(args, plugins=[_Grab(report)]))
    report.seconds = time.monotonic() - start
    return report
