"""The durable ``default`` driver (option ``state``): resuming, owning and refusing files."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ipamkit
from ipamkit import ALLOC_SERIAL_PREFIX, Capability, errors
from ipamkit.cli import main
from ipamkit.drivers.default import (
    DefaultIpam,
    DurableDefaultIpam,
    StateFileError,
    StateLockedError,
    StateWriteError,
)
from ipamkit.drivers.default._store import APPLICATION_ID, SCHEMA_VERSION

L, G = "LocalDefault", "GlobalDefault"
SERIAL = {ALLOC_SERIAL_PREFIX: "true"}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "ipam.db"


@pytest.fixture
def durable(state: Path) -> Iterator[DurableDefaultIpam]:
    with DurableDefaultIpam(state, durability="relaxed") as driver:
        yield driver


def outcome(call: Callable[[], Any]) -> object:
    """What a call gave: its result, or its error's class and message."""
    try:
        return call()
    except (errors.IpamError, TypeError) as exc:
        return type(exc), str(exc)


def script(ipam: DefaultIpam) -> list[object]:
    """Pools of every kind, addresses both ways, releases, and a range of errors."""
    results: list[object] = []

    def run(call: Callable[[], Any]) -> Any:
        results.append(outcome(call))
        return results[-1]

    first = run(lambda: ipam.request_pool(L)).pool_id
    run(lambda: ipam.request_pool(L))
    run(lambda: ipam.release_pool(first))
    chosen = run(lambda: ipam.request_pool(G)).pool_id
    v6 = run(lambda: ipam.request_pool(L, "2001:db8::/64")).pool_id
    sub = run(lambda: ipam.request_pool(L, "10.9.0.0/16", "10.9.4.0/24")).pool_id
    other = run(lambda: ipam.request_pool(L, "10.9.0.0/16", "10.9.8.0/24")).pool_id
    run(lambda: ipam.request_pool(L, "10.9.0.0/16", "10.9.8.0/24"))  # overlap
    run(lambda: ipam.request_pool(L, "10.9.1.0/24"))  # overlap
    run(lambda: ipam.request_pool("nowhere", "10.1.0.0/16"))
    for pool_id in (chosen, v6, sub, other):
        for _ in range(3):
            run(lambda pool_id=pool_id: ipam.request_address(pool_id))
    run(lambda: ipam.request_address(sub, None, SERIAL))
    run(lambda: ipam.request_address(v6, "2001:db8::ff"))
    run(lambda: ipam.request_address(v6, "2001:db8::ff"))  # taken
    run(lambda: ipam.request_address(chosen, "10.0.0.0"))  # reserved
    run(lambda: ipam.request_address(chosen, "192.0.2.1"))  # out of range
    run(lambda: ipam.release_address(chosen, "10.0.0.2"))
    run(lambda: ipam.release_address(chosen, "10.0.0.2"))  # free already: a no-op
    run(lambda: ipam.release_address(chosen, "10.0.0.0"))  # reserved: a no-op (D5)
    run(lambda: ipam.release_address(v6.upper(), "2001:DB8::1"))  # other spellings
    run(lambda: ipam.release_pool(f"{L}/10.9.0.0/16"))  # goes with its last subpool
    run(lambda: ipam.release_pool(other))
    run(lambda: ipam.release_pool(other))  # gone
    run(lambda: ipam.request_address(sub, None, SERIAL))
    return results


def continuation(ipam: DefaultIpam) -> list[object]:
    """What follows :func:`script` on the same driver: rotation, cursors, first-free."""
    sub, v6 = f"{L}/10.9.0.0/16/10.9.4.0/24", f"{L}/2001:db8::/64"
    calls: list[Callable[[], Any]] = [
        lambda: ipam.request_pool(L),
        lambda: ipam.request_pool(G),
        lambda: ipam.request_pool(L, "10.9.0.0/16"),  # the master went with its subpools
        lambda: ipam.request_address(sub, None, SERIAL),
        lambda: ipam.request_address(sub),
        lambda: ipam.request_address(v6),
        lambda: ipam.request_address(v6, "2001:db8::ff"),
        lambda: ipam.release_address(v6, "2001:db8::ff"),
        lambda: ipam.request_address(f"{G}/10.0.0.0/24"),
        lambda: ipam.release_pool(sub),
    ]
    return [outcome(call) for call in calls]


