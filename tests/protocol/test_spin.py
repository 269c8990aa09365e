"""Polling before sleeping (``ipamkit.protocol._spin``): when it polls, and that both sides
still answer with it on or off."""

from __future__ import annotations

import asyncio
import math
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from ipamkit import Capability, Host, errors
from ipamkit.drivers.remote import Endpoint, connect
from ipamkit.protocol import _spin
from ipamkit.protocol._spin import Spin, SpinningSelector, receive, run
from ipamkit.protocol.server import open_unix_server
from tests.protocol.conftest import Served
from tests.protocol.memory_driver import MemoryIpam


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def steady(spin: Spin) -> Spin:
    """``spin``, never taking a poll on a busy machine for one that lost its CPU."""
    spin.crowded = math.inf
    return spin


@pytest.fixture
def cpu_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each poll gives its CPU away for 5 ms: what a poll sees when another process takes it."""
    monkeypatch.setattr(_spin, "_yield", lambda: time.sleep(0.005))


def later(sock: socket.socket, data: bytes, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, sock.sendall, (data,))
    timer.start()
    return timer


def test_a_receive_polls_while_replies_come_within_the_spin(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, theirs = pair
    spin = steady(Spin(0.05))
    theirs.sendall(b"ready")
    assert receive(mine, 100, spin) == b"ready"
    assert spin.polling
    # Later than the spin: the wait sleeps, and the next one sleeps at once...
    timer = later(theirs, b"late", 0.3)
    assert receive(mine, 100, spin) == b"late"
    timer.join()
    assert not spin.polling
    # ...until one that slept ends within the spin: then polling is back.
    theirs.sendall(b"quick")
    assert receive(mine, 100, spin) == b"quick"
    assert spin.polling


def test_spin_zero_never_polls(pair: tuple[socket.socket, socket.socket]) -> None:
    mine, theirs = pair
    spin = Spin(0)
    assert not spin.polling
    theirs.sendall(b"x")
    assert receive(mine, 100, spin) == b"x"
    assert not spin.polling


def test_the_selector_polls_and_then_sleeps_as_the_peer_goes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, theirs = pair
    spin = steady(Spin(0.01))
    with SpinningSelector(spin) as selector:
        selector.register(mine, selectors.EVENT_READ)
        theirs.sendall(b"x")
        assert [key.fileobj for key, _ in selector.select()] == [mine]
        assert spin.polling
        mine.recv(10)
        # Nothing comes: the poll is in vain, and the timeout still ends the wait.
        assert selector.select(0.05) == []
        assert not spin.polling
        # A timeout shorter than the spin bounds the polling as well.
        spin.polling = True
        assert selector.select(0.001) == []
        timer = later(theirs, b"y", 0.2)
        assert [key.fileobj for key, _ in selector.select()] == [mine]
        timer.join()
        mine.recv(10)
        assert not spin.polling  # it slept longer than the spin
        theirs.sendall(b"z")
        assert [key.fileobj for key, _ in selector.select()] == [mine]
        assert spin.polling  # a sleep that ended at once


@pytest.mark.parametrize("spin", [0.0, 0.0002])
def test_a_loop_run_with_or_without_polling_takes_wake_ups_from_threads(spin: float) -> None:
    woken: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        threading.Timer(0.05, loop.call_soon_threadsafe, (event.set,)).start()
        await event.wait()
        woken.append("set")

    run(main(), spin)
    assert woken == ["set"]


@pytest.mark.parametrize(("client_spin", "server_spin"), [(0.0, 0.0), (0.0002, 0.0), (0.0, 0.0002)])
def test_both_sides_answer_with_polling_on_or_off(
    short_dir: Path, client_spin: float, server_spin: float
) -> None:
    path = short_dir / "p.sock"
    server = open_unix_server(MemoryIpam(), Capability(), str(path), spin=server_spin)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        driver, _ = connect(Endpoint.parse(str(path)), spin=client_spin)
        pool_id = driver.request_pool("local", "10.5.0.0/24").pool_id
        addresses = [driver.request_address(pool_id).address for _ in range(20)]
        assert len(set(addresses)) == 20
        assert IPv4Interface("10.5.0.1/24") in addresses
        driver.close()
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.close()


def test_ipamkit_serve_and_the_remote_driver_take_spin_zero(
    serve: Callable[..., Served],
) -> None:
    served = serve("memory", "--spin", "0")
    driver = Host(options={"remote": {"url": str(served.socket), "spin": "0"}}).driver("remote")
    pool_id = driver.request_pool("local", "10.6.0.0/24").pool_id
    assert driver.request_address(pool_id).address == IPv4Interface("10.6.0.1/24")
    driver.close()


@pytest.mark.parametrize("value", ["-1", "2", "soon", "nan"])
def test_a_nonsense_spin_option_does_not_load(short_dir: Path, value: str) -> None:
    host = Host(options={"remote": {"url": str(short_dir / "none.sock"), "spin": value}})
    with pytest.raises(errors.DriverLoadError, match="spin"):
        host.driver("remote")
    with pytest.raises(errors.InvalidParameterError, match="spin must be from 0 to 1"):
        connect(Endpoint.parse(str(short_dir / "none.sock")), spin=-1)


def test_polls_give_the_cpu_away_between_them(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A peer on the same CPU must get to answer while this side polls.
    yields: list[None] = []
    monkeypatch.setattr(_spin, "_yield", lambda: yields.append(None))
    mine, theirs = pair
    timer = later(theirs, b"x", 0.05)
    assert receive(mine, 100, Spin(0.01)) == b"x"
    timer.join()
    polled = len(yields)
    assert polled > 0
    with SpinningSelector(Spin(0.01)) as selector:
        selector.register(mine, selectors.EVENT_READ)
        assert selector.select(0.05) == []
    assert len(yields) > polled


@pytest.mark.usefixtures("cpu_taken")
def test_a_poll_that_loses_its_cpu_sleeps_the_next_waits(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, theirs = pair
    spin = Spin(0.01)
    timer = later(theirs, b"x", 0.02)
    assert receive(mine, 100, spin) == b"x"
    timer.join()
    assert not spin.polling
    # The next wait sleeps although it ends at once; then polling is back.
    theirs.sendall(b"y")
    assert receive(mine, 100, spin) == b"y"
    assert not spin.polling
    theirs.sendall(b"z")
    assert receive(mine, 100, spin) == b"z"
    assert spin.polling


@pytest.mark.usefixtures("cpu_taken")
def test_the_selector_stops_polling_when_its_cpu_is_taken(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, theirs = pair
    spin = Spin(0.01)
    with SpinningSelector(spin) as selector:
        selector.register(mine, selectors.EVENT_READ)
        timer = later(theirs, b"x", 0.02)
        assert [key.fileobj for key, _ in selector.select()] == [mine]
        timer.join()
        assert not spin.polling
        mine.recv(10)
        # The timeout still bounds a wait whose polling was cut short.
        spin.polling = True
        assert selector.select(0.03) == []
        assert not spin.polling


def test_each_lost_cpu_in_a_row_doubles_the_waits_that_sleep() -> None:
    spin = Spin(0.05)

    def sleeps_before_polling() -> int:
        waits = 0
        while not spin.polling:
            spin.slept(time.perf_counter())  # a sleep that ended at once
            waits += 1
        return waits

    # Besides the wait that lost its CPU: the ones that rest, then the one
    # whose quick end turns polling on again.
    spin.lost_cpu()
    assert sleeps_before_polling() == 1 + 1 + 1
    spin.lost_cpu()
    assert sleeps_before_polling() == 1 + 2 + 1
    spin.lost_cpu()
    assert sleeps_before_polling() == 1 + 4 + 1
    for _ in range(20):
        spin.lost_cpu()
    assert sleeps_before_polling() == 1 + 4096 + 1  # at most
    spin.polled()  # a poll that kept its CPU: the next loss costs one wait again
    spin.lost_cpu()
    assert sleeps_before_polling() == 1 + 1 + 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_a_busy_process_on_the_same_cpu_ends_the_polling(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    cpu = min(os.sched_getaffinity(0))
    mask = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {cpu})
        os.sched_setaffinity(0, {cpu})
        mine, theirs = pair
        spin = Spin(0.0002)
        # Each poll gives the CPU away: to the busy process, which keeps it
        # for its time slice (the reply comes from a thread of this process).
        for _ in range(50):
            spin.polling = True
            timer = later(theirs, b"x", 0.01)
            assert receive(mine, 100, spin) == b"x"
            timer.join()
            if spin._rest:
                break
        assert spin._rest, "no poll lost its CPU to a busy process on it"
    finally:
        os.sched_setaffinity(0, mask)
        hog.kill()
        hog.wait(timeout=10)
