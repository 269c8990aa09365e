"""``ipamkit state PATH``: a state file's pools and addresses, read without writing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ipamkit.cli import main
from ipamkit.drivers.default import DurableDefaultIpam

L = "LocalDefault"


def fill(driver: DurableDefaultIpam) -> None:
    pool_id = driver.request_pool(L).pool_id  # 172.17.0.0/16
    for _ in range(3):
        driver.request_address(pool_id)
    sub = driver.request_pool(L, "10.9.0.0/16", "10.9.4.0/24").pool_id
    driver.request_address(sub)
    driver.request_address(sub, "10.9.200.7")  # a specific address outside the subpool
    v6 = driver.request_pool(L, "::fffe:0:0/95").pool_id  # half of it IPv4-mapped: unusable
    driver.request_address(v6, "::fffe:0:9")


def files(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_a_table_of_pools_while_the_owner_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "ipam.db"
    with DurableDefaultIpam(state) as driver:
        fill(driver)
        assert main(["state", str(state)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split() for line in lines] == [
            ["POOL", "SIZE", "USED", "FREE"],
            ["-" * 36, "-" * 13, "-" * 4, "-" * 13, "-" * 12],
            ["LocalDefault/172.17.0.0/16", "65,536", "3", "65,531"],
            ["LocalDefault/10.9.0.0/16", "65,536", "2", "65,532", "auto-release"],
            ["LocalDefault/10.9.0.0/16/10.9.4.0/24", "256", "1", "255"],
            ["LocalDefault/::fffe:0:0/95", "8,589,934,592", "1", "4,294,967,294"],
            [],
            ["next", "predefined", "pool", "index:", "GlobalDefault", "0,", "LocalDefault", "1"],
        ]
        assert lines[2].index("65,536") == lines[1].index("  -") + 2  # aligned columns
        driver.release_pool(f"{L}/172.17.0.0/16")  # committed: the next reading sees it
        assert main(["state", str(state), "--json"]) == 0
        pools = json.loads(capsys.readouterr().out)["pools"]
        assert [pool["pool_id"] for pool in pools] == [
            "LocalDefault/10.9.0.0/16",
            "LocalDefault/10.9.0.0/16/10.9.4.0/24",
            "LocalDefault/::fffe:0:0/95",
        ]


def test_addresses_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "ipam.db"
    with DurableDefaultIpam(state) as driver:
        fill(driver)
    assert main(["state", str(state), "--addresses"]) == 0
    out = capsys.readouterr().out
    assert "LocalDefault/172.17.0.0/16:\n  172.17.0.1\n  172.17.0.2\n  172.17.0.3\n" in out
    assert "LocalDefault/10.9.0.0/16:\n  10.9.4.0\n  10.9.200.7\n" in out
    assert "LocalDefault/::fffe:0:0/95:\n  ::fffe:0:9" in out
    assert main(["state", str(state), "--json", "--addresses"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["path"] == str(state)
    assert document["starts"] == {"GlobalDefault": 0, "LocalDefault": 1}
    assert document["pools"][1] == {
        "pool_id": "LocalDefault/10.9.0.0/16",
        "size": 65536,
        "used": 2,
        "free": 65532,
        "master": None,
        "auto_release": True,
        "addresses": ["10.9.4.0", "10.9.200.7"],
    }
    assert document["pools"][2] == {
        "pool_id": "LocalDefault/10.9.0.0/16/10.9.4.0/24",
        "size": 256,
        "used": 1,
        "free": 255,
        "master": "LocalDefault/10.9.0.0/16",
        "auto_release": False,
        "addresses": [],
    }


def test_reading_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "ipam.db"
    with DurableDefaultIpam(state) as driver:
        fill(driver)
    before = files(tmp_path)
    os.chmod(state, 0o444)  # for a reader without root's privileges
    for extra in ([], ["--addresses"], ["--json"]):
        assert main(["state", str(state), *extra]) == 0
    capsys.readouterr()
    assert files(tmp_path) == before  # no -wal, no -shm, nothing touched


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"not a database\n", "not an ipamkit state file"),
        (b"SQLite format 3\x00" + b"\x00" * 84 + b"\xff" * 4000, "cannot be read|corrupt"),
    ],
    ids=["missing", "foreign", "corrupt"],
)
def test_a_file_that_is_no_state_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    state = tmp_path / "ipam.db"
    if content is not None:
        state.write_bytes(content)
    assert main(["state", str(state)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("ipamkit state: error: ")
    assert re.search(message, captured.err), captured.err
    if content is not None:
        assert state.read_bytes() == content
