"""What the plugin registers once ``--ipam-driver`` is given: fixtures and hooks."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ipamkit import Feature, Network, PoolResult
from ipamkit.errors import DriverLoadError, PluginTransportError

from ipamkit_conformance._checks import clause_id
from ipamkit_conformance._clauses import find_clause
from ipamkit_conformance._helpers import Checker, Pools
from ipamkit_conformance._profiles import default_profile
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._report import (
    BLOCKED_PROPERTY,
    CLAUSE_PROPERTY,
    FAILURE_PROPERTY,
    MISSING_PROPERTY,
    Collector,
    Failure,
    format_results,
    missing_text,
    mostly_skipped,
    summary,
)
from ipamkit_conformance._target import Target, TargetError
from ipamkit_conformance._wire import WireLog

__all__ = ["COLLECTOR_NAME", "SUITE_PATH", "Preset", "activate", "profile_of", "target_of"]

SUITE_PATH = Path(__file__).parent / "suite"
COLLECTOR_NAME = "ipamkit-conformance-collector"
_TARGET = pytest.StashKey[Target]()
_PROFILE = pytest.StashKey[str]()
#: Errors that say the driver is gone, not that it broke a clause.
_LOST = (PluginTransportError, DriverLoadError)
_REPLAY_HEADER = "The driver calls that led here (paste into a test to replay):"


def _options(pairs: list[str], option: str = "--ipam-driver-opt") -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise pytest.UsageError(f"{option} wants KEY=VALUE, not {pair!r}")
        options[key] = value
    return options


class Preset:
    """A plugin that gives a run a target already resolved (``ipamkit check`` does)."""

    def __init__(self, target: Target) -> None:
        self.target = target


def _target(config: pytest.Config, name: str) -> Target:
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, Preset):
            return plugin.target
    try:
        target, warnings = Target.resolve(
            name,
            _options(config.getoption("ipam_driver_opt")),
            features=config.getoption("ipam_feature"),
            pool_reading=config.getoption("ipam_pool_reading"),
            xfail=config.getoption("ipam_xfail"),
            shared=config.getoption("ipam_shared"),
            probe=config.getoption("ipam_probe"),
            pool_options=_options(config.getoption("ipam_pool_opt"), "--ipam-pool-opt"),
            address_options=_options(config.getoption("ipam_address_opt"), "--ipam-address-opt"),
        )
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    for warning in warnings:
        config.issue_config_time_warning(pytest.PytestConfigWarning(warning), stacklevel=2)
    return target


def activate(config: pytest.Config, name: str) -> None:
    """Load driver ``name`` with the declarations given and register the suite's plugin."""
    clauses = []
    for entry in config.getoption("ipam_clause"):
        clause = find_clause(entry)
        if clause is None:
            raise pytest.UsageError(f"--ipam-clause {entry!r} names no clause of this suite")
        clauses.append(clause.id)
    wire_path = config.getoption("ipam_wire_log")
    wire = WireLog(Path(wire_path) if wire_path else None)
    target = dataclasses.replace(_target(config, name), watch=wire.watch)
    config.stash[_TARGET] = target
    config.stash[_PROFILE] = config.getoption("ipam_profile") or default_profile()
    config.pluginmanager.register(sys.modules[__name__], "ipamkit-conformance-fixtures")
    collector = Collector()
    config.pluginmanager.register(collector, COLLECTOR_NAME)
    hooks = _Hooks(target, collector, wire, frozenset(clauses), config.getoption("ipam_strict"))
    config.pluginmanager.register(hooks, "ipamkit-conformance-hooks")
    given_on_command_line = any(
        arg.startswith("--ipam-driver") and not arg.startswith("--ipam-driver-opt")
        for arg in config.invocation_params.args
    )
    if given_on_command_line and config.args_source is not pytest.Config.ArgsSource.ARGS:
        # No path given. In a folder of no project only the packaged suite runs; in
        # a project (a driver's own tree) its own tests run too, and the suite's
        # tests it imports run once (see _Hooks.pytest_collection_modifyitems).
        own = list(config.args) if config.inipath is not None else []
        config.args = [*own, str(SUITE_PATH)]
        config.args_source = pytest.Config.ArgsSource.ARGS


def target_of(config: pytest.Config) -> Target | None:
    """The target of a run, once the plugin is active."""
    return config.stash.get(_TARGET, None)


def profile_of(config: pytest.Config) -> str:
    """The settings profile of a run."""
    return config.stash.get(_PROFILE, default_profile())


