"""A Docker test that cannot run skips, except under CI, where it fails."""

from __future__ import annotations

import pytest

from tests.docker.processes import unavailable


def test_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no dockerd"):
        unavailable("no dockerd")


def test_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no dockerd.*a failure under CI=true"):
        unavailable("no dockerd")
