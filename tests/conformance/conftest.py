"""Install the reference and broken drivers as distributions, for subprocess runs."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import refdrivers
import statedrivers

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the driver modules and one dist-info per driver they define."""
    root = tmp_path_factory.mktemp("site")
    for module in (refdrivers, statedrivers):
        shutil.copy(HERE / f"{module.__name__}.py", root)
        for name in module.DRIVERS:
            dist = root / f"ipamkit_ref_{name.replace('-', '_')}-0.1.dist-info"
            dist.mkdir()
            (dist / "METADATA").write_text(
                f"Metadata-Version: 2.1\nName: ipamkit-ref-{name}\nVersion: 0.1\n"
            )
            (dist / "entry_points.txt").write_text(
                f"[ipamkit.drivers]\n{name} = {module.__name__}\n"
            )
    return root


@pytest.fixture
def run_suite(
    pytester: pytest.Pytester, installed: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., pytest.RunResult]:
    """Run pytest in a subprocess that sees the installed drivers."""
    monkeypatch.setenv("PYTHONPATH", str(installed))
    # Not in CI for hypothesis either, which then keeps no example database: tox
    # passes on that it was, in a variable of its own.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("__TOX_ENVIRONMENT_VARIABLE_ORIGINAL_CI", raising=False)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)

    return run


def failed_clauses(junit: Path) -> dict[str, set[str]]:
    """Clause to the ids of its failed tests, from a JUnit XML report."""
    failed: dict[str, set[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        clause = properties.get("ipam_clause", "?")
        failed.setdefault(str(clause), set()).add(str(case.get("name")))
    return failed
