"""A small etcd v3 client over the JSON gateway, on the standard library.

Why this client. The Python etcd clients are thin: ``etcd3``, the only widely
used one, fails to import with current protobuf; the working gRPC and asyncio
ones have few users and some take a single endpoint only. etcd answers the v3
API as JSON on its client port (``/v3/kv/txn``, ``/v3/kv/range``), so a client
needs only HTTP, and this one needs three calls (range, txn, authenticate).
How it speaks HTTP was chosen by measurement: etcd 3.4, one member on
loopback, one caller doing create-if-absent transactions, on the project's 2
shared cores (three runs at load averages 3 to 10, so the rates are noisy; the
CPU figures less so):

===================  =============  ===================
HTTP client          txns/s         client CPU per txn
===================  =============  ===================
httpx                289-499        743-908 µs
urllib3              398-513        385-692 µs
http.client          631-781        200-279 µs
this module          766-1,139      90-143 µs
===================  =============  ===================

The client's CPU comes out of the cores etcd runs on, so it counts. The
libraries spend it on their generality (urllib3's and ``http.client``'s header
parsing is the ``email`` package's; both send headers and body in two writes,
so two packets for etcd to read). etcd's gateway is a Go HTTP server that
answers with ``Content-Length`` or chunked bodies, and that is all this module
reads (``_Connection``): each request in one write, the reply's status line and
the few headers that frame it, over kept-alive connections, one pool per member.
``bench/bench_etcd.py`` prints every row of the table in every run.

Failover. Every request has a short deadline (``timeout``) and is re-sent to
the next endpoint when it fails, with a short back-off, until the retry budget
(``retry`` seconds) is spent. A member that died refuses connections at once;
one without a leader answers "no leader" at once (every request asks it to);
one still following a dead leader holds the request until the deadline.
Either way the caller moves on, and its pause is the election and at most
one deadline more: with the default 0.5 s deadline, killing the leader of 3
members under 4 hosts' load paused each host 1.03-2.07 s while the election
took 1.01-1.65 s (ten runs; ``tests/test_hosts.py`` and the benchmark print
it). Re-sending is only
correct because every write this package makes is a guarded transaction
(create-if-absent, or a compare on a revision or value) whose outcome the
caller reads back: a request whose answer was lost may have landed, and the
caller tells by the owner and nonce it wrote (see ``_driver``).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ipamkit.errors import InvalidParameterError, UnavailableError

__all__ = [
    "EtcdClient",
    "EtcdUnavailableError",
    "KeyValue",
    "TLSFiles",
    "TxnResult",
    "absent",
    "b64",
    "created_at",
    "delete",
    "get",
    "holds",
    "modified_at",
    "prefix_end",
    "put",
]

_FIRST_BACKOFF = 0.02
_MAX_BACKOFF = 0.1
# gRPC metadata (the gateway passes ``Grpc-Metadata-*`` headers on) that makes
# a member without a leader answer "no leader" at once instead of holding the
# request until its deadline: during an election a caller moves on and retries
# within a back-off, so its pause ends about when the election does.
_FAIL_FAST = b"\r\nGrpc-Metadata-Hasleader: true"
# gRPC codes etcd answers with while it cannot serve (no leader, leader
# changed, timed out, too many requests): worth another endpoint.
_RETRY_CODES = frozenset({1, 4, 8, 10, 13, 14})
_UNAUTHENTICATED = 16
_NO_USER = "user name is empty"
# Bounds on a reply's head: a line, and the count of header lines.
_MAX_LINE = 65536
_MAX_HEADERS = 100


class EtcdUnavailableError(UnavailableError):
    """etcd did not answer within the retry budget: nothing was granted or changed
    that the caller was told of (a write may have landed; a retry finds it)."""

    default_message = "etcd is unavailable"


@dataclass(frozen=True)
class TLSFiles:
    """Files for TLS to etcd: the CA that signed its certificate, and a client certificate."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd reports it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class TxnResult:
    """A transaction's outcome: which branch ran, its range results, the revision."""

    succeeded: bool
    #: For each operation of the branch that ran, the keys a range returned (else empty).
    ranges: list[list[KeyValue]]
    revision: int


