"""Discovery of installed drivers through entry points, and isolation of broken plugins."""

from __future__ import annotations

import sys

import pytest

import ipamkit
from ipamkit.errors import DriverLoadError, DriverNotConfiguredError, DriverNotFoundError
from tests.conftest import GOOD_PLUGIN, Site

BROKEN_IMPORT = "raise ImportError('missing dependency frobnicate')\n"

HOOK_RAISES = """
    from ipamkit import hookimpl

    @hookimpl
    def ipamkit_register_drivers(registerer, options):
        raise RuntimeError("cannot reach the IPAM database")
"""

UNKNOWN_HOOK = (
    GOOD_PLUGIN
    + """
    @hookimpl
    def ipamkit_regster_drivers(registerer):
        pass
"""
)

UNDECLARED_NAME = """
    from ipamkit import hookimpl
    from ipamkit.drivers.null import NullIpam

    @hookimpl
    def ipamkit_register_drivers(registerer, options):
        registerer.register_ipam_driver("sneaky", NullIpam())
"""

NO_HOOKS = "VALUE = 1\n"


def test_names_lists_installed_drivers_without_importing_them(site: Site) -> None:
    # Drivers installed where the tests run (drivers/example, say) are listed too.
    elsewhere = _installed_elsewhere()
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    host = ipamkit.Host()
    assert host.names() == sorted(["default", "good", "null", "remote", *elsewhere])
    assert "good_plugin" not in sys.modules


def test_driver_loads_only_its_plugin(site: Site) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    site.install("other-dist", {"other": "other_plugin"}, {"other_plugin": GOOD_PLUGIN})
    host = ipamkit.Host()
    driver = host.driver("good")
    assert isinstance(driver, ipamkit.Ipam)
    assert host.capability("good") == ipamkit.Capability(requires_mac_address=True)
    assert "good_plugin" in sys.modules
    assert "other_plugin" not in sys.modules


def test_options_reach_the_plugin(site: Site) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    host = ipamkit.Host(options={"good": {"zone": "eu"}, "unrelated": {"x": "y"}})
    assert host.driver("good").options == {"zone": "eu"}  # type: ignore[attr-defined]


def test_each_host_has_its_own_driver_instances(site: Site) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    first, second = ipamkit.Host(), ipamkit.Host()
    assert first.driver("good") is first.driver("good")
    assert first.driver("good") is not second.driver("good")
    assert first.driver("null") is not second.driver("null")


def test_plugin_registering_two_drivers_runs_once(site: Site) -> None:
    site.install(
        "pair-dist", {"left": "pair_plugin", "right": "pair_plugin"}, {"pair_plugin": GOOD_PLUGIN}
    )
    host = ipamkit.Host()
    assert host.driver("left") is not host.driver("right")
    assert sys.modules["pair_plugin"].IMPORTS == [["left", "right"]]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (BROKEN_IMPORT, "ImportError: missing dependency frobnicate"),
        (HOOK_RAISES, "RuntimeError: cannot reach the IPAM database"),
        (UNKNOWN_HOOK, "unknown hook 'ipamkit_regster_drivers'"),
        (UNDECLARED_NAME, "driver 'sneaky' is not declared as an entry point of bad-dist"),
        (NO_HOOKS, "implements no ipamkit hook"),
    ],
    ids=["import-fails", "hook-raises", "unknown-hook", "undeclared-name", "no-hooks"],
)
def test_broken_plugin_is_isolated_and_named(site: Site, module: str, expected: str) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    site.install("bad-dist", {"bad": "bad_plugin"}, {"bad_plugin": module}, version="2.3")
    host = ipamkit.Host()
    assert "bad" in host.names()
    with pytest.raises(DriverLoadError) as caught:
        host.driver("bad")
    assert "bad-dist 2.3" in str(caught.value)
    assert expected in str(caught.value)
    # The failure is remembered, and it does not touch the other drivers.
    with pytest.raises(DriverLoadError):
        host.driver("bad")
    assert isinstance(host.driver("good"), ipamkit.Ipam)
    rows = {row.name: row for row in host.describe()}
    assert rows["bad"].status == "failed"
    assert expected in rows["bad"].reason
    assert (rows["bad"].distribution, rows["bad"].version) == ("bad-dist", "2.3")
    assert rows["good"].status == "ok"


def test_unknown_hook_leaves_no_half_registered_plugin(site: Site) -> None:
    site.install("bad-dist", {"bad": "bad_plugin"}, {"bad_plugin": UNKNOWN_HOOK})
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    host = ipamkit.Host()
    with pytest.raises(DriverLoadError):
        host.driver("bad")
    # Had the bad plugin stayed registered, loading the next one would trip over it.
    assert isinstance(host.driver("good"), ipamkit.Ipam)


def test_two_distributions_claiming_one_name_is_an_error_naming_both(site: Site) -> None:
    site.install("first-dist", {"clash": "first_plugin"}, {"first_plugin": GOOD_PLUGIN})
    site.install("second-dist", {"clash": "second_plugin"}, {"second_plugin": GOOD_PLUGIN})
    host = ipamkit.Host()
    assert "clash" in host.names()
    with pytest.raises(DriverLoadError) as caught:
        host.driver("clash")
    assert "first-dist 1.0 (first_plugin)" in str(caught.value)
    assert "second-dist 1.0 (second_plugin)" in str(caught.value)
    assert "first_plugin" not in sys.modules
    assert "second_plugin" not in sys.modules


