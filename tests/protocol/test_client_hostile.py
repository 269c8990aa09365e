"""The protocol client against hostile plugins: deadlines, limits, retries, traces, close."""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ipamkit import errors
from ipamkit.protocol import wire
from ipamkit.protocol.client import MAX_BODY, MAX_HEAD, Endpoint, Exchange, PluginClient
from tests.protocol.conftest import FakePlugin, RawPlugin, UnixServer, plugin_handler

StartRaw = Callable[[Callable[[socket.socket], None]], RawPlugin]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\n"


def _client(where: Path | str, **kwargs: float) -> PluginClient:
    return PluginClient(Endpoint.parse(str(where)), name="hostile", **kwargs)


def test_a_dripped_reply_is_cut_at_the_deadline(raw_plugin: StartRaw) -> None:
    def drip(conn: socket.socket) -> None:
        plugin.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(40):  # 10 s at most, then the connection ends
            conn.sendall(b" ")
            time.sleep(0.25)

    plugin = raw_plugin(drip)
    client = _client(plugin.path, timeout=1)
    started = time.monotonic()
    with pytest.raises(errors.PluginTransportError, match=r'plugin "hostile" at .*: timed out$'):
        client.call(wire.RELEASE_POOL, "p")
    assert time.monotonic() - started < 8  # the timeout, not the 10 s of drip
    client.close()


def test_a_dripped_head_is_cut_at_the_deadline(raw_plugin: StartRaw) -> None:
    def drip(conn: socket.socket) -> None:
        plugin.read(conn)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 40:
            conn.sendall(bytes([byte]))
            time.sleep(0.2)

    plugin = raw_plugin(drip)
    client = _client(plugin.path, timeout=1)
    started = time.monotonic()
    with pytest.raises(errors.PluginTransportError, match="timed out"):
        client.call(wire.RELEASE_POOL, "p")
    assert time.monotonic() - started < 8  # the timeout, not the 11 s of drip
    client.close()


def test_an_endless_header_line_is_refused_early(raw_plugin: StartRaw) -> None:
    sent = []

    def endless(conn: socket.socket) -> None:
        plugin.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(64):  # 4 MiB, unless the client hangs up first
            conn.sendall(b"a" * 65536)
            sent.append(65536)

    plugin = raw_plugin(endless)
    client = _client(plugin.path)
    with pytest.raises(
        errors.PluginTransportError,
        match=rf'plugin "hostile" at .*: reply head larger than {MAX_HEAD} bytes$',
    ):
        client.call(wire.RELEASE_POOL, "p")
    client.close()


def test_a_huge_reply_body_is_refused(raw_plugin: StartRaw) -> None:
    size = 10 * MAX_BODY

    def huge(conn: socket.socket) -> None:
        plugin.read(conn)
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            conn.sendall(b"e" * 65536)

    plugin = raw_plugin(huge)
    client = _client(plugin.path)
    with pytest.raises(
        errors.PluginTransportError, match=rf"reply body larger than {MAX_BODY} bytes$"
    ):
        client.call(wire.RELEASE_POOL, "p")
    client.close()


@pytest.mark.parametrize("status", [200, 500])
def test_a_long_error_text_is_clipped_in_the_message(fake_plugin: FakePlugin, status: int) -> None:
    text = "x" * 200_000
    field = "Error" if status == 200 else "Err"
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (
        status,
        b'{"%s":"%s"}' % (field.encode(), text.encode()),
    )
    client = _client(fake_plugin.socket)
    with pytest.raises(errors.PluginError) as caught:
        client.call(wire.RELEASE_POOL, "p")
    assert len(str(caught.value)) < wire.MAX_MESSAGE + 100
    assert re.search(r"x\.\.\. \(\d{6} more characters\)$", str(caught.value))
    assert caught.value.text == text
    client.close()