def _skip_reason(target: Target, item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("ipam_clause")
    if marker is None:
        return None
    clause = find_clause(marker.args[0])
    if clause is None:
        return None
    if clause.reading is not None and clause.reading is not target.pool_reading:
        return (
            f"applies to the {clause.reading.value} pool reading; "
            f"the driver declares {target.pool_reading.value}"
        )
    wanted = set(clause.needs)
    for mark in item.iter_markers("ipam_needs"):
        wanted.update(Feature(f) for f in mark.args)
    missing = sorted(f.value for f in wanted if not target.has(f))
    if missing:
        item.user_properties.append((MISSING_PROPERTY, ",".join(missing)))
        return missing_text(missing)
    return None


def _origin(item: pytest.Item) -> tuple[str, str, str] | None:
    function = getattr(item, "function", None)
    if function is None:
        return None
    return function.__module__, function.__qualname__, item.name


def _from_suite_path(item: pytest.Item) -> bool:
    return item.path.is_relative_to(SUITE_PATH)


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _failure(item: pytest.Item, report: pytest.TestReport, error: BaseException) -> Failure:
    """The failure of ``item`` as the reports show it: clause, reason, replay."""
    text = str(getattr(error, "msg", None) or error)
    clause = str(dict(report.user_properties).get(CLAUSE_PROPERTY, ""))
    message, program = text.split("\n", 1)[0], ""
    parts = text.split("\n\n")
    if parts[0].startswith("[") and "] " in parts[0]:
        clause, message = parts[0][1:].split("] ", 1)
        message = " ".join(message.split())
    else:
        message = f"{type(error).__name__}: {message}"
    if _REPLAY_HEADER in parts:
        program = parts[parts.index(_REPLAY_HEADER) + 1]
    else:
        recorder = getattr(item, "funcargs", {}).get("ipam")
        if isinstance(recorder, Recorder):
            program = recorder.program
    return Failure(
        test=report.nodeid,
        clause=clause,
        message=message,
        program=_dedent(program),
        traceback=report.longreprtext,
    )


def _dedent(program: str) -> str:
    lines = program.splitlines()
    return "\n".join(line.removeprefix("    ") for line in lines)


class _Hooks:
    def __init__(
        self,
        target: Target,
        collector: Collector,
        wire: WireLog,
        clauses: frozenset[str],
        strict: bool,
    ) -> None:
        self.target = target
        self.collector = collector
        self.wire = wire
        self.clauses = clauses
        self.strict = strict
        self.stopped = ""

    def pytest_report_header(self, config: pytest.Config) -> str:
        return summary(self.target, config.stash[_PROFILE])

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        imported = {_origin(i) for i in items if not _from_suite_path(i)}
        items[:] = [i for i in items if not (_from_suite_path(i) and _origin(i) in imported)]
        deselected = []
        for item in list(items):
            marker = item.get_closest_marker("ipam_clause")
            if marker is None:
                continue
            clause = marker.args[0]
            if self.clauses and clause not in self.clauses:
                deselected.append(item)
                continue
            # -k C17 (or the whole id) picks the clause's tests.
            item.extra_keyword_matches.add(clause)
            item.user_properties.append((CLAUSE_PROPERTY, clause))
            if clause in self.target.xfail:
                item.add_marker(
                    pytest.mark.xfail(reason=f"{clause} listed with --ipam-xfail", strict=False)
                )
        if deselected:
            items[:] = [i for i in items if i not in deselected]
            config.hook.pytest_deselected(items=deselected)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.wire.start(item.nodeid)
        reason = _skip_reason(self.target, item)
        if reason is not None:
            pytest.skip(reason)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.excinfo is None or not report.failed:
            return report
        error = call.excinfo.value
        own = dict(report.user_properties).get(CLAUSE_PROPERTY)
        recorder = getattr(item, "funcargs", {}).get("ipam")
        blocked = recorder.blocker(error) if isinstance(recorder, _SetupRecorder) else None
        if blocked is not None and blocked[0] != own:
            report.outcome = "skipped"
            text = f"blocked by {blocked[0]}: {blocked[1]}"
            report.longrepr = (str(item.path), item.location[1] or 0, text)
            report.user_properties.append((BLOCKED_PROPERTY, json.dumps(list(blocked))))
            return report
        failure = _failure(item, report, error)
        failure.wire = self.wire.report()
        if failure.wire:
            report.sections.append(("ipamkit: the plugin's last exchange", failure.wire))
        report.user_properties.append((FAILURE_PROPERTY, failure.to_json()))
        # A driver that loaded at the start but can no longer be made or reached:
        # one clear stop instead of a traceback per remaining test.
        lost = next((e for e in _chain(error) if isinstance(e, _LOST)), None)
        if lost is not None and not self.stopped:
            self.stopped = f"the plugin stopped answering, so the run stops here: {lost}"
            item.session.shouldstop = self.stopped
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.wire.close()
        results = self.collector.results()
        if session.exitstatus == 0 and any(r.outcome == "failed" for r in results):
            # A clause failed without a failed test of its own (it blocked others).
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        skipped = any(r.outcome == "skipped" for r in results)
        if self.strict and skipped and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        results = self.collector.results()
        terminalreporter.section("ipamkit conformance: clauses")
        terminalreporter.write_line(summary(self.target, terminalreporter.config.stash[_PROFILE]))
        terminalreporter.write_line(format_results(results))
        warning = mostly_skipped(results)
        if warning is not None:
            terminalreporter.write_line(warning, yellow=True, bold=True)
        if self.strict and any(r.outcome == "skipped" for r in results):
            terminalreporter.write_line(
                "--ipam-strict: skipped clauses fail the run", red=True, bold=True
            )
        if self.stopped:
            terminalreporter.write_line(self.stopped, red=True, bold=True)


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def ipam_target(pytestconfig: pytest.Config) -> Target:
    """The driver under test, with its options and declarations."""
    if _TARGET not in pytestconfig.stash:
        pytest.fail("the ipamkit conformance suite needs --ipam-driver=NAME", pytrace=False)
    return pytestconfig.stash[_TARGET]


@pytest.fixture(autouse=True)
def _ipam_close_drivers(pytestconfig: pytest.Config) -> Iterator[None]:
    # Every driver a test made, through a fixture or the state machine, is closed
    # once the test is over, so a remote plugin's connections do not pile up.
    yield
    target = target_of(pytestconfig)
    if target is not None:
        target.close_drivers()


@pytest.fixture(scope="session")
def ipam_profile(pytestconfig: pytest.Config) -> str:
    """The settings profile of the state machine: dev, ci or thorough."""
    return pytestconfig.stash.get(_PROFILE, default_profile())


@pytest.fixture
def ipam(ipam_target: Target) -> Iterator[Recorder]:
    """A fresh driver (from a fresh host), wrapped so the suite releases all it took."""
    recorder = _SetupRecorder.for_target(ipam_target)
    try:
        yield recorder
    finally:
        recorder.cleanup()


def _clause_of(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("ipam_clause")
    return str(marker.args[0]) if marker is not None else "unnamed clause"


@pytest.fixture
def ipam_check(request: pytest.FixtureRequest, ipam_target: Target, ipam: Recorder) -> Checker:
    """Checks whose failures name the test's clause."""
    return Checker(ipam_target, ipam, _clause_of(request), ipam_target.has(Feature.EXACT_ERRORS))


@pytest.fixture(params=["some-ipam-error", "exact-class"])
def ipam_expect(request: pytest.FixtureRequest, ipam_target: Target, ipam: Recorder) -> Checker:
    """Checks for a bad call: once that it fails with an IpamError, once its exact class."""
    exact = request.param == "exact-class"
    if exact and not ipam_target.has(Feature.EXACT_ERRORS):
        request.node.user_properties.append((MISSING_PROPERTY, Feature.EXACT_ERRORS.value))
        pytest.skip(f"exact error class not checked: {missing_text([Feature.EXACT_ERRORS.value])}")
    return Checker(ipam_target, ipam, _clause_of(request), exact)


class _SetupRecorder(Recorder):
    """A recorder that knows which refused pool requests were a test's set-up.

    Those are the test's first pool request and every fresh pool it took from
    ``ipam_pools``. A test that fails with such a refusal is blocked by the
    clause that promises the pool, instead of failing its own clause.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._asked = 0
        self._refusals: list[tuple[BaseException, str, str]] = []

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        self._asked += 1
        first = self._asked == 1
        try:
            return super().request_pool(address_space, pool, sub_pool, options, v6)
        except Exception as exc:
            if first:
                self.refused(exc, explicit=bool(pool))
            raise

    def refused(self, error: Exception, *, explicit: bool) -> None:
        """Take note that a pool the test needed to set up was refused with ``error``."""
        clause = clause_id("C04" if explicit else "C08")
        self._refusals.append(
            (error, clause, f"a pool was refused: {type(error).__name__}: {error}")
        )

    def blocker(self, error: BaseException) -> tuple[str, str] | None:
        """The clause (and why) that kept the test from setting up, if ``error`` did."""
        for refusal, clause, reason in self._refusals:
            if refusal is error:
                return clause, reason
        return None


class _SetupPools(Pools):
    """Pools for a test's set-up: a refusal blocks the test (see _SetupRecorder)."""

    def explicit(
        self,
        prefixlen: int = 24,
        *,
        v6: bool = False,
        sub: Callable[[Network], str] | None = None,
    ) -> PoolResult:
        try:
            return super().explicit(prefixlen, v6=v6, sub=sub)
        except Exception as exc:
            self._refused(exc, explicit=True)
            raise

    def any(self) -> PoolResult:
        try:
            return super().any()
        except Exception as exc:
            self._refused(exc, explicit=self.target.has(Feature.EXPLICIT_POOLS))
            raise

    def _refused(self, error: Exception, *, explicit: bool) -> None:
        if isinstance(self.ipam, _SetupRecorder):
            self.ipam.refused(error, explicit=explicit)


@pytest.fixture
def ipam_pools(ipam_target: Target, ipam: Recorder) -> Pools:
    """Fresh pools for the test, released with everything else at the end."""
    return _SetupPools(ipam_target, ipam)
