"""The pytest plugin: activation, options, declarations, reports."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

import pytest

from ipamkit import Feature

# Each test runs pytest in subprocesses: minutes in all, so only one Python runs them.
pytestmark = pytest.mark.slow

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)

from ipamkit_conformance import CLAUSES  # noqa: E402
from ipamkit_conformance.suite import test_persistence, test_sharing  # noqa: E402

#: The suite's tests of persistent and shared drivers, skipped for in-memory ones.
BEYOND_ONE_INSTANCE = sum(
    name.startswith("test_") for module in (test_persistence, test_sharing) for name in vars(module)
)

pytest_plugins = ["pytester"]

Run = Callable[..., pytest.RunResult]

#: What the in-memory reference driver offers but does not declare as reference-undeclared.
ALL_BUT_EXACT = [
    f"--ipam-feature={f.value}"
    for f in Feature
    if f not in (Feature.EXACT_ERRORS, Feature.PERSISTENT, Feature.SHARED)
]


def _skip_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("SKIPPED")]


def test_without_the_option_the_plugin_does_nothing(
    pytester: pytest.Pytester, run_suite: Run
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_of_the_suite_is_loaded(request):
            assert "ipamkit_conformance._session" not in sys.modules
            assert "ipamkit_conformance._machine" not in sys.modules
            assert request.config.pluginmanager.get_plugin("ipamkit-conformance-hooks") is None
        """
    )
    run_suite().assert_outcomes(passed=1)


def test_null_passes_what_applies_and_skips_the_rest_naming_the_feature(run_suite: Run) -> None:
    # No path given, in a folder with no tests: the packaged suite runs.
    result = run_suite("--ipam-driver=null", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0
    assert outcomes["passed"] > 10
    skips = _skip_lines(result)
    assert skips
    for line in skips:
        assert "needs feature" in line or "pool reading" in line, line
    result.stdout.fnmatch_lines(
        ["*C01-default-address-spaces*passed*", "*C03-address-spaces-independent*skipped*"]
    )


def test_reference_passes_every_clause_under_both_readings(run_suite: Run) -> None:
    exclusive = run_suite("--ipam-driver=reference")
    exclusive.assert_outcomes(
        passed=exclusive.parseoutcomes()["passed"], skipped=4 + BEYOND_ONE_INSTANCE
    )
    exclusive.stdout.fnmatch_lines(["*C11-refcounted-reading*skipped*applies to the refcounted*"])
    refcounted = run_suite("--ipam-driver=reference", "--ipam-driver-opt=reading=refcounted")
    assert refcounted.ret == 0
    refcounted.stdout.fnmatch_lines(["*C10-exclusive-reading*skipped*", "*C11-*passed*"])


def test_a_wrong_reading_declaration_fails_the_reading_clause(run_suite: Run) -> None:
    result = run_suite(
        "--ipam-driver=reference", "--ipam-pool-reading=refcounted", "-k", "not random"
    )
    result.stdout.fnmatch_lines(["*C11-refcounted-reading*failed*"])
    failed = {
        line.split()[1].split("::")[1].split("[")[0]
        for line in result.outlines
        if line.startswith("FAILED")
    }
    # The concurrency clause leaves a reading the driver does not follow to C10 and C11.
    assert failed == {"test_refcounted_reading"}
    result.stdout.fnmatch_lines(["*C25-thread-safety*passed*"])


def test_unknown_driver_is_a_usage_error_listing_the_known_ones(run_suite: Run) -> None:
    result = run_suite("--ipam-driver=no-such-driver")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no IPAM driver named 'no-such-driver'; known drivers:*null*"])


def test_unknown_feature_is_a_usage_error_listing_the_valid_ones(run_suite: Run) -> None:
    result = run_suite("--ipam-driver=null", "--ipam-feature=ipv7")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown feature 'ipv7'; valid: explicit_pools, *exact_errors*"])


def test_features_declared_on_the_command_line(run_suite: Run) -> None:
    bare = run_suite("--ipam-driver=reference-undeclared")
    declared = run_suite("--ipam-driver=reference-undeclared", *ALL_BUT_EXACT)
    assert declared.ret == 0
    assert declared.parseoutcomes()["passed"] > 2 * bare.parseoutcomes()["passed"]
    declared.stdout.fnmatch_lines(["*C07-pools-never-overlap*passed*"])


def test_without_exact_errors_only_the_error_kind_is_checked(run_suite: Run) -> None:
    # The driver raises InvalidParameterError for unknown pool IDs, and does not
    # claim exact errors: the clause passes, its exact-class checks are skipped.
    result = run_suite("--ipam-driver=reference-generic-errors", "-rs")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*C13-bad-pool-id*passed*partly skipped: needs feature exact_errors*"]
    )
    assert any("exact error class not checked" in line for line in _skip_lines(result))


