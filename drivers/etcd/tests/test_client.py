"""The client's HTTP/1.1 against a scripted server: the framings etcd's gateway may answer
with, connections it closes, and replies that are not HTTP."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest
from ipamkit_etcd._client import EtcdClient, EtcdUnavailableError

BODY = (
    b'{"header":{"revision":"7"},"kvs":[{"key":"aw==","value":"dg==",'
    b'"create_revision":"3","mod_revision":"5"}]}'
)
#: After this reply the server closes the connection, saying nothing (an idle timeout).
THEN_CLOSE = b"then close"


def sized(body: bytes = BODY, *headers: bytes) -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


def chunked(body: bytes = BODY) -> bytes:
    half = len(body) // 2
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX: y\r\n\r\n"


class Server:
    """Answers each request on a loopback port with the next scripted reply."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.connections = 0
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self._listener:
            while self.replies:
                connection, _ = self._listener.accept()
                self.connections += 1
                with connection, connection.makefile("rb") as reader:
                    self._answer(connection, reader)

    def _answer(self, connection: socket.socket, reader: io.BufferedReader) -> None:
        while self.replies:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return  # the client closed it
                head += line
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            self.requests.append(head + reader.read(length))
            reply = self.replies.pop(0)
            if reply == THEN_CLOSE:
                connection.sendall(sized())
                return
            connection.sendall(reply)
            if b"Connection: close" in reply:
                return
        # The last reply sent: the connection closes, so no read waits for more.

    def join(self) -> None:
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    servers: list[Server] = []

    class Made(Server):
        def __init__(self, replies: list[bytes]) -> None:
            super().__init__(replies)
            servers.append(self)

    yield Made
    for server in servers:
        server.join()


def client(url: str) -> EtcdClient:
    return EtcdClient([url], timeout=5, retry=0)


def test_sized_and_chunked_replies_on_one_kept_connection(serve: type[Server]) -> None:
    server = serve([sized(), chunked(), sized(BODY, b"Connection: keep-alive")])
    etcd = client(server.url)
    for _ in range(3):
        found, more, revision = etcd.range("k")
        assert (found[0].key, found[0].value, more, revision) == ("k", b"v", False, 7)
    etcd.close()
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:")
    assert request.endswith(b'\r\n\r\n{"key":"aw=="}')


def test_a_connection_the_server_closes_is_not_used_again(serve: type[Server]) -> None:
    # Said (Connection: close), or done without a word, as an idle timeout does: the
    # next request goes on a new connection, within the same attempt.
    server = serve([sized(BODY, b"Connection: close"), THEN_CLOSE, sized()])
    etcd = client(server.url)
    for _ in range(3):
        assert etcd.range("k")[2] == 7
    etcd.close()
    assert server.connections == 3


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}", "cut short"),
        (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\noops", "HTTP 502, not JSON"),
    ],
)
def test_a_reply_that_is_not_etcds_is_a_failed_attempt(
    serve: type[Server], reply: bytes, message: str
) -> None:
    server = serve([reply])
    with pytest.raises(EtcdUnavailableError, match=message):
        client(server.url).range("k")