def test_a_long_restored_message_is_clipped(fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (
        200,
        b'{"Error":"x","IpamkitError":"NotFoundError","IpamkitMessage":"%s"}' % (b"m" * 50_000),
    )
    client = _client(fake_plugin.socket)
    with pytest.raises(errors.NotFoundError) as caught:
        client.call(wire.RELEASE_POOL, "p")
    assert len(caught.value.message) < wire.MAX_MESSAGE + 100
    client.close()


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"Address":' * 50_000])
def test_deeply_nested_json_is_a_plugin_error(fake_plugin: FakePlugin, body: bytes) -> None:
    fake_plugin.replies["/IpamDriver.RequestAddress"] = (200, body)
    client = _client(fake_plugin.socket)
    with pytest.raises(errors.PluginError) as caught:
        client.call(wire.REQUEST_ADDRESS, "p", "", None)
    assert not isinstance(caught.value, errors.PluginTransportError)
    assert str(caught.value).startswith(
        'IpamDriver.RequestAddress: invalid reply from plugin "hostile" at unix://'
    )
    assert "nested too deeply" in str(caught.value)
    client.close()


def test_informational_replies_are_skipped(raw_plugin: StartRaw) -> None:
    body = b'{"Address":"10.0.0.2/8","Data":{}}\n'

    def early(conn: socket.socket) -> None:
        while plugin.read(conn):
            # Apart, so that each arrives on its own.
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            time.sleep(0.1)
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
            time.sleep(0.1)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    plugin = raw_plugin(early)
    client = _client(plugin.path)
    assert client.call(wire.REQUEST_ADDRESS, "p", "", None) == ("10.0.0.2/8", {})
    assert client.call(wire.REQUEST_ADDRESS, "p", "", None) == ("10.0.0.2/8", {})
    client.close()
    assert len(plugin.requests) == 2


def test_switching_protocols_is_refused(raw_plugin: StartRaw) -> None:
    def upgrade(conn: socket.socket) -> None:
        plugin.read(conn)
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        )

    plugin = raw_plugin(upgrade)
    client = _client(plugin.path)
    with pytest.raises(errors.PluginTransportError, match="unexpected 101 Switching Protocols"):
        client.call(wire.RELEASE_POOL, "p")
    client.close()


def test_a_plugin_that_closes_every_connection_loses_no_call(fake_plugin: FakePlugin) -> None:
    # uWSGI's way: the reply says nothing of closing, then the connection ends.
    fake_plugin.close_after_reply = True
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (200, b"{}\n")
    client = _client(fake_plugin.socket)
    exchanges: list[Exchange] = []
    client.trace = exchanges.append
    for _ in range(500):
        client.call(wire.RELEASE_POOL, "p")
    client.close()
    connections = {r.connection for r in fake_plugin.requests}
    assert len(connections) == len(fake_plugin.requests)  # each on a fresh connection
    resent = [e for e in exchanges if e.resent]
    assert len(exchanges) == 500 + len(resent)
    assert all(e.status is None and e.error for e in resent)


def test_a_dropped_pooled_connection_is_resent_once(raw_plugin: StartRaw) -> None:
    # First connection: one good reply, then the next request is read and the
    # connection dropped without a byte; the fresh connection answers.
    def handler(conn: socket.socket) -> None:
        if not plugin.read(conn):
            return
        conn.sendall(OK)
        if first.is_set():
            while plugin.read(conn):
                conn.sendall(OK)
            return
        first.set()
        plugin.read(conn)  # read, and dropped without an answer

    first = threading.Event()
    plugin = raw_plugin(handler)
    client = _client(plugin.path)
    exchanges: list[Exchange] = []
    client.trace = exchanges.append
    client.call(wire.RELEASE_POOL, "a")
    client.call(wire.RELEASE_POOL, "b")
    client.close()
    assert [r.endswith(b'{"PoolID":"b"}\n') for r in plugin.requests] == [False, True, True]
    assert [(e.status, e.resent) for e in exchanges] == [(200, False), (None, True), (200, False)]
    assert exchanges[1].error == "the plugin closed the connection without a reply"


