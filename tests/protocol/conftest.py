"""Fixtures of the remote tests: a recording fake plugin, and real ``ipamkit serve`` processes."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACTIVATED = b'{"Implements":["IpamDriver"]}\n'


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ipk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Recorded:
    """One request as the fake plugin received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: Which connection it came on (numbered from 0 per fake plugin).
    connection: int


# A reply: status and body, or a function of the request that returns them, or
# raw bytes written as they are before the connection is closed.
Reply = tuple[int, bytes] | Callable[[Recorded], tuple[int, bytes]] | bytes


@dataclass
class FakePlugin:
    """A plugin that records every request and answers from a table of paths."""

    socket: Path
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    connections: itertools.count[int] = field(default_factory=itertools.count)
    #: Close every connection after its reply, without saying so (as uWSGI does).
    close_after_reply: bool = False

    def __post_init__(self) -> None:
        self.replies.setdefault("/Plugin.Activate", (200, ACTIVATED))

    def answer(self, request: Recorded) -> tuple[int, bytes] | bytes:
        self.requests.append(request)
        reply = self.replies.get(request.path, (404, b"404 page not found\n"))
        return reply(request) if callable(reply) else reply

    def calls(self) -> list[str]:
        return [r.path for r in self.requests]


def plugin_handler(plugin: FakePlugin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.number = next(plugin.connections)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = Recorded("POST", self.path, dict(self.headers.items()), body, self.number)
            answer = plugin.answer(request)
            if isinstance(answer, bytes):
                self.wfile.write(answer)
                self.close_connection = True
                return
            status, reply = answer
            self.send_response_only(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            self.close_connection = plugin.close_after_reply

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_plugin(short_dir: Path) -> Iterator[FakePlugin]:
    """A fake plugin listening on ``short_dir/fake.sock``."""
    plugin = FakePlugin(short_dir / "fake.sock")
    server = UnixServer(str(plugin.socket), plugin_handler(plugin))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield plugin
    server.shutdown()
    server.server_close()
    thread.join()


def install_memory_driver(site: Path) -> None:
    """Declare ``memory`` (tests/protocol/memory_driver.py) as installed under ``site``."""
    info = site / "ipamkit_remote_tests-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ipamkit-remote-tests\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[ipamkit.drivers]\nmemory = tests.protocol.memory_driver\n"
    )


class Served:
    """A real ``ipamkit serve`` process; its standard error is collected as it comes."""

    def __init__(
        self, process: subprocess.Popen[str], socket: Path, startup: list[str] | None = None
    ) -> None:
        self.process = process
        self.socket = socket
        #: What it wrote while starting (see start_serve), then the rest as it comes.
        self.stderr: list[str] = list(startup or [])
        self._drain = threading.Thread(target=self._collect, daemon=True)
        self._drain.start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def log(self) -> str:
        """What the server wrote to standard error so far (all of it once it ended)."""
        if self.process.poll() is not None:
            self._drain.join(timeout=5)
        return "".join(self.stderr)

    def stop(self, signal_number: int) -> int:
        self.process.send_signal(signal_number)
        return self.process.wait(timeout=10)

    def alive(self) -> bool:
        return self.process.poll() is None


def start_serve(
    args: list[str], site: Path, ready: Path | None, startup: list[str] | None = None
) -> subprocess.Popen[str]:
    """Run ``ipamkit serve ARGS`` with ``memory`` installed; wait until it listens.

    What the server writes until then is added to ``startup``.
    """
    if not (site / "ipamkit_remote_tests-1.0.dist-info").exists():
        install_memory_driver(site)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    process = subprocess.Popen(
        [sys.executable, "-m", "ipamkit", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    while not lines or "serving" not in lines[-1]:  # warnings may come first
        line = process.stderr.readline()
        if not line:
            process.kill()
            raise AssertionError(f"ipamkit serve did not start: {''.join(lines)}")
        lines.append(line)
    if startup is not None:
        startup.extend(lines)
    if ready is not None:
        deadline = time.monotonic() + 5
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return process


@pytest.fixture
def serve(short_dir: Path) -> Iterator[Callable[..., Served]]:
    """Start ``ipamkit serve NAME --socket short_dir/NAME.sock``; stop it after the test."""
    started: list[Served] = []

    def start(name: str = "memory", *extra: str) -> Served:
        path = short_dir / f"{name}.sock"
        startup: list[str] = []
        args = [name, "--socket", str(path), *extra]
        process = start_serve(args, short_dir / "site", path, startup)
        served = Served(process, path, startup)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.alive():
            served.process.kill()
        served.process.wait()
        served.log()
        if served.process.stdout is not None:
            served.process.stdout.close()


def read_request(conn: socket.socket) -> bytes:
    """Read one request (head and Content-Length body) from ``conn``; b"" at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class RawPlugin:
    """A hostile plugin: each connection is handed to ``handler`` in a thread of its own."""

    path: Path
    handler: Callable[[socket.socket], None]
    #: Requests read by read_request through :meth:`read` (all connections).
    requests: list[bytes] = field(default_factory=list)

    def read(self, conn: socket.socket) -> bytes:
        request = read_request(conn)
        if request:
            self.requests.append(request)
        return request


@pytest.fixture
def raw_plugin(short_dir: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], RawPlugin]]:
    """Start raw plugins on ``short_dir/rawN.sock``; stop them and their threads after the test."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []
    stopping = threading.Event()

    def start(handler: Callable[[socket.socket], None]) -> RawPlugin:
        plugin = RawPlugin(short_dir / f"raw{len(listeners)}.sock", handler)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(plugin.path))
        listener.listen(16)
        listener.settimeout(0.05)
        listeners.append(listener)

        def serve_one(conn: socket.socket) -> None:
            # OSError: the client went away, which hostile plugins live with.
            with conn, contextlib.suppress(OSError):
                plugin.handler(conn)

        def accept() -> None:
            while not stopping.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                conn.settimeout(30)
                worker = threading.Thread(target=serve_one, args=(conn,), daemon=True)
                threads.append(worker)
                worker.start()

        acceptor = threading.Thread(target=accept)
        threads.append(acceptor)
        acceptor.start()
        return plugin

    yield start
    stopping.set()
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(timeout=30)