def test_same_results_and_errors_with_or_without_state(durable: DurableDefaultIpam) -> None:
    memory = DefaultIpam()
    assert script(durable) == script(memory)
    assert durable.snapshot() == memory.snapshot()


def test_a_new_driver_resumes_exactly(state: Path) -> None:
    memory = DefaultIpam()
    with DurableDefaultIpam(state) as durable:
        script(durable)
        script(memory)
        assert durable.snapshot() == memory.snapshot()
    with DurableDefaultIpam(state) as resumed:
        assert resumed.snapshot() == memory.snapshot()
        # And it goes on as the driver it replaces would have: rotation, serial
        # cursors, first-free, flags.
        assert continuation(resumed) == continuation(memory)
        assert resumed.snapshot() == memory.snapshot()


def test_nothing_released_comes_back(state: Path) -> None:
    with DurableDefaultIpam(state) as durable:
        pool_id = durable.request_pool(L, "10.3.0.0/24").pool_id
        gone = durable.request_pool(L, "10.4.0.0/24").pool_id
        held = [str(durable.request_address(pool_id).address.ip) for _ in range(4)]  # type: ignore[union-attr]
        durable.request_address(gone)
        durable.release_address(pool_id, held[1])
        durable.release_pool(gone)
    with DurableDefaultIpam(state) as resumed:
        assert str(resumed.request_address(pool_id).address) == f"{held[1]}/24"
        with pytest.raises(errors.IPAlreadyAllocatedError):
            resumed.request_address(pool_id, held[2])
        with pytest.raises(errors.BadPoolError):
            resumed.request_address(gone)
        assert resumed.request_pool(L, "10.4.0.0/24").pool_id == gone


def test_ipv6_ordinals_beyond_64_bits_resume(state: Path) -> None:
    pool = "2001:db8::/48"
    top = "2001:db8:0:ffff:ffff:ffff:ffff:ffff"
    with DurableDefaultIpam(state) as durable:
        pool_id = durable.request_pool(L, pool, "2001:db8:0:ffff::/64").pool_id
        durable.request_address(pool_id, top)
        durable.request_address(pool_id, None, SERIAL)  # wraps to the subpool's bottom
        snapshot = durable.snapshot()
    with DurableDefaultIpam(state) as resumed:
        assert resumed.snapshot() == snapshot
        with pytest.raises(errors.IPAlreadyAllocatedError):
            resumed.request_address(pool_id, top)


def test_a_second_owner_is_refused_with_the_holder_named(
    durable: DurableDefaultIpam, state: Path
) -> None:
    with pytest.raises(StateLockedError, match=rf"in use by pid {os.getpid()} on host "):
        DurableDefaultIpam(state)
    code = (
        "import sys\nfrom ipamkit.drivers.default import DurableDefaultIpam\n"
        "try:\n    DurableDefaultIpam(sys.argv[1])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.stdout.startswith(f"StateLockedError state file {state} is in use by pid ")
    assert str(os.getpid()) in other.stdout
    durable.close()
    with DurableDefaultIpam(state) as successor:  # closing gave it up
        assert successor.snapshot() == DefaultIpam().snapshot()


def test_the_host_builds_a_durable_driver_that_asks_for_no_replay(state: Path) -> None:
    host = ipamkit.Host(options={"default": {"state": str(state), "durability": "relaxed"}})
    assert host.capability("default") == Capability(requires_request_replay=False)
    driver = host.driver("default")
    assert isinstance(driver, DurableDefaultIpam)
    pool_id = driver.request_pool(L).pool_id
    driver.close()
    with DurableDefaultIpam(state) as resumed:
        assert resumed.request_pool(L).pool_id != pool_id  # the rotation went on
    assert ipamkit.Host().capability("default") == Capability(requires_request_replay=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"durability": "full"}, "option durability needs option state"),
        ({"state": ""}, "option state must name a file"),
        ({"state": "{path}", "durability": "sometimes"}, "durability must be one of full, relaxed"),
    ],
)
def test_bad_state_options(state: Path, options: dict[str, str], message: str) -> None:
    options = {key: value.format(path=state) for key, value in options.items()}
    host = ipamkit.Host(options={"default": options})
    with pytest.raises(errors.DriverLoadError, match=message):
        host.driver("default")
    assert not state.exists()