def test_a_fresh_connection_that_drops_is_not_resent(raw_plugin: StartRaw) -> None:
    def read_and_drop(conn: socket.socket) -> None:
        plugin.read(conn)

    plugin = raw_plugin(read_and_drop)
    client = _client(plugin.path)
    with pytest.raises(errors.PluginTransportError, match="closed the connection without a reply"):
        client.call(wire.RELEASE_POOL, "a")
    client.close()
    assert len(plugin.requests) == 1


def test_a_reply_cut_short_on_a_pooled_connection_is_not_resent(raw_plugin: StartRaw) -> None:
    def handler(conn: socket.socket) -> None:
        plugin.read(conn)
        conn.sendall(OK)
        plugin.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{")

    plugin = raw_plugin(handler)
    client = _client(plugin.path)
    client.call(wire.RELEASE_POOL, "a")
    with pytest.raises(errors.PluginTransportError, match="in the middle of its reply"):
        client.call(wire.RELEASE_POOL, "b")
    client.close()
    assert len(plugin.requests) == 2


def test_a_silent_pooled_connection_times_out_and_is_not_resent(raw_plugin: StartRaw) -> None:
    def handler(conn: socket.socket) -> None:
        plugin.read(conn)
        conn.sendall(OK)
        plugin.read(conn)
        time.sleep(1.5)

    plugin = raw_plugin(handler)
    client = _client(plugin.path, timeout=0.5)
    client.call(wire.RELEASE_POOL, "a")
    with pytest.raises(errors.PluginTransportError, match="timed out"):
        client.call(wire.RELEASE_POOL, "b")
    client.close()
    assert len(plugin.requests) == 2


def _serve_later(path: Path, delay: float, before: Callable[[], None]) -> Callable[[], None]:
    """Serve a fake plugin on ``path`` after ``delay`` (``before`` runs first); return a stopper."""
    plugin = FakePlugin(path, replies={"/IpamDriver.ReleasePool": (200, b"{}\n")})
    server = UnixServer(str(path), plugin_handler(plugin), bind_and_activate=False)
    started = threading.Event()

    def run() -> None:
        time.sleep(delay)
        before()
        server.server_bind()
        server.server_activate()
        started.set()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run)
    thread.start()

    def stop() -> None:
        if started.wait(timeout=10):
            server.shutdown()
        server.server_close()
        thread.join()

    return stop


def test_a_restarting_plugin_that_refuses_connections_is_waited_for(short_dir: Path) -> None:
    path = short_dir / "restart.sock"
    # A socket file nobody listens on: connecting is refused, as while a plugin restarts.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))

    def replace() -> None:
        dead.close()
        path.unlink()

    stop = _serve_later(path, 0.5, replace)
    try:
        client = _client(path, retry=5)
        with pytest.raises(ConnectionRefusedError):
            socket.socket(socket.AF_UNIX).connect(str(path))
        assert client.call(wire.RELEASE_POOL, "p") == ()
        client.close()
    finally:
        stop()


def test_a_plugin_whose_socket_went_away_is_waited_for(fake_plugin: FakePlugin) -> None:
    client = _client(fake_plugin.socket, retry=5)
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (200, b"{}\n")
    client.call(wire.RELEASE_POOL, "p")
    # The plugin restarts elsewhere: the socket moves away, then comes back.
    moved = fake_plugin.socket.with_name("moved.sock")
    fake_plugin.socket.rename(moved)
    restore = threading.Timer(0.5, moved.rename, args=(fake_plugin.socket,))
    restore.start()
    try:
        # The pooled connection still works: close it to force a new one.
        client.close()
        client = _client(fake_plugin.socket, retry=5)
        assert client.call(wire.RELEASE_POOL, "p") == ()
    finally:
        restore.join()
        client.close()


