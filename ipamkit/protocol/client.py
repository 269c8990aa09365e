"""HTTP to a plugin: addresses, a keep-alive connection pool, retries and timeouts.

Not httpx: measured here, httpx spends about 400 µs of client CPU per call and
httpcore beneath it about 170 µs, while a call must fit in 200 µs round trip
(5,000 calls/s) with the server's share included; the standard library's
``http.client`` takes 60 µs. Replies are parsed by httptools (llhttp, the
parser of Node.js and uvicorn) in about 6 µs. Requests are one fixed template
(request line, ``Host``, ``Accept``, ``Content-Length``) written in a single
send, so the server wakes once per call. ``bench/bench_remote.py`` measures httpx
beside this client in every run.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from ipamkit._contract import Capability
from ipamkit.errors import InvalidParameterError, IpamError, PluginError, PluginTransportError
from ipamkit.protocol import wire

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "UNIX_HOST",
    "Endpoint",
    "PluginClient",
    "TLSConfig",
    "activate",
]

#: Seconds to wait for a connection or for each piece of a reply.
DEFAULT_TIMEOUT = 30.0
#: Seconds during which a refused connection is retried (Docker gives up after about 15 s).
DEFAULT_RETRY = 15.0
#: The Host header Docker sends to a plugin on a unix socket.
UNIX_HOST = "plugin.moby.localhost"
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0
#: Idle connections kept per driver; more are closed once their call is done.
_MAX_IDLE = 8
#: Largest reply accepted; Docker's replies are a few hundred bytes.
_MAX_REPLY = 16 << 20


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings of a plugin reached over HTTPS (the ``TLSConfig`` of a ``.json`` spec)."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def context(self) -> ssl.SSLContext:
        """Build the client context.

        Unlike Docker, an empty ``CAFile`` does not turn verification off: the
        system's CAs are used, and only ``InsecureSkipVerify`` skips it.
        """
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class Endpoint:
    """Where a plugin listens: a unix socket path, or an HTTP(S) host and port."""

    scheme: str
    #: The socket path for ``unix``, else ``host:port``.
    address: str
    tls: TLSConfig | None = None

    @classmethod
    def parse(cls, url: str, tls: TLSConfig | None = None) -> Endpoint:
        """Parse a socket path, ``unix://``, ``tcp://``, ``http://`` or ``https://`` URL.

        As in Docker, every scheme but ``https`` is spoken as plain HTTP.
        """
        if url.startswith("/"):
            return cls("unix", url)
        if "://" not in url:
            # Checked here: urlsplit reads "127.0.0.1:80" as a scheme before Python 3.11.
            raise InvalidParameterError(f"Unknown protocol: plugin address {url!r} has no scheme")
        parts = urlsplit(url)
        if parts.scheme == "unix" and parts.path:
            return cls("unix", parts.path)
        if parts.scheme in ("tcp", "http", "https") and parts.hostname:
            try:
                port = parts.port
            except ValueError:
                raise InvalidParameterError(f"invalid port in plugin address {url!r}") from None
            default = 443 if parts.scheme == "https" else 80
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            return cls(
                "https" if parts.scheme == "https" else "http",
                f"{host}:{port or default}",
                tls if parts.scheme == "https" else None,
            )
        raise InvalidParameterError(
            f"unsupported plugin address {url!r}: expected a socket path or a "
            "unix://, tcp://, http:// or https:// URL"
        )

    def host_and_port(self) -> tuple[str, int]:
        """The host (without brackets) and port of a TCP endpoint."""
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)

    def __str__(self) -> str:
        return (
            f"unix://{self.address}" if self.scheme == "unix" else f"{self.scheme}://{self.address}"
        )


class _ProtocolError(Exception):
    """The plugin's reply is not HTTP this client can read."""


