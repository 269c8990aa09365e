"""``ipamkit serve`` under Docker's concurrency and against idle, slow or greedy clients."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ipamkit import Capability
from ipamkit.cli import build_parser
from ipamkit.protocol import wire
from ipamkit.protocol.server import open_unix_server
from tests.protocol.conftest import Served
from tests.protocol.memory_driver import MemoryIpam
from tests.protocol.server_helpers import Raw, docker_request, threads_of, wait_for

Serve = Callable[..., Served]
POOL = {"AddressSpace": "local", "Pool": "10.0.0.0/16", "SubPool": "", "Options": {}, "V6": False}


def _pool(served: Served) -> str:
    connection = Raw(served.socket)
    status, reply = connection.call(wire.REQUEST_POOL.path, POOL)
    connection.close()
    assert status == 200, reply
    return str(reply["PoolID"])


class _AllConnected:
    """Holds every caller until all have their connection open, as under a burst."""

    def __init__(self, callers: int) -> None:
        self.missing = callers
        self.event = asyncio.Event()

    async def wait(self) -> None:
        self.missing -= 1
        if self.missing == 0:
            self.event.set()
        await self.event.wait()


async def _docker_like_caller(
    path: Path, pool_id: str, calls: int, together: _AllConnected
) -> list[str]:
    """One connection kept alive, ``calls`` RequestAddress + ReleaseAddress pairs on it."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    got = []
    try:
        await together.wait()
        for _ in range(calls):
            address = await _call(reader, writer, wire.REQUEST_ADDRESS.path, pool_id, "")
            got.append(address)
            await _call(reader, writer, wire.RELEASE_ADDRESS.path, pool_id, address.split("/")[0])
    finally:
        writer.close()
    return got


async def _call(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    path: str,
    pool_id: str,
    address: str,
) -> str:
    fields: dict[str, object] = {"PoolID": pool_id, "Address": address}
    if path == wire.REQUEST_ADDRESS.path:
        fields["Options"] = None
    writer.write(docker_request(path, fields))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    reply = wire.REQUEST_ADDRESS.read_reply(await reader.readexactly(length), status=200)
    return str(reply[0]) if path == wire.REQUEST_ADDRESS.path else ""


async def _callers(path: Path, pool_id: str, callers: int, calls: int) -> list[list[str]]:
    together = _AllConnected(callers)
    jobs = [_docker_like_caller(path, pool_id, calls, together) for _ in range(callers)]
    return await asyncio.wait_for(asyncio.gather(*jobs), timeout=240)


@pytest.mark.slow
def test_a_thousand_docker_like_callers_get_every_answer_from_a_few_threads(
    serve: Serve,
) -> None:
    served = serve()
    pool_id = _pool(served)
    results = asyncio.run(_callers(served.socket, pool_id, callers=1000, calls=3))
    assert sum(len(r) for r in results) == 3000
    assert all(address.startswith("10.0.") for r in results for address in r)
    assert threads_of(served.process.pid) < 20
    assert "refused" not in served.log()


def test_concurrent_callers_beyond_the_old_limit_get_every_answer(serve: Serve) -> None:
    served = serve()
    pool_id = _pool(served)
    results = asyncio.run(_callers(served.socket, pool_id, callers=200, calls=2))
    assert sum(len(r) for r in results) == 400


@pytest.mark.slow
def test_three_thousand_open_connections_cost_no_thread_each(serve: Serve) -> None:
    served = serve()
    connections = [Raw(served.socket) for _ in range(3000)]
    try:
        for connection in connections[::100]:
            assert connection.call(wire.GET_DEFAULT_ADDRESS_SPACES.path)[0] == 200
        assert threads_of(served.process.pid) < 20
    finally:
        for connection in connections:
            connection.close()


def test_idle_connections_make_room_for_a_new_caller(serve: Serve) -> None:
    served = serve("memory", "--max-connections", "2")
    first, second = Raw(served.socket), Raw(served.socket)
    assert first.call(wire.GET_DEFAULT_ADDRESS_SPACES.path)[0] == 200
    assert second.call(wire.GET_DEFAULT_ADDRESS_SPACES.path)[0] == 200
    third = Raw(served.socket)
    assert third.call(wire.GET_DEFAULT_ADDRESS_SPACES.path) == (
        200,
        {"LocalDefaultAddressSpace": "local", "GlobalDefaultAddressSpace": "global"},
    )
    assert first.closed_by_server()  # the longest idle made room
    for connection in (first, second, third):
        connection.close()


