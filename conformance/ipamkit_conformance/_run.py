"""Running the suite in-process, for ``ipamkit check``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import pytest

from ipamkit_conformance._report import ClauseResult, Collector
from ipamkit_conformance._session import (
    COLLECTOR_NAME,
    SUITE_PATH,
    Preset,
    profile_of,
    target_of,
)
from ipamkit_conformance._target import Target

__all__ = ["CheckReport", "Progress", "run_check"]


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
    #: Why the run stopped early ("" when it ran to the end).
    stopped: str = ""

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
            "probed": list(target.probed) if target else [],
            "profile": self.profile,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "clauses": [r.as_dict() for r in self.results],
            "failures": dict(self.failures),
        }


class _Grab:
    def __init__(self, report: CheckReport) -> None:
        self.report = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.report.failures[report.nodeid] = report.longreprtext

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if isinstance(session.shouldstop, str):
            self.report.stopped = session.shouldstop

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        collector = config.pluginmanager.get_plugin(COLLECTOR_NAME)
        if isinstance(collector, Collector):
            self.report.results = collector.results()
        self.report.target = target_of(config)
        self.report.profile = profile_of(config)


class Progress:
    """Shows how far a run is, on a stream: redrawn in place on a terminal, else a
    line every ``every`` seconds."""

    def __init__(self, stream: IO[str] | None = None, every: float = 15.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.total = 0
        self.done = 0
        self.start = time.monotonic()
        self.last = self.start

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)
        self.start = self.last = time.monotonic()

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.done += 1
        now = time.monotonic()
        text = f"ipamkit check: {self.done}/{self.total} tests, {now - self.start:.0f} s"
        if self.tty:
            test = nodeid.rsplit("::", 1)[-1]
            self.stream.write(f"\r\x1b[K{text} ({test[:40]})")
            self.stream.flush()
        elif now - self.last >= self.every:
            self.last = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def pytest_sessionfinish(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_check(
    driver: str | Target,
    options: Mapping[str, str] | None = None,
    *,
    features: Iterable[str] = (),
    pool_reading: str | None = None,
    profile: str | None = None,
    xfail: Iterable[str] = (),
    shared: bool = False,
    probe: bool = False,
    strict: bool = False,
    clauses: Iterable[str] = (),
    wire_log: str | None = None,
    progress: Progress | None = None,
    pytest_args: Iterable[str] = (),
) -> CheckReport:
    """Run the packaged suite against ``driver`` in this process.

    ``driver`` is a name, loaded with ``options`` and the declarations given, or a
    :class:`Target` already resolved (whose own options and declarations hold).
    """
    plugins: list[object] = [] if progress is None else [progress]
    if isinstance(driver, Target):
        plugins.append(Preset(driver))
    name = driver.name if isinstance(driver, Target) else driver
    args = [str(SUITE_PATH), f"--ipam-driver={name}", "-p", "no:cacheprovider"]
    args += [f"--ipam-driver-opt={k}={v}" for k, v in (options or {}).items()]
    args += [f"--ipam-feature={f}" for f in features]
    args += [f"--ipam-xfail={x}" for x in xfail]
    args += [f"--ipam-clause={c}" for c in clauses]
    if pool_reading is not None:
        args.append(f"--ipam-pool-reading={pool_reading}")
    if profile is not None:
        args.append(f"--ipam-profile={profile}")
    if wire_log is not None:
        args.append(f"--ipam-wire-log={wire_log}")
    args += [flag for flag, on in (("--ipam-shared", shared), ("--ipam-probe", probe)) if on]
    if strict:
        args.append("--ipam-strict")
    args += list(pytest_args)
    report = CheckReport(exit_code=0)
    start = time.monotonic()
    report.exit_code = int(pytest.main(args, plugins=[_Grab(report), *plugins]))
    report.seconds = time.monotonic() - start
    return report