def b64(data: str | bytes) -> str:
    """Encode a key or value for the JSON gateway."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        base64.b64decode(item["key"]).decode(),
        base64.b64decode(item.get("value", "")),
        int(item.get("create_revision", 0)),
        int(item.get("mod_revision", 0)),
    )


class _Refused(Exception):
    """One attempt failed in a way another endpoint (or a later try) may not."""


class _Dropped(ConnectionError):
    """The member closed the connection before replying (an idle one it timed out)."""


class _Connection:
    """One HTTP/1.1 connection to a member: each request in one write, its reply read back.

    Only what etcd's gateway (Go's HTTP server) answers is read: a status line,
    headers, and a body by ``Content-Length``, chunked, or up to the close.
    """

    def __init__(
        self, address: tuple[str, int], timeout: float, context: ssl.SSLContext | None
    ) -> None:
        sock = socket.create_connection(address, timeout=timeout)
        try:
            # The request goes in one write: nothing waits on Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=address[0])
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send ``request``; return the reply's status and body, and whether the
        connection may carry another request."""
        self._sock.sendall(request)
        line = self._reader.readline(_MAX_LINE)
        if not line:
            raise _Dropped("the connection was closed before a reply")
        version, _, rest = line.partition(b" ")
        if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
            raise ValueError(f"not an HTTP reply: {line[:100]!r}")
        status = int(rest[:3])
        keep = version == b"HTTP/1.1"
        length, chunked = -1, False
        for _ in range(_MAX_HEADERS):
            line = self._reader.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n"):
                break
            if not line.endswith(b"\n"):
                raise ValueError("the reply ended, or ran too long, in its headers")
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = keep and value.strip().lower() != b"close"
        else:
            raise ValueError(f"more than {_MAX_HEADERS} header lines in the reply")
        if chunked:
            return status, self._chunks(), keep
        if length >= 0:
            return status, self._exactly(length), keep
        return status, self._reader.read(), False

    def _exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:
            raise _Dropped(f"the reply was cut short ({len(data)} of {size} bytes)")
        return data

    def _chunks(self) -> bytes:
        parts = []
        while True:
            size = int(self._reader.readline(_MAX_LINE).split(b";", 1)[0], 16)
            if size == 0:
                break
            parts.append(self._exactly(size))
            if self._reader.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise ValueError("a chunk of the reply does not end its line")
        for _ in range(_MAX_HEADERS):  # trailers, up to the blank line
            if self._reader.readline(_MAX_LINE) in (b"\r\n", b"\n", b""):
                return b"".join(parts)
        raise ValueError(f"more than {_MAX_HEADERS} trailer lines in the reply")


