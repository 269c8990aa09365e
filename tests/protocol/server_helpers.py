"""Raw HTTP to a served plugin, as Docker's daemon sends it: the server's tests' client."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from ipamkit.protocol import wire

DOCKER_HEAD = (
    b"POST %s HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\n"
    b"Content-Length: %d\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n"
)


def docker_request(path: str, fields: dict[str, object] | None = None, extra: bytes = b"") -> bytes:
    """A request exactly as Docker's daemon writes it, with ``extra`` header lines."""
    body = b"" if fields is None else wire.encode(fields)
    return DOCKER_HEAD % (path.encode(), len(body)) + extra + b"\r\n" + body


def read_reply(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, object]]:
    """Read one reply (status, JSON body) from ``sock``; ``buffer`` keeps what follows it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server after {bytes(buffer)!r}")
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    length = int(headers[b"Content-Length"])
    start = len(head) + 4
    while len(buffer) < start + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server in the middle of a reply")
        buffer += chunk
    body = bytes(buffer[start : start + length])
    del buffer[: start + length]
    return int(lines[0].split(b" ")[1]), json.loads(body)


class Raw:
    """One keep-alive connection to a unix or TCP socket."""

    def __init__(self, where: Path | tuple[str, int], timeout: float = 10) -> None:
        family = socket.AF_UNIX if isinstance(where, Path) else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.settimeout(timeout)
        self.sock.connect(str(where) if isinstance(where, Path) else where)
        self.buffer = bytearray()

    def call(
        self, path: str, fields: dict[str, object] | None = None, extra: bytes = b""
    ) -> tuple[int, dict[str, object]]:
        self.sock.sendall(docker_request(path, fields, extra))
        return self.call_reply()

    def call_reply(self) -> tuple[int, dict[str, object]]:
        """The reply to a request sent already."""
        return read_reply(self.sock, self.buffer)

    def closed_by_server(self) -> bool:
        """Whether the server has closed the connection (waits up to the socket's timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def wait_for(condition: object, what: str, timeout: float = 10) -> None:
    """Poll ``condition()`` until true; fail after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def threads_of(pid: int) -> int:
    """The number of threads of process ``pid`` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")