def _other_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('mine')")
    db.close()


def _newer(path: Path) -> None:
    DurableDefaultIpam(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


def _corrupt(path: Path) -> None:
    with DurableDefaultIpam(path, durability="relaxed") as driver:
        pool_id = driver.request_pool(L, "10.0.0.0/16").pool_id
        for _ in range(3000):
            driver.request_address(pool_id)
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page + 100 : 3 * page] = b"\xa5" * (page - 100)  # scribble over a b-tree page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_text("host = example\n"), "not an ipamkit state file"),
        (_other_sqlite, "an SQLite database, but not an ipamkit state file"),
        (_newer, f"has schema version {SCHEMA_VERSION + 1}, newer than"),
        (_corrupt, "is corrupt|cannot be read"),
    ],
    ids=["text", "foreign-sqlite", "newer", "corrupt"],
)
def test_a_file_that_is_not_a_usable_state_is_refused_untouched(
    state: Path, make: Callable[[Path], None], message: str
) -> None:
    make(state)
    before = state.read_bytes()
    with pytest.raises(StateFileError, match=message):
        DurableDefaultIpam(state)
    assert state.read_bytes() == before
    # The lock was given up: a second attempt says the same.
    with pytest.raises(StateFileError, match=message):
        DurableDefaultIpam(state)


def test_a_new_file_is_marked_as_ipamkits(state: Path) -> None:
    DurableDefaultIpam(state).close()
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    holder = (state.parent / f"{state.name}.lock").read_text()
    assert holder == ""  # closed: nobody holds it


def test_the_lock_file_names_the_holder(durable: DurableDefaultIpam, state: Path) -> None:
    record = json.loads((state.parent / f"{state.name}.lock").read_text())
    assert record["pid"] == os.getpid()
    assert record["host"] == os.uname().nodename
    assert set(record) == {"pid", "host", "command", "since"}


def test_a_failed_write_leaves_memory_and_file_as_they_were(state: Path) -> None:
    with DurableDefaultIpam(state, durability="relaxed") as driver:
        pool_id = driver.request_pool(L, "10.0.0.0/8").pool_id
        sub = driver.request_pool(L, "10.0.0.0/8", "10.7.0.0/16").pool_id
        held = driver.request_address(pool_id, "10.0.0.9").address
        before = driver.snapshot()
        # Someone writes to the file behind the owner's back (an sqlite3 shell,
        # say): each of the owner's changes finds the database locked.
        driver._store._db.execute("PRAGMA busy_timeout = 0")
        intruder = sqlite3.connect(state, isolation_level=None)
        intruder.execute("BEGIN IMMEDIATE")
        for change in (
            lambda: driver.request_address(pool_id),
            lambda: driver.request_address(pool_id, "10.0.0.10"),
            lambda: driver.request_address(sub, None, SERIAL),
            lambda: driver.release_address(pool_id, held),  # type: ignore[arg-type]
            lambda: driver.request_pool(L),
            lambda: driver.request_pool(G),
            lambda: driver.request_pool(L, "172.30.0.0/16", "172.30.1.0/24"),
            lambda: driver.request_pool(L, "10.0.0.0/8", "10.8.0.0/16"),
            lambda: driver.release_pool(sub),
            lambda: driver.release_pool(pool_id),
        ):
            with pytest.raises(StateWriteError, match=f"could not write the state file {state}"):
                change()
            assert driver.snapshot() == before
        intruder.execute("ROLLBACK")
        intruder.close()
        driver.release_pool(sub)  # writes again
        before = driver.snapshot()
    with DurableDefaultIpam(state) as resumed:
        assert resumed.snapshot() == before