def test_same_distribution_twice_on_the_path_is_not_a_conflict(
    site: Site, second_site: Site
) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    second_site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    host = ipamkit.Host()
    assert isinstance(host.driver("good"), ipamkit.Ipam)
    assert [row.status for row in host.describe() if row.name == "good"] == ["ok"]


def test_installed_plugin_cannot_claim_a_builtin_name(site: Site) -> None:
    site.install("evil-dist", {"default": "evil_plugin"}, {"evil_plugin": GOOD_PLUGIN})
    host = ipamkit.Host()
    assert host.names().count("default") == 1
    rows = [row for row in host.describe() if row.distribution == "evil-dist"]
    assert [(row.name, row.status) for row in rows] == [("default", "failed")]
    assert "belongs to a built-in driver" in rows[0].reason
    assert "evil_plugin" not in sys.modules


def test_unknown_name_lists_the_known_ones(site: Site) -> None:
    known = ", ".join(sorted(["default", "good", "null", "remote", *_installed_elsewhere()]))
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    with pytest.raises(DriverNotFoundError, match=f"known drivers: {known}$"):
        ipamkit.Host().driver("nope")


def test_blocked_by_argument_and_environment(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = _installed_elsewhere()
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    site.install("other-dist", {"other": "other_plugin"}, {"other_plugin": GOOD_PLUGIN})
    monkeypatch.setenv("IPAMKIT_BLOCKED_DRIVERS", "other")
    host = ipamkit.Host(blocked=["good"])
    assert host.names() == sorted(["default", "null", "remote", *elsewhere])
    with pytest.raises(DriverNotFoundError, match="blocked"):
        host.driver("good")
    with pytest.raises(DriverNotFoundError, match="blocked"):
        host.driver("other")
    rows = {row.name: row.status for row in host.describe()}
    assert (rows["good"], rows["other"], rows["null"]) == ("blocked", "blocked", "ok")
    assert "good_plugin" not in sys.modules


def test_builtins_can_be_blocked_too() -> None:
    host = ipamkit.Host(blocked=["null"])
    with pytest.raises(DriverNotFoundError, match="blocked"):
        host.driver("null")


def test_allow_list_restricts_installed_drivers_only(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    site.install("other-dist", {"other": "other_plugin"}, {"other_plugin": GOOD_PLUGIN})
    monkeypatch.setenv("IPAMKIT_ALLOWED_DRIVERS", "good")
    host = ipamkit.Host()
    assert host.names() == ["default", "good", "null", "remote"]
    assert isinstance(host.driver("good"), ipamkit.Ipam)
    with pytest.raises(DriverNotFoundError, match="allow-list"):
        host.driver("other")
    monkeypatch.delenv("IPAMKIT_ALLOWED_DRIVERS")
    assert ipamkit.Host(allowed=[]).names() == ["default", "null", "remote"]


def test_strict_mode_turns_a_broken_plugin_into_an_error(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    site.install("bad-dist", {"bad": "bad_plugin"}, {"bad_plugin": BROKEN_IMPORT})
    assert isinstance(ipamkit.Host().driver("good"), ipamkit.Ipam)
    with pytest.raises(DriverLoadError, match=r"bad-dist 1\.0"):
        ipamkit.Host(strict=True).driver("good")
    monkeypatch.setenv("IPAMKIT_STRICT", "1")
    with pytest.raises(DriverLoadError, match=r"bad-dist 1\.0"):
        ipamkit.Host().driver("good")


def test_strict_mode_refuses_name_conflicts_at_once(site: Site) -> None:
    site.install("first-dist", {"clash": "first_plugin"}, {"first_plugin": GOOD_PLUGIN})
    site.install("second-dist", {"clash": "second_plugin"}, {"second_plugin": GOOD_PLUGIN})
    with pytest.raises(DriverLoadError, match="second-dist"):
        ipamkit.Host(strict=True)


NEEDS_OPTIONS = """
    from ipamkit import hookimpl
    from ipamkit.errors import DriverNotConfiguredError

    @hookimpl
    def ipamkit_register_drivers(registerer, options):
        raise DriverNotConfiguredError("the picky driver needs option endpoint=URL")
"""


def test_a_driver_waiting_for_options_is_unconfigured_not_broken(site: Site) -> None:
    site.install("picky-dist", {"picky": "picky_plugin"}, {"picky_plugin": NEEDS_OPTIONS})
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN})
    host = ipamkit.Host(strict=True)
    assert isinstance(host.driver("good"), ipamkit.Ipam)
    with pytest.raises(DriverNotConfiguredError, match="needs option endpoint=URL"):
        host.driver("picky")
    rows = {row.name: row for row in host.describe()}
    assert (rows["picky"].status, rows["picky"].reason) == (
        "unconfigured",
        "the picky driver needs option endpoint=URL",
    )
    assert rows["remote"].status == "unconfigured"


def _installed_elsewhere() -> list[str]:
    """The drivers of distributions installed beside ipamkit, not by the test."""
    return [row.name for row in ipamkit.Host().describe() if row.distribution != "ipamkit"]
