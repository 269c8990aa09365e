"""``ipamkit drivers``: the listing a runtime's operator reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ipamkit.cli import main
from tests.conftest import GOOD_PLUGIN, Site


def test_table_lists_builtins_and_installed_drivers(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.install("good-dist", {"good": "good_plugin"}, {"good_plugin": GOOD_PLUGIN}, "0.4")
    site.install("bad-dist", {"bad": "bad_plugin"}, {"bad_plugin": "import nonexistent_dep\n"})
    assert main(["drivers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "CAPABILITIES", "BUILT-IN", "FROM", "REASON"]
    # A long reason wraps inside its column, so the table fits 100 columns,
    # unless the other columns leave the reasons less than 20 (a driver of a
    # distribution with a long name, installed where the tests run, widens FROM).
    columns = lines[1].split()
    assert len(lines[1]) <= 100 or len(columns[-1]) == 20
    assert max(len(line) for line in lines) <= len(lines[1])
    assert len(columns[-1]) < len("the remote driver is not configured")  # wrapped, then
    rows: dict[str, str] = {}
    name = ""
    for line in lines[2:]:
        if line.startswith(" "):
            rows[name] += " " + line.strip()
        else:
            name = line.split()[0]
            rows[name] = line
    assert rows["null"].split()[1:5] == ["ok", "none", "yes", "ipamkit"]
    assert rows["good"].split()[1:] == ["ok", "requires_mac_address", "no", "good-dist", "0.4"]
    assert rows["bad"].split()[1] == "failed"
    assert "No module named 'nonexistent_dep'" in rows["bad"]


def test_json_listing_and_strict_exit_status(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    site.install("bad-dist", {"bad": "bad_plugin"}, {"bad_plugin": "import nonexistent_dep\n"})
    assert main(["drivers", "--json"]) == 0
    listing = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listing["null"] == {
        "name": "null",
        "status": "ok",
        "reason": "",
        "capability": {"requires_mac_address": False, "requires_request_replay": False},
        "builtin": True,
        "distribution": "ipamkit",
        "version": listing["null"]["version"],
    }
    assert listing["bad"]["status"] == "failed"
    assert main(["drivers", "--strict"]) == 1


def test_module_entry_point_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ipamkit", "drivers", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "null" in {row["name"] for row in json.loads(done.stdout)}