def test_a_full_disk_fails_the_change_and_keeps_what_was_written(state: Path) -> None:
    with DurableDefaultIpam(state, durability="relaxed") as driver:
        pool_id = driver.request_pool(L, "10.0.0.0/8").pool_id
        db = driver._store._db
        # The file may not grow past its present size: SQLITE_FULL, as on a full disk.
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        failure = None
        for _ in range(5000):  # the first ones fit in the pages the file has free
            before = driver.snapshot()
            try:
                driver.request_address(pool_id, None, SERIAL)
            except StateWriteError as exc:
                failure = str(exc)
                break
        assert failure is not None, "the file never filled up"
        assert "full" in failure
        assert driver.snapshot() == before
    with DurableDefaultIpam(state) as resumed:
        assert resumed.snapshot() == before


def test_a_closed_driver_changes_nothing(state: Path) -> None:
    driver = DurableDefaultIpam(state)
    pool_id = driver.request_pool(L, "10.0.0.0/24").pool_id
    driver.close()
    driver.close()  # idempotent
    before = driver.snapshot()
    with pytest.raises(StateWriteError, match="closed"):
        driver.request_address(pool_id)
    assert driver.snapshot() == before


def test_a_changed_predefined_list_keeps_the_pools_and_restarts_the_rotation(
    state: Path,
) -> None:
    with DurableDefaultIpam(state) as durable:
        first = durable.request_pool(L).pool_id
        durable.request_pool(L)
    with DurableDefaultIpam(state, local_pools=[("172.16.0.0/12", 16)]) as changed:
        assert changed.snapshot()[L]["start"] == 0  # type: ignore[index]
        with pytest.raises(errors.PoolOverlapError):
            changed.request_pool(L, "172.17.0.0/16")
        assert changed.request_pool(L).pool_id == f"{L}/172.16.0.0/16"
        assert first == f"{L}/172.17.0.0/16"


def test_many_runs_resume_across_chunks(state: Path) -> None:
    # Every other address released: thousands of runs, cut into many chunks.
    memory = DefaultIpam()
    with DurableDefaultIpam(state, durability="relaxed") as durable:
        for ipam in (memory, durable):
            pool_id = ipam.request_pool(L, "10.0.0.0/16").pool_id
            held = [ipam.request_address(pool_id).address for _ in range(3000)]
            for address in held[::2]:
                ipam.release_address(pool_id, address)  # type: ignore[arg-type]
    with DurableDefaultIpam(state) as resumed:
        assert resumed.snapshot() == memory.snapshot()
        for ipam in (memory, resumed):
            for _ in range(700):
                ipam.request_address(pool_id)
            ipam.release_address(pool_id, "10.0.11.1")
        assert resumed.snapshot() == memory.snapshot()


def test_an_ipamkit_file_without_its_tables_is_refused(state: Path) -> None:
    DurableDefaultIpam(state).close()
    with sqlite3.connect(state) as db:
        db.execute("DROP TABLE addresses")
    db.close()
    with pytest.raises(StateFileError, match="is incomplete: no table addresses"):
        DurableDefaultIpam(state)
    assert main(["state", str(state)]) == 1  # the reader says so too


def test_threads_share_a_durable_driver(state: Path) -> None:
    with DurableDefaultIpam(state, durability="relaxed") as durable:
        pool_id = durable.request_pool(L, "10.0.0.0/20").pool_id
        held: list[list[str]] = [[] for _ in range(4)]

        def work(mine: list[str]) -> None:
            for number in range(300):
                mine.append(str(durable.request_address(pool_id).address))
                if number % 3 == 0:
                    durable.release_address(pool_id, mine.pop(0).split("/")[0])

        threads = [threading.Thread(target=work, args=(mine,)) for mine in held]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        addresses = [address for mine in held for address in mine]
        assert len(addresses) == len(set(addresses)) == 4 * 200
        snapshot = durable.snapshot()
    with DurableDefaultIpam(state) as resumed:
        assert resumed.snapshot() == snapshot
        for address in addresses:
            with pytest.raises(errors.IPAlreadyAllocatedError):
                resumed.request_address(pool_id, address.split("/")[0])


def test_a_driver_dropped_without_close_gives_the_file_up(state: Path) -> None:
    host = ipamkit.Host(options={"default": {"state": str(state)}})
    pool_id = host.driver("default").request_pool(L).pool_id
    del host
    gc.collect()
    with DurableDefaultIpam(state) as successor:
        assert successor.request_address(pool_id).address is not None