def test_slow_drip_requests_expire_whole_and_cannot_lock_others_out(serve: Serve) -> None:
    served = serve("memory", "--max-connections", "2", "--request-timeout", "1")
    request = docker_request(wire.GET_DEFAULT_ADDRESS_SPACES.path)
    drips = [Raw(served.socket), Raw(served.socket)]
    stop = threading.Event()

    def drip() -> None:
        # A byte every 0.2 s: a deadline that restarts with each byte never expires.
        with contextlib.suppress(OSError):
            for index in range(len(request) - 1):
                if stop.wait(0.2):
                    return
                for connection in drips:
                    connection.sock.send(request[index : index + 1])

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        time.sleep(0.3)  # both slots are taken by requests in progress
        waiting = Raw(served.socket, timeout=15)
        assert waiting.call(wire.GET_DEFAULT_ADDRESS_SPACES.path)[0] == 200
        for connection in drips:
            reply = connection.sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), reply
            assert b"request not complete within 1 s" in reply
    finally:
        stop.set()
        dripper.join()
    wait_for(
        lambda: "refused (408): request not complete within 1 s" in served.log(),
        "the refusal's log line",
    )


def test_shutdown_is_prompt_with_a_client_that_pipelines_and_never_reads(
    serve: Serve,
) -> None:
    served = serve()
    greedy = socket.socket(socket.AF_UNIX)
    greedy.settimeout(30)
    greedy.connect(str(served.socket))
    flood = docker_request(wire.GET_DEFAULT_ADDRESS_SPACES.path) * 20_000

    def send() -> None:
        with contextlib.suppress(OSError):
            greedy.sendall(flood)  # blocks once the server stops reading

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(2)  # the server's replies fill the socket and it stops reading
        assert sender.is_alive()  # what the server has not answered, it has not read either
        assert served.alive()
        served.process.send_signal(signal.SIGTERM)
        # 2 s is the aim (it was 297 s); the bound leaves room for a slow, shared machine.
        assert served.process.wait(timeout=15) == 0
    finally:
        greedy.close()
        sender.join()
    assert not served.socket.exists()
    assert "Traceback" not in served.log()


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--max-connections", "0", "must be at least 1, not 0"),
        ("--max-connections", "-1", "must be at least 1, not -1"),
        ("--max-connections", "many", "expected a whole number, not 'many'"),
        ("--driver-threads", "-1", "must be at least 0, not -1"),
        ("--request-timeout", "0", "must be a positive number of seconds, not 0"),
        ("--request-timeout", "nan", "must be a positive number of seconds, not nan"),
        ("--spin", "-0.1", "must be from 0 to 1 seconds, not -0.1"),
        ("--spin", "5", "must be from 0 to 1 seconds, not 5"),
        ("--spin", "soon", "expected a number of seconds, not 'soon'"),
    ],
)
def test_nonsense_limits_are_usage_errors(
    option: str, value: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "memory", option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: ")
    assert f"argument {option}: {complaint}" in error


@pytest.mark.parametrize(("spin", "error"), [(-1, ValueError), (2, ValueError), ("0", TypeError)])
def test_a_nonsense_spin_is_refused_by_the_library(
    short_dir: Path, spin: object, error: type[Exception]
) -> None:
    path = short_dir / "x.sock"
    with pytest.raises(error, match="spin must be"):
        open_unix_server(MemoryIpam(), Capability(), str(path), spin=spin)  # type: ignore[arg-type]
    assert not path.exists()


@pytest.mark.parametrize("limit", [0, -1])
def test_nonsense_limits_are_refused_by_the_library_too(short_dir: Path, limit: int) -> None:
    path = short_dir / "x.sock"
    with pytest.raises(ValueError, match=f"max_connections must be at least 1, not {limit}"):
        open_unix_server(MemoryIpam(), Capability(), str(path), max_connections=limit)
    assert not path.exists()


@pytest.mark.parametrize(("threads", "first"), [("0", "slow"), ("2", "quick")])
def test_driver_threads_let_a_quick_call_pass_a_slow_one(
    serve: Serve, threads: str, first: str, tmp_path: Path
) -> None:
    served = serve("memory", "--driver-threads", threads)
    pool_id = _pool(served)
    slow, quick = Raw(served.socket), Raw(served.socket)
    started = tmp_path / "started"
    options = {"sleep": "1", "started": str(started)}
    slow.sock.sendall(
        docker_request(
            wire.REQUEST_ADDRESS.path, {"PoolID": pool_id, "Address": "", "Options": options}
        )
    )
    wait_for(started.exists, "the slow call to reach the driver")
    quick.sock.sendall(docker_request(wire.GET_DEFAULT_ADDRESS_SPACES.path))
    assert (slow.call_reply()[0], quick.call_reply()[0]) == (200, 200)
    # Which the server finished first is in its log, which it writes as it
    # answers. Not the order the replies are read in: two replies written
    # microseconds apart reach two reading threads in either order.
    names = {wire.REQUEST_ADDRESS.method: "slow", wire.GET_DEFAULT_ADDRESS_SPACES.method: "quick"}

    def finished() -> list[str]:
        return [
            names[word]
            for line in served.log().splitlines()
            for word in line.split()[3:4]
            if word in names
        ]

    wait_for(lambda: len(finished()) == 2, "both calls in the log")
    assert finished()[0] == first