def test_expected_failures_by_clause_tolerate_unknown_names(run_suite: Run) -> None:
    result = run_suite(
        "--ipam-driver=broken-wrong-error-class",
        "--ipam-xfail=C13",
        "--ipam-xfail=C99-no-such-clause",
        "--hypothesis-seed=0",
    )
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    assert outcomes["xfailed"] >= 6
    assert "failed" not in outcomes
    result.stdout.fnmatch_lines(
        ["*C99-no-such-clause*names no clause*", "*C13-bad-pool-id*xfailed*"]
    )


def test_ci_profile_is_chosen_when_ci_is_set(
    run_suite: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = run_suite("--ipam-driver=null", "-k", "default_address_spaces")
    result.stdout.fnmatch_lines(["*profile: ci*"])


def test_one_line_runs_the_suite_from_a_drivers_own_tests(
    pytester: pytest.Pytester, run_suite: Run
) -> None:
    pytester.makepyfile(test_conformance="from ipamkit_conformance.suite import *  # noqa")
    pytester.makepyfile(
        test_own="""
        def test_a_fresh_driver_per_test(ipam, ipam_pools):
            pool = ipam_pools.explicit(24)
            assert ipam.request_address(pool.pool_id).address in pool.pool
        """
    )
    own = run_suite("--ipam-driver=reference", "test_conformance.py", "test_own.py")
    packaged = run_suite("--ipam-driver=reference")
    assert own.ret == 0
    assert own.parseoutcomes()["passed"] == packaged.parseoutcomes()["passed"] + 1


def test_a_failure_shows_the_calls_and_how_to_replay(run_suite: Run) -> None:
    result = run_suite(
        "--ipam-driver=broken-overlap-allowed", "-k", "random", "--hypothesis-seed=3"
    )
    result.stdout.fnmatch_lines(
        [
            "*[C07-pools-never-overlap]*",
            "*The driver calls that led here (paste into a test to replay):*",
            "*ipam = ipamkit.Host(options={'broken-overlap-allowed': {}})*",
            "*ipam.request_pool('*",
            "*state = IpamMachine()*",
            "*Replay: *",
        ]
    )


@pytest.mark.parametrize("shared", [True, False], ids=["declared-shared", "not-declared"])
def test_a_shared_driver_gets_everything_back_and_others_pools_untouched(
    run_suite: Run, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    report = pytester.path / "shared.json"
    monkeypatch.setenv("IPAMKIT_SHARED_REPORT", str(report))
    result = run_suite("--ipam-driver=reference-shared", *(["--ipam-shared"] if shared else []))
    if shared:
        assert result.ret == 0
    else:
        # Another client's pools look like a driver refusing free pools: failures,
        # after which everything must still come back.
        result.stdout.fnmatch_lines(["*C26-random-sequences*failed*"])
    left = json.loads(report.read_text())
    assert left == {"left": [], "foreign_left": sorted(left["foreign_left"]), "foreign_touched": []}
    assert len(left["foreign_left"]) == 3


def test_default_passes_every_clause_with_the_ci_profile(run_suite: Run) -> None:
    # With IPv6 pool lists, so that C09 runs whole; tox's conformance-default runs
    # the suite on default as configured by default.
    result = run_suite(
        "--ipam-driver=default",
        "--ipam-profile=ci",
        "--ipam-driver-opt=local_ipv6_pools=fd00:1::/48:64",
        "--ipam-driver-opt=global_ipv6_pools=fd00:2::/48:64",
    )
    assert result.ret == 0
    table = [line.split()[:2] for line in result.outlines if line.startswith("C") and "-" in line]
    assert len(table) == len(CLAUSES)
    # The refcounted reading is not default's, nor is state beyond one instance; all
    # else passes.
    beyond = {Feature.PERSISTENT, Feature.SHARED}
    assert [c for c, outcome in table if outcome != "passed"] == [
        "C11-refcounted-reading",
        *(c.id for c in CLAUSES if c.needs & beyond),
    ]


def test_the_program_of_a_failure_is_a_test_that_fails_on_the_driver_only(
    pytester: pytest.Pytester, run_suite: Run
) -> None:
    driver = "broken-held-address-granted"
    result = run_suite(f"--ipam-driver={driver}", "-k", "random", "--ipam-profile=ci")
    start = result.outlines.index("The driver calls that led here (paste into a test to replay):")
    end = result.outlines.index("The same as hypothesis' state machine program:")
    program = [line for line in result.outlines[start + 2 : end] if line.strip()]
    assert any(line.strip().startswith("with pytest.raises(") for line in program)
    body = textwrap.indent(textwrap.dedent("\n".join(program)), "    ")
    pytester.makepyfile(test_replay=f"def test_replay():\n{body}\n")
    run_suite("test_replay.py").assert_outcomes(failed=1)
    pytester.makepyfile(test_replay=f"def test_replay():\n{body.replace(driver, 'reference')}\n")
    run_suite("test_replay.py").assert_outcomes(passed=1)


def test_the_header_shows_the_declarations(run_suite: Run) -> None:
    result = run_suite("--ipam-driver=null", "--ipam-clause=C01")
    result.stdout.fnmatch_lines(
        [
            "ipamkit-conformance: driver 'null' (features: exact_errors, thread_safe; "
            "pool reading: exclusive; profile: dev)"
        ]
    )


def test_one_clause_by_option_or_by_keyword(run_suite: Run) -> None:
    for selection in (["--ipam-clause=C17"], ["-k", "C17"]):
        result = run_suite("--ipam-driver=reference", *selection)
        assert result.ret == 0
        table = {
            line.split()[0]: line.split()[1]
            for line in result.outlines
            if line.startswith("C") and line[1:3].isdigit()
        }
        assert table.pop("C17-no-duplicate-addresses") == "passed"
        assert set(table.values()) == {"not"}, selection  # "not run", split
    unknown = run_suite("--ipam-driver=reference", "--ipam-clause=C99")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*--ipam-clause 'C99' names no clause*"])


def test_mostly_skipped_is_warned_and_strict_fails(run_suite: Run) -> None:
    quiet = run_suite("--ipam-driver=reference-undeclared")
    assert quiet.ret == 0
    quiet.stdout.fnmatch_lines(["WARNING: * of * clauses were skipped*"])
    strict = run_suite("--ipam-driver=reference-undeclared", "--ipam-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["--ipam-strict: skipped clauses fail the run"])


def test_in_a_drivers_own_project_its_tests_run_and_the_suite_once(
    pytester: pytest.Pytester, run_suite: Run
) -> None:
    # As drivers/example: the suite imported in one module, the driver's own tests
    # beside it, and the driver named on the command line with no path.
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(test_conformance="from ipamkit_conformance.suite import *  # noqa")
    pytester.makepyfile(test_own="def test_own(ipam):\n    assert ipam.is_builtin() is False\n")
    own = run_suite("--ipam-driver=reference")
    pytester.path.joinpath("pyproject.toml").unlink()
    for name in ("test_conformance.py", "test_own.py"):
        pytester.path.joinpath(name).unlink()
    packaged = run_suite("--ipam-driver=reference")
    assert own.ret == 0
    assert own.parseoutcomes()["passed"] == packaged.parseoutcomes()["passed"] + 1
    own.stdout.fnmatch_lines(["*test_own.py*"])
