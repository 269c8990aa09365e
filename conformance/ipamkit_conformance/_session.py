"""What the plugin registers once ``--ipam-driver`` is given: fixtures and hooks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ipamkit import Feature

from ipamkit_conformance._clauses import find_clause
from ipamkit_conformance._helpers import Checker, Pools
from ipamkit_conformance._instances import PairChecker
from ipamkit_conformance._profiles import default_profile
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._report import (
    CLAUSE_PROPERTY,
    MISSING_PROPERTY,
    Collector,
    format_results,
    missing_text,
    summary,
)
from ipamkit_conformance._target import Target, TargetError

__all__ = ["COLLECTOR_NAME", "SUITE_PATH", "activate", "profile_of", "target_of"]

SUITE_PATH = Path(__file__).parent / "suite"
COLLECTOR_NAME = "ipamkit-conformance-collector"
_TARGET = pytest.StashKey[Target]()
_PROFILE = pytest.StashKey[str]()


def _options(pairs: list[str], flag: str = "--ipam-driver-opt") -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise pytest.UsageError(f"{flag} wants KEY=VALUE, not {pair!r}")
        options[key] = value
    return options


def activate(config: pytest.Config, name: str) -> None:
    """Load driver ``name`` with the declarations given and register the suite's plugin."""
    try:
        target, warnings = Target.resolve(
            name,
            _options(config.getoption("ipam_driver_opt")),
            features=config.getoption("ipam_feature"),
            pool_reading=config.getoption("ipam_pool_reading"),
            xfail=config.getoption("ipam_xfail"),
            shared=config.getoption("ipam_shared"),
            peer_options=_options(config.getoption("ipam_peer_opt"), "--ipam-peer-opt"),
            restart_command=config.getoption("ipam_restart_cmd") or "",
            restart_timeout=config.getoption("ipam_restart_timeout"),
        )
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    for warning in warnings:
        config.issue_config_time_warning(pytest.PytestConfigWarning(warning), stacklevel=2)
    config.stash[_TARGET] = target
    config.stash[_PROFILE] = config.getoption("ipam_profile") or default_profile()
    config.pluginmanager.register(sys.modules[__name__], "ipamkit-conformance-fixtures")
    config.pluginmanager.register(Collector(), COLLECTOR_NAME)
    config.pluginmanager.register(_Hooks(target), "ipamkit-conformance-hooks")
    given_on_command_line = any(
        arg.startswith("--ipam-driver") and not arg.startswith("--ipam-driver-opt")
        for arg in config.invocation_params.args
    )
    if given_on_command_line and config.args_source is not pytest.Config.ArgsSource.ARGS:
        # No path given: run the packaged suite, wherever pytest was started.
        config.args = [str(SUITE_PATH)]
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


class _Hooks:
    def __init__(self, target: Target) -> None:
        self.target = target

    def pytest_report_header(self, config: pytest.Config) -> str:
        return summary(self.target, config.stash[_PROFILE])

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("ipam_clause")
            if marker is None:
                continue
            item.user_properties.append((CLAUSE_PROPERTY, marker.args[0]))
            if marker.args[0] in self.target.xfail:
                item.add_marker(
                    pytest.mark.xfail(
                        reason=f"{marker.args[0]} listed with --ipam-xfail", strict=False
                    )
                )

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        reason = _skip_reason(self.target, item)
        if reason is not None:
            pytest.skip(reason)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        collector = terminalreporter.config.pluginmanager.get_plugin(COLLECTOR_NAME)
        if isinstance(collector, Collector):
            terminalreporter.section("ipamkit conformance: clauses")
            terminalreporter.write_line(
                summary(self.target, terminalreporter.config.stash[_PROFILE])
            )
            terminalreporter.write_line(format_results(collector.results()))


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def ipam_target(pytestconfig: pytest.Config) -> Target:
    """The driver under test, with its options and declarations."""
    if _TARGET not in pytestconfig.stash:
        pytest.fail("the ipamkit conformance suite needs --ipam-driver=NAME", pytrace=False)
    return pytestconfig.stash[_TARGET]


@pytest.fixture(scope="session")
def ipam_profile(pytestconfig: pytest.Config) -> str:
    """The settings profile of the state machine: dev, ci or thorough."""
    return pytestconfig.stash.get(_PROFILE, default_profile())


@pytest.fixture
def ipam(ipam_target: Target) -> Iterator[Recorder]:
    """A fresh driver (from a fresh host), wrapped so the suite releases all it took."""
    recorder = Recorder(ipam_target.new_driver(), ipam_target.host_expression())
    try:
        yield recorder
    finally:
        recorder.cleanup()
        # The instance it ends with: a test may have restarted the driver.
        recorder.driver.close()


@pytest.fixture
def ipam_peer(ipam_target: Target) -> Iterator[Recorder]:
    """A second instance, built with the peer's options, wrapped as :func:`ipam` is."""
    recorder = Recorder(ipam_target.new_peer(), ipam_target.host_expression(peer=True))
    try:
        yield recorder
    finally:
        recorder.cleanup()
        recorder.driver.close()


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


@pytest.fixture
def ipam_peer_check(
    request: pytest.FixtureRequest, ipam_target: Target, ipam: Recorder, ipam_peer: Recorder
) -> Checker:
    """Checks of a test with two instances, whose failures show the calls of both."""
    exact = ipam_target.has(Feature.EXACT_ERRORS)
    return PairChecker(ipam_target, ipam, ipam_peer, _clause_of(request), exact)


@pytest.fixture
def ipam_pools(ipam_target: Target, ipam: Recorder) -> Pools:
    """Fresh pools for the test, released with everything else at the end."""
    return Pools(ipam_target, ipam)