def test_the_retry_budget_is_configurable_and_bounded(short_dir: Path) -> None:
    exchanges: list[Exchange] = []
    client = PluginClient(
        Endpoint.parse(str(short_dir / "nobody.sock")), retry=0.3, trace=exchanges.append
    )
    started = time.monotonic()
    with pytest.raises(errors.PluginTransportError, match=r"retried for 0.3 s"):
        client.call(wire.RELEASE_POOL, "p")
    assert time.monotonic() - started < 10  # the budget given, not the default 15 s
    (exchange,) = exchanges
    assert exchange.status is None
    assert exchange.request == b'{"PoolID":"p"}\n'
    assert exchange.error.startswith("IpamDriver.ReleasePool: cannot reach plugin at unix://")


def test_a_trace_sees_every_exchange_as_it_came(fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (200, b'{"Err":"lost on Docker"}\n')
    fake_plugin.replies["/IpamDriver.ReleaseAddress"] = (500, b'{"Err":"boom"}\n')
    fake_plugin.replies["/IpamDriver.RequestAddress"] = (200, b"not json")
    exchanges: list[Exchange] = []
    client = _client(fake_plugin.socket)
    client.call(wire.RELEASE_POOL, "p")  # before the hook: not traced
    client.trace = exchanges.append
    client.call(wire.RELEASE_POOL, "p")
    with pytest.raises(errors.PluginError, match="boom"):
        client.call(wire.RELEASE_ADDRESS, "p", "10.0.0.1")
    with pytest.raises(errors.PluginError, match="malformed JSON"):
        client.call(wire.REQUEST_ADDRESS, "p", "", None)
    client.trace = None
    client.call(wire.RELEASE_POOL, "p")
    client.close()
    assert [(e.method, e.request, e.status, e.reply, e.error, e.err_field) for e in exchanges] == [
        (
            "IpamDriver.ReleasePool",
            b'{"PoolID":"p"}\n',
            200,
            b'{"Err":"lost on Docker"}\n',
            "",
            True,
        ),
        (
            "IpamDriver.ReleaseAddress",
            b'{"PoolID":"p","Address":"10.0.0.1"}\n',
            500,
            b'{"Err":"boom"}\n',
            "",
            False,
        ),
        (
            "IpamDriver.RequestAddress",
            b'{"PoolID":"p","Address":"","Options":null}\n',
            200,
            b"not json",
            "",
            False,
        ),
    ]
    assert all(e.seconds > 0 and not e.resent for e in exchanges)


def test_a_trace_sees_a_timeout(fake_plugin: FakePlugin) -> None:
    def slow(request: object) -> tuple[int, bytes]:
        time.sleep(0.6)
        return 200, b"{}"

    fake_plugin.replies["/IpamDriver.ReleasePool"] = slow
    exchanges: list[Exchange] = []
    client = PluginClient(
        Endpoint.parse(str(fake_plugin.socket)), timeout=0.2, trace=exchanges.append
    )
    with pytest.raises(errors.PluginTransportError):
        client.call(wire.RELEASE_POOL, "p")
    client.close()
    assert [(e.status, e.error, e.resent) for e in exchanges] == [(None, "timed out", False)]
    time.sleep(0.6)  # let the slow reply go before the fixture stops the server


def test_close_is_idempotent_and_later_calls_fail_clearly(fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (200, b"{}\n")
    client = _client(fake_plugin.socket)
    client.call(wire.RELEASE_POOL, "p")
    client.close()
    client.close()
    with pytest.raises(
        errors.PluginTransportError,
        match=r'^IpamDriver\.ReleasePool: the client of plugin "hostile" at unix://.* is closed$',
    ):
        client.call(wire.RELEASE_POOL, "p")


def test_a_connection_in_use_while_closing_is_closed_after_its_call(
    fake_plugin: FakePlugin,
) -> None:
    gate = threading.Event()

    def held(request: object) -> tuple[int, bytes]:
        gate.wait(timeout=10)
        return 200, b"{}\n"

    fake_plugin.replies["/IpamDriver.ReleasePool"] = held
    client = _client(fake_plugin.socket)
    results: list[tuple[object, ...]] = []
    caller = threading.Thread(target=lambda: results.append(client.call(wire.RELEASE_POOL, "p")))
    caller.start()
    while not fake_plugin.requests:
        time.sleep(0.01)
    client.close()
    gate.set()
    caller.join(timeout=10)
    assert results == [()]
    assert client._idle == []  # nothing left open behind a closed client


@pytest.mark.parametrize(
    "url", ["unix://tmp/x.sock", "unix://localhost/tmp/x.sock", "unix://x.sock"]
)
def test_a_unix_url_with_a_host_part_is_refused(url: str) -> None:
    with pytest.raises(errors.InvalidParameterError, match="unix:///"):
        Endpoint.parse(url)


def test_a_unix_url_with_an_absolute_path_is_the_path() -> None:
    assert Endpoint.parse("unix:///tmp/x.sock") == Endpoint("unix", "/tmp/x.sock")


def test_a_plugin_that_never_reads_cannot_hold_a_large_request(raw_plugin: StartRaw) -> None:
    def deaf(conn: socket.socket) -> None:
        time.sleep(5)

    plugin = raw_plugin(deaf)
    client = _client(plugin.path, timeout=0.5)
    big = {"k": "x" * (8 << 20)}  # far beyond any socket buffer
    started = time.monotonic()
    with pytest.raises(errors.PluginTransportError, match="timed out"):
        client.call(wire.REQUEST_POOL, "lo", "", "", big, False)
    assert time.monotonic() - started < 4.5  # the timeout, not until the plugin goes at 5 s
    client.close()


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def test_plain_tcp_has_the_same_deadline(short_dir: Path) -> None:
    def slow(request: object) -> tuple[int, bytes]:
        time.sleep(1.0)
        return 200, b"{}\n"

    plugin = FakePlugin(short_dir / "unused.sock")
    plugin.replies["/IpamDriver.ReleasePool"] = (200, b"{}\n")
    plugin.replies["/IpamDriver.ReleaseAddress"] = slow
    server = _TCPServer(("127.0.0.1", 0), plugin_handler(plugin))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        client = _client(f"tcp://127.0.0.1:{server.server_address[1]}", timeout=0.3)
        assert client.call(wire.RELEASE_POOL, "p") == ()
        assert client.call(wire.RELEASE_POOL, "p") == ()
        with pytest.raises(errors.PluginTransportError, match="timed out"):
            client.call(wire.RELEASE_ADDRESS, "p", "10.0.0.1")
        assert client.call(wire.RELEASE_POOL, "p") == ()  # on a fresh connection
        client.close()
        assert plugin.requests[0].headers["Host"] == f"127.0.0.1:{server.server_address[1]}"
        assert len({r.connection for r in plugin.requests}) == 2
    finally:
        time.sleep(1.0)  # let the slow reply go
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_resent_request_still_ends_within_retry_and_timeout(raw_plugin: StartRaw) -> None:
    connections = []

    def handler(conn: socket.socket) -> None:
        connections.append(conn)
        if len(connections) == 1:
            plugin.read(conn)
            conn.sendall(OK)
            plugin.read(conn)
            time.sleep(2)  # then dropped without a byte: the request is sent again
        else:
            plugin.read(conn)
            time.sleep(5.5)  # the re-sent request gets no answer in time

    plugin = raw_plugin(handler)
    client = _client(plugin.path, timeout=3, retry=0)
    client.call(wire.RELEASE_POOL, "a")
    started = time.monotonic()
    with pytest.raises(errors.PluginTransportError, match="timed out"):
        client.call(wire.RELEASE_POOL, "b")
    # The call's 3 s deadline, not a fresh one for the re-sent request (5 s).
    assert time.monotonic() - started < 4.2
    assert len(plugin.requests) == 3
    client.close()
