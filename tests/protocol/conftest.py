"""Fixtures of the remote tests: a recording fake plugin, and real ``ipamkit serve`` processes."""

from __future__ import annotations

import itertools
import os
import shutil
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

    def __init__(self, process: subprocess.Popen[str], socket: Path) -> None:
        self.process = process
        self.socket = socket
        self.stderr: list[str] = []
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


def start_serve(args: list[str], site: Path, ready: Path | None) -> subprocess.Popen[str]:
    """Run ``ipamkit serve ARGS`` with ``memory`` installed; wait until it listens."""
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
        process = start_serve([name, "--socket", str(path), *extra], short_dir / "site", path)
        served = Served(process, path)
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