class _Reply:
    """Collects one reply as httptools parses it."""

    __slots__ = ("body", "complete", "extra", "keep_alive", "parser", "size", "sized")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.keep_alive = False
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False
        self.extra = False
        #: False when the body ends only where the connection does.
        self.sized = False

    def on_message_begin(self) -> None:
        self.extra = self.complete  # a second reply to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.sized = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > _MAX_REPLY:
            raise _ProtocolError(f"reply larger than {_MAX_REPLY} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        # The parser forgets the connection's fate once the message is over.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


class _Connection:
    """One keep-alive connection: a socket, and the fixed head of each request sent on it."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self._head = (
            f"HTTP/1.1\r\nHost: {host}\r\nAccept: {wire.MEDIA_TYPE}\r\nContent-Length: "
        ).encode()

    def exchange(self, path: str, body: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return the reply's status and body, and whether it may be reused."""
        self.sock.sendall(b"POST %s %s%d\r\n\r\n%s" % (path.encode(), self._head, len(body), body))
        reply = _Reply()
        try:
            while not reply.complete:
                data = self.sock.recv(65536)
                if not data:
                    if reply.body and not reply.sized:
                        break  # an old-style body that ends with the connection
                    raise _ProtocolError("the plugin closed the connection without a reply")
                reply.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise _ProtocolError(f"invalid HTTP reply: {exc}") from None
        reusable = reply.keep_alive and not reply.extra
        return reply.parser.get_status_code(), b"".join(reply.body), reusable

    def close(self) -> None:
        self.sock.close()


def _is_stale(connection: _Connection) -> bool:
    # An idle keep-alive connection has nothing to read; if it is readable the
    # server closed it (or broke the protocol), and a request sent on it might
    # be lost after the server received it, which must never be retried.
    if hasattr(select, "poll"):  # select() cannot watch descriptors above 1023
        poller = select.poll()
        poller.register(connection.sock, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


class PluginClient:
    """Calls one plugin's methods over a pool of keep-alive connections.

    A connection that cannot be made is retried with a doubling back-off for
    ``retry`` seconds; once a request has been sent it is never repeated, since
    the plugin may have acted on it. ``timeout`` bounds connecting and each
    wait for reply data, so no call hangs forever.
    """

    def __init__(
        self, endpoint: Endpoint, *, timeout: float = DEFAULT_TIMEOUT, retry: float = DEFAULT_RETRY
    ) -> None:
        if timeout <= 0:
            raise InvalidParameterError(f"timeout must be positive, not {timeout}")
        if retry < 0:
            raise InvalidParameterError(f"retry must not be negative, not {retry}")
        self.endpoint = endpoint
        self._timeout = timeout
        self._retry = retry
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._context = (
            (endpoint.tls or TLSConfig()).context() if endpoint.scheme == "https" else None
        )

    def call(self, message: wire.Message, *values: object) -> tuple[Any, ...]:
        """Post ``message`` with ``values`` and return the reply's fields.

        Raises the error the plugin reports (see :meth:`ipamkit.wire.Message.read_reply`),
        :class:`~ipamkit.errors.PluginError` for a reply that breaks the protocol and
        :class:`~ipamkit.errors.PluginTransportError` when the plugin cannot be reached.
        """
        status, reply = self._post(message.method, message.path, message.encode_request(*values))
        try:
            return message.read_reply(reply, status=status)
        except wire.WireError as exc:
            raise PluginError(
                f"{message.method}: invalid reply from plugin at {self.endpoint}: {exc}",
                method=message.method,
                text=reply.decode(errors="replace"),
            ) from None

    def close(self) -> None:
        """Close every idle connection; later calls fail."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _post(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        connection = self._connected(method)
        try:
            status, reply, reusable = connection.exchange(path, body)
        except (OSError, _ProtocolError) as exc:
            connection.close()
            raise PluginTransportError(
                f"{method}: plugin at {self.endpoint} failed to answer: {_describe(exc)}",
                method=method,
                text=_describe(exc),
            ) from None
        if reusable:
            self._release(connection)
        else:
            connection.close()
        return status, reply

    def _connected(self, method: str) -> _Connection:
        connection = self._reuse()
        if connection is not None:
            return connection
        deadline = time.monotonic() + self._retry
        backoff = _FIRST_BACKOFF
        while True:
            try:
                return self._connect()
            except ssl.SSLError as exc:
                raise self._unreachable(method, exc) from None
            except OSError as exc:
                if time.monotonic() + backoff > deadline:
                    raise self._unreachable(method, exc) from None
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _unreachable(self, method: str, exc: BaseException) -> PluginTransportError:
        waited = f" (retried for {self._retry:g} s)" if self._retry else ""
        return PluginTransportError(
            f"{method}: cannot reach plugin at {self.endpoint}{waited}: {_describe(exc)}",
            method=method,
            text=_describe(exc),
        )

    def _connect(self) -> _Connection:
        endpoint = self.endpoint
        if endpoint.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._timeout)
                sock.connect(endpoint.address)
            except BaseException:
                sock.close()
                raise
            return _Connection(sock, UNIX_HOST)
        host, port = endpoint.host_and_port()
        sock = socket.create_connection((host, port), timeout=self._timeout)
        if self._context is not None:
            try:
                sock = self._context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return _Connection(sock, endpoint.address)

    def _reuse(self) -> _Connection | None:
        with self._lock:
            if self._closed:
                raise PluginTransportError(f"the connection to plugin at {self.endpoint} is closed")
            while self._idle:
                connection = self._idle.pop()
                if not _is_stale(connection):
                    return connection
                connection.close()
        return None

    def _release(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


def activate(client: PluginClient, name: str) -> Capability:
    """Activate the plugin as an IPAM driver and return its capabilities.

    As Docker: the plugin must list ``IpamDriver`` in ``Implements``, and a plugin
    that does not answer ``GetCapabilities`` has none.
    """
    (implements,) = client.call(wire.ACTIVATE)
    if wire.IMPLEMENTS not in implements:
        raise PluginError(
            "Plugin does not implement the requested driver: "
            f'plugin="{name}", requested implementation="{wire.IMPLEMENTS}"',
            method=wire.ACTIVATE.method,
            text=", ".join(implements),
        )
    try:
        mac, replay = client.call(wire.GET_CAPABILITIES)
    except IpamError:
        return Capability()
    return Capability(requires_mac_address=mac, requires_request_replay=replay)
