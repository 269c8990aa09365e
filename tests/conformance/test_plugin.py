"""The pytest plugin: activation, options, declarations, reports."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest_plugins = ["pytester"]

Run = Callable[..., pytest.RunResult]


def test_null_passes_what_applies_and_skips_the_rest_with_reasons(run_suite: Run) -> None:
    result = run_suite("--ipam-driver=null", "-rs")
    result.assert_outcomes(passed=19, skipped=121)