class _Endpoint:
    """One member: its URL, and the idle connections to it (at most ``size`` kept)."""

    def __init__(self, url: str, timeout: float, context: ssl.SSLContext | None, size: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidParameterError(
                f"etcd endpoint {url!r} must be an http:// or https:// URL with a host"
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 2379)
        except ValueError:
            raise InvalidParameterError(f"etcd endpoint {url!r} has an invalid port") from None
        if parts.path not in ("", "/"):
            raise InvalidParameterError(f"etcd endpoint {url!r} must not have a path")
        self.url = url
        self._address = (parts.hostname, port)
        self._timeout = timeout
        self._context = context if parts.scheme == "https" else None
        self._size = size
        try:
            self._head = b"HTTP/1.1\r\nHost: " + parts.netloc.encode("idna") + _FAIL_FAST
        except UnicodeError:
            raise InvalidParameterError(f"etcd endpoint {url!r} has an invalid host") from None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, path: bytes, body: bytes, authorization: str = "") -> bytes:
        """The bytes of a POST of the JSON ``body`` to ``path``."""
        auth = b"\r\nAuthorization: " + authorization.encode() if authorization else b""
        return b"".join(
            (
                b"POST ",
                path,
                b" ",
                self._head,
                auth,
                b"\r\nContent-Type: application/json\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` on an idle connection or a new one; return the reply.

        An idle connection the member closed meanwhile fails at once: the
        request is sent again on a new one (every request is safe to repeat).
        """
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._exchange(connection, request)
            except ConnectionError:
                pass
        return self._exchange(_Connection(self._address, self._timeout, self._context), request)

    def _exchange(self, connection: _Connection, request: bytes) -> tuple[int, bytes]:
        try:
            status, data, keep = connection.exchange(request)
        except BaseException:
            connection.close()
            raise
        with self._lock:
            if keep and not self._closed and len(self._idle) < self._size:
                self._idle.append(connection)
                return status, data
        connection.close()
        return status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for connection in idle:
            connection.close()


class EtcdClient:
    """Range reads and transactions against a list of etcd endpoints.

    Thread-safe: connections are pooled per endpoint, and the endpoint that
    answered last is tried first by every thread.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float,
        retry: float,
        tls: TLSFiles | None = None,
        user: str = "",
        password: str = "",
        pool_size: int = 16,
    ) -> None:
        if not endpoints:
            raise InvalidParameterError("etcd: at least one endpoint is needed")
        self._retry = retry
        self._user = user
        self._password = password
        context = _tls_context(tls) if any(u.startswith("https:") for u in endpoints) else None
        self._endpoints = [_Endpoint(url, timeout, context, pool_size) for url in endpoints]
        self.endpoints = tuple(endpoints)
        self._current = 0
        self._tokens: dict[int, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close every connection."""
        for endpoint in self._endpoints:
            endpoint.close()

    # -- the three calls -----------------------------------------------------------

    def range(
        self, key: str, range_end: str = "", *, limit: int = 0, keys_only: bool = False
    ) -> tuple[list[KeyValue], bool, int]:
        """Read ``[key, range_end)`` (or the one key); return the keys, whether more
        remain past ``limit``, and the store's revision."""
        body: dict[str, Any] = {"key": b64(key)}
        if range_end:
            body["range_end"] = b64(range_end)
        if limit:
            body["limit"] = limit
        if keys_only:
            body["keys_only"] = True
        reply = self._post(b"/v3/kv/range", body)
        kvs = [_kv(item) for item in reply.get("kvs", ())]
        return kvs, bool(reply.get("more")), int(reply["header"]["revision"])

    def range_all(self, key: str, range_end: str, *, keys_only: bool = False) -> list[KeyValue]:
        """Read every key of ``[key, range_end)``, page by page (a reply stays small)."""
        found: list[KeyValue] = []
        start = key
        while True:
            page, more, _ = self.range(start, range_end, limit=2000, keys_only=keys_only)
            found.extend(page)
            if not more or not page:
                return found
            start = page[-1].key + "\0"

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: Sequence[dict[str, Any]] = (),
    ) -> TxnResult:
        """Run one transaction (operations built by :func:`put`, :func:`delete`, :func:`get`)."""
        body = {"compare": compare, "success": success, "failure": list(failure)}
        reply = self._post(b"/v3/kv/txn", body)
        ranges = [
            [_kv(item) for item in response.get("response_range", {}).get("kvs", ())]
            for response in reply.get("responses", ())
        ]
        return TxnResult(bool(reply.get("succeeded")), ranges, int(reply["header"]["revision"]))

    # -- sending -------------------------------------------------------------------

    def _post(self, path: bytes, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        deadline = time.monotonic() + self._retry
        backoff = _FIRST_BACKOFF
        problems: list[str] = []
        start = self._current
        attempt = 0
        while True:
            index = (start + attempt) % len(self._endpoints)
            try:
                reply = self._attempt(index, path, data)
            except _Refused as exc:
                problems.append(f"{self.endpoints[index]}: {exc}")
            else:
                if index != start:
                    self._current = index
                return reply
            attempt += 1
            if attempt % len(self._endpoints) == 0:  # every endpoint tried once: wait a little
                if time.monotonic() + backoff > deadline:
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            elif time.monotonic() > deadline:
                break
        raise EtcdUnavailableError(
            f"etcd did not answer within {self._retry:g} s; last errors: "
            + "; ".join(problems[-len(self._endpoints) :])
        )

    def _send(self, index: int, path: bytes, data: bytes, token: str = "") -> tuple[int, bytes]:
        endpoint = self._endpoints[index]
        try:
            return endpoint.exchange(endpoint.request(path, data, token))
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            raise _Refused(f"{type(exc).__name__}: {exc}") from None

    def _attempt(self, index: int, path: bytes, data: bytes) -> dict[str, Any]:
        token = self._token(index) if self._user else ""
        status, raw = self._send(index, path, data, token)
        try:
            reply = json.loads(raw)
        except ValueError:
            raise _Refused(f"HTTP {status}, not JSON: {raw[:200]!r}") from None
        if status == 200 and "error" not in reply:
            return reply  # type: ignore[no-any-return]
        message = str(reply.get("message") or reply.get("error") or reply)
        code = reply.get("code")
        if _NO_USER in message and not self._user:
            raise InvalidParameterError(
                f"etcd at {self.endpoints[index]} requires authentication: "
                "give the options user and password"
            )
        if code == _UNAUTHENTICATED or _NO_USER in message:
            # Simple tokens are per member and die with it: get another.
            with self._lock:
                self._tokens.pop(index, None)
            raise _Refused(message)
        if code in _RETRY_CODES or status >= 500:
            raise _Refused(message)
        raise InvalidParameterError(f"etcd refused the request: {message}")

    def _token(self, index: int) -> str:
        with self._lock:
            token = self._tokens.get(index)
        if token is not None:
            return token
        body = json.dumps({"name": self._user, "password": self._password}).encode()
        status, raw = self._send(index, b"/v3/auth/authenticate", body)
        try:
            reply = json.loads(raw)
        except ValueError:
            raise _Refused(f"cannot authenticate: HTTP {status}, not JSON: {raw[:200]!r}") from None
        token = reply.get("token")
        if not isinstance(token, str) or not token or not token.isprintable():
            message = reply.get("message") or reply.get("error") or reply
            if status < 500:
                raise InvalidParameterError(f"etcd refused user {self._user!r}: {message}")
            raise _Refused(f"cannot authenticate: {message}")
        with self._lock:
            self._tokens[index] = token
        return token


def _tls_context(tls: TLSFiles | None) -> ssl.SSLContext:
    """The context of every https:// endpoint: the members' CA (else the system's),
    and the client certificate if any."""
    files = tls or TLSFiles()
    try:
        context = ssl.create_default_context(cafile=files.ca_file or None)
        if files.cert_file:
            context.load_cert_chain(files.cert_file, files.key_file or None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise InvalidParameterError(f"etcd TLS files {files}: {exc}") from None
    return context


# -- operations and comparisons, in the gateway's JSON ---------------------------------


def put(key: str, value: bytes) -> dict[str, Any]:
    """A put of ``key``."""
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def delete(key: str, range_end: str = "") -> dict[str, Any]:
    """A delete of ``key``, or of ``[key, range_end)``."""
    request = {"key": b64(key)}
    if range_end:
        request["range_end"] = b64(range_end)
    return {"request_delete_range": request}


def get(key: str, range_end: str = "", *, keys_only: bool = False) -> dict[str, Any]:
    """A read of ``key``, or of ``[key, range_end)`` (at most a few thousand keys: no paging)."""
    request: dict[str, Any] = {"key": b64(key)}
    if range_end:
        request["range_end"] = b64(range_end)
    if keys_only:
        request["keys_only"] = True
    return {"request_range": request}


def absent(key: str) -> dict[str, Any]:
    """``key`` does not exist."""
    return {"key": b64(key), "target": "CREATE", "create_revision": "0"}


def created_at(key: str, revision: int) -> dict[str, Any]:
    """``key`` exists since ``revision`` (this incarnation of it, not a later one)."""
    return {"key": b64(key), "target": "CREATE", "create_revision": str(revision)}


def modified_at(key: str, revision: int) -> dict[str, Any]:
    """``key`` was last changed at ``revision`` (0: it does not exist)."""
    return {"key": b64(key), "target": "MOD", "mod_revision": str(revision)}


def holds(key: str, value: bytes) -> dict[str, Any]:
    """``key`` holds exactly ``value``."""
    return {"key": b64(key), "target": "VALUE", "value": b64(value)}


def prefix_end(prefix: str) -> str:
    """The end of the range of every key that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
