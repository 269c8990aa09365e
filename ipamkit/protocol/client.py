"""HTTP to a plugin: addresses, a keep-alive connection pool, retries and deadlines.

Not httpx: measured here, httpx spends about 400 µs of client CPU per call and
httpcore beneath it about 170 µs, while a call must fit in about 65 µs round
trip (15,000 calls/s) with the server's share included; the standard library's
``http.client`` takes 60 µs. Replies are parsed by httptools (llhttp, the
parser of Node.js and uvicorn), one parser per connection, in about 4 µs.
Requests are one fixed template (request line, ``Host``, ``Accept``,
``Content-Length``) written in a single send, so the server wakes once per
call. ``bench/bench_remote.py`` measures httpx beside this client in every
run: about 20 µs of client CPU per call against httpx's 340 (load average 4).

What is retried, and why that cannot hand one address to two holders, is in
``docs/remote.rst`` ("Failures, retries and deadlines"): a connection that
cannot be made is retried for ``retry`` seconds (nothing was sent), and a
request whose reused keep-alive connection turns out closed before a single
byte of reply is sent once more on a fresh connection.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from ipamkit._contract import Capability
from ipamkit.errors import InvalidParameterError, IpamError, PluginError, PluginTransportError
from ipamkit.protocol import wire
from ipamkit.protocol._spin import SPIN, Spin, check_spin, receive

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_SPIN",
    "DEFAULT_TIMEOUT",
    "MAX_BODY",
    "MAX_HEAD",
    "UNIX_HOST",
    "Endpoint",
    "Exchange",
    "PluginClient",
    "TLSConfig",
    "Trace",
    "activate",
]

#: Seconds a call may take once connected: the request and its whole reply.
DEFAULT_TIMEOUT = 30.0
#: Seconds during which a connection that cannot be made is retried (Docker: about 15 s).
DEFAULT_RETRY = 15.0
#: Seconds a call polls for its reply before it sleeps (see :mod:`ipamkit.protocol._spin`).
DEFAULT_SPIN = SPIN
#: The Host header Docker sends to a plugin on a unix socket.
UNIX_HOST = "plugin.moby.localhost"
#: Largest reply head (status line and headers) accepted, in bytes.
MAX_HEAD = 64 << 10
#: Largest reply body accepted, in bytes; Docker's replies are a few hundred bytes.
MAX_BODY = 1 << 20
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0
#: Idle connections kept per driver; more are closed once their call is done.
_MAX_IDLE = 8
_RECV_SIZE = 65536
# How a peer that closed its end shows on a socket: none of these says the
# request was read, only that no reply came.
_CLOSED = (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ESHUTDOWN)


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

        As in Docker, every scheme but ``https`` is spoken as plain HTTP. A
        ``unix://`` URL needs an absolute path (three slashes): Docker reads
        ``unix://tmp/x.sock`` as the socket ``tmp`` in its working directory,
        which nobody means, so it is refused.
        """
        if url.startswith("/"):
            return cls("unix", url)
        if "://" not in url:
            # Checked here: urlsplit reads "127.0.0.1:80" as a scheme before Python 3.11.
            raise InvalidParameterError(f"Unknown protocol: plugin address {url!r} has no scheme")
        parts = urlsplit(url)
        if parts.scheme == "unix" and parts.netloc:
            raise InvalidParameterError(
                f"invalid plugin address {url!r}: a unix socket URL takes an absolute path, "
                f"as in unix:///{parts.netloc}{parts.path} (Docker would read "
                f"{parts.netloc!r} as the socket's path)"
            )
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


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request sent to a plugin and what came back, as a trace hook receives it."""

    #: The plugin method, such as ``IpamDriver.RequestAddress``.
    method: str
    #: The request body exactly as sent.
    request: bytes
    #: The HTTP status of the complete reply; None when no complete reply was read.
    status: int | None
    #: The reply body; empty when ``status`` is None.
    reply: bytes
    #: When ``status`` is None, why: the transport error's text.
    error: str
    #: A 200 reply with a non-empty ``Err`` and no ``Error``: Docker (and this
    #: client) take it as success, so the plugin's error is lost.
    err_field: bool
    #: The request failed on a reused connection before any reply and is sent
    #: again on a fresh one: another exchange of the same call follows.
    resent: bool
    #: Wall time of this attempt, in seconds.
    seconds: float


#: A trace hook: called with every exchange, in the calling thread.
Trace = Callable[[Exchange], None]


class _Failure(Exception):
    """An exchange failed below the protocol: no complete, readable HTTP reply."""

    def __init__(self, text: str, *, replied: bool, closed: bool) -> None:
        super().__init__(text)
        #: Some bytes of a reply arrived.
        self.replied = replied
        #: The peer closed the connection (as opposed to a timeout or garbage).
        self.closed = closed


class _Reply:
    """Collects the replies of one connection as httptools parses them; 1xx replies are skipped.

    One parser serves the connection's replies, as httptools is ready for the
    next message once one is complete; a connection whose reply was not is
    closed, its parser with it.
    """

    __slots__ = ("body", "complete", "extra", "head_done", "keep_alive", "parser", "size", "sized")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.expect()

    def expect(self) -> None:
        """Be ready for the reply to the next request."""
        self.keep_alive = False
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False
        self.extra = False
        self.head_done = False
        #: False when the body ends only where the connection does.
        self.sized = False

    def on_message_begin(self) -> None:
        self.extra = self.complete  # a second reply to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.sized = True

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        # Counted here, judged after feed_data: an exception raised inside a
        # callback reaches the caller only wrapped by httptools.
        self.size += len(body)
        if self.size <= MAX_BODY:
            self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # 100 Continue, 103 Early Hints...: the real reply follows.
            self.head_done = self.sized = False
            return
        # The parser forgets the connection's fate once the message is over.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


class _Connection:
    """One keep-alive connection: a socket, and the parser of its replies.

    The socket blocks, with the kernel's receive timeout (``SO_RCVTIMEO``) and
    sends that never block (``MSG_DONTWAIT``, then a wait only when the buffer
    is full): a call costs a send and a receive, where Python's own socket
    timeouts add a ``poll`` before each.
    """

    def __init__(self, sock: socket.socket, wait: float, spin: float) -> None:
        self.sock = sock
        self._spin = Spin(spin)
        self._reply = _Reply()
        #: Whether a reply was read on it already (a pooled connection).
        self.reused = False
        #: How long one receive may block, in seconds.
        self.wait = -1.0
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock, select.POLLIN)
        self._prepare()
        self.limit(wait)

    def _prepare(self) -> None:
        self.sock.settimeout(None)

    def limit(self, wait: float) -> None:
        """Let each receive block at most ``wait`` seconds."""
        if wait != self.wait:
            seconds, fraction = divmod(max(wait, 0.0), 1.0)
            # A zero timeval means "no timeout": never ask for less than 1 µs.
            micro = max(int(fraction * 1e6), 0 if seconds else 1)
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(int(seconds), micro)
            )
            self.wait = wait

    def _send(self, data: bytes, deadline: float) -> None:
        try:
            sent = self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self._send_slowly(memoryview(data)[sent:], deadline)

    def _send_slowly(self, data: memoryview, deadline: float) -> None:
        """Send what a full socket buffer held back, waiting for room until ``deadline``."""
        writable = select.poll()
        writable.register(self.sock, select.POLLOUT)
        while data:
            left = deadline - time.monotonic()
            if left <= 0 or not writable.poll(left * 1000):
                raise TimeoutError("timed out")
            with contextlib.suppress(BlockingIOError):  # room for nothing after all
                data = data[self.sock.send(data, socket.MSG_DONTWAIT) :]

    def _recv(self) -> bytes:
        try:
            return receive(self.sock, _RECV_SIZE, self._spin)
        except BlockingIOError:
            raise TimeoutError("timed out") from None  # SO_RCVTIMEO ran out

    def exchange(self, request: bytes, deadline: float) -> tuple[int, bytes, bool]:
        """Send one request; return the reply's status and body, and whether it may be reused.

        The whole exchange ends by ``deadline`` (``time.monotonic()``); the
        caller has limited each wait to the time left.
        """
        try:
            self._send(request, deadline)
        except OSError as exc:
            raise _Failure(_describe(exc), replied=False, closed=_is_closed(exc)) from None
        reply = self._reply
        reply.expect()
        received = 0
        while True:
            try:
                data = self._recv()
            except OSError as exc:
                closed = _is_closed(exc)
                raise _Failure(_describe(exc), replied=received > 0, closed=closed) from None
            if not data:
                if reply.head_done and not reply.sized:
                    break  # an old-style body that ends with the connection
                what = "in the middle of its reply" if received else "without a reply"
                raise _Failure(
                    f"the plugin closed the connection {what}", replied=received > 0, closed=True
                )
            received += len(data)
            try:
                reply.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                status = reply.parser.get_status_code() if reply.head_done else 0
                text = "an unexpected 101 Switching Protocols" if status == 101 else str(exc)
                raise _Failure(f"invalid HTTP reply: {text}", replied=True, closed=False) from None
            if reply.complete:
                break
            if not reply.head_done and received > MAX_HEAD:
                raise _Failure(
                    f"reply head larger than {MAX_HEAD} bytes", replied=True, closed=False
                )
            if reply.size > MAX_BODY:
                raise _Failure(
                    f"reply body larger than {MAX_BODY} bytes", replied=True, closed=False
                )
            # A slow reply: the deadline, not each wait, bounds the call.
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Failure("timed out", replied=True, closed=False)
            self.limit(left)
        if reply.size > MAX_BODY:
            raise _Failure(f"reply body larger than {MAX_BODY} bytes", replied=True, closed=False)
        self.reused = True
        reusable = reply.keep_alive and not reply.extra
        return reply.parser.get_status_code(), b"".join(reply.body), reusable

    def is_stale(self) -> bool:
        """Whether the idle connection has something to read: closed by the server, or garbage."""
        # Checked before reuse, so that a request is rarely sent on a
        # connection the server is closing (and then sent again).
        if self._poller is not None:
            return bool(self._poller.poll(0))
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


class _TimedConnection(_Connection):
    """A connection on Python's own socket timeouts: for TLS, and where timevals differ."""

    def _prepare(self) -> None:
        pass

    def limit(self, wait: float) -> None:
        if wait != self.wait:
            self.sock.settimeout(max(wait, 1e-6))
            self.wait = wait

    def _send(self, data: bytes, deadline: float) -> None:
        self.sock.settimeout(max(deadline - time.monotonic(), 1e-6))
        self.wait = -1.0  # the next limit() sets the receive timeout again
        self.sock.sendall(data)

    def _recv(self) -> bytes:
        return self.sock.recv(_RECV_SIZE)


# struct timeval as 64-bit Linux lays it out; elsewhere Python's timeouts serve.
_TIMEVAL = struct.Struct("@ll")
_PLAIN: type[_Connection] = (
    _Connection if sys.platform.startswith("linux") and _TIMEVAL.size == 16 else _TimedConnection
)


def _is_closed(exc: OSError) -> bool:
    return exc.errno in _CLOSED and not isinstance(exc, (socket.timeout, ssl.SSLError))


class PluginClient:
    """Calls one plugin's methods over a pool of keep-alive connections.

    ``timeout`` bounds each call once connected (the request and its whole
    reply, including one re-send), ``retry`` the time spent retrying a
    connection that cannot be made (a plugin that is restarting): no call takes
    longer than ``retry + timeout``. ``spin`` is how long a wait for a reply
    polls before it sleeps (plain sockets; 0: never). ``trace``, when set, receives every
    :class:`Exchange`. ``name`` is the plugin's name, used in messages.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        name: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        retry: float = DEFAULT_RETRY,
        spin: float = DEFAULT_SPIN,
        trace: Trace | None = None,
    ) -> None:
        if not timeout > 0:
            raise InvalidParameterError(f"timeout must be positive, not {timeout}")
        if not retry >= 0:
            raise InvalidParameterError(f"retry must not be negative, not {retry}")
        try:
            check_spin(spin)
        except ValueError as exc:
            raise InvalidParameterError(str(exc)) from None
        self._spin = spin
        self.endpoint = endpoint
        self.name = name
        #: The trace hook, or None.
        self.trace = trace
        self._timeout = timeout
        self._retry = retry
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        host = UNIX_HOST if endpoint.scheme == "unix" else endpoint.address
        # Each method's request up to its length, written once: a request is
        # the request line, Host, Accept and Content-Length, then the body.
        self._heads = {
            message.path: (
                f"POST {message.path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Accept: {wire.MEDIA_TYPE}\r\nContent-Length: "
            ).encode()
            for message in wire.MESSAGES.values()
        }
        self._context = (
            (endpoint.tls or TLSConfig()).context() if endpoint.scheme == "https" else None
        )

    @property
    def label(self) -> str:
        """The plugin as messages name it: ``plugin "NAME" at URL``."""
        named = f' "{self.name}"' if self.name else ""
        return f"plugin{named} at {self.endpoint}"

    def call(self, message: wire.Message, *values: object) -> tuple[Any, ...]:
        """Post ``message`` with ``values`` and return the reply's fields.

        Raises the error the plugin reports (see :meth:`ipamkit.protocol.wire.Message.read_reply`),
        :class:`~ipamkit.errors.PluginError` for a reply that breaks the protocol and
        :class:`~ipamkit.errors.PluginTransportError` when the plugin cannot be
        reached, does not answer in time, or answers no readable HTTP.
        """
        body = message.encode_request(*values)
        status, reply = self._post(
            message.method, b"%s%d\r\n\r\n%s" % (self._heads[message.path], len(body), body), body
        )
        try:
            return message.read_reply(reply, status=status)
        except wire.WireError as exc:
            raise PluginError(
                f"{message.method}: invalid reply from {self.label}: {exc}",
                method=message.method,
                text=reply.decode(errors="replace"),
            ) from None

    def close(self) -> None:
        """Close every connection; idempotent. Later calls raise PluginTransportError."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _post(self, method: str, request: bytes, body: bytes) -> tuple[int, bytes]:
        connection = self._reuse(method)
        started = time.monotonic()
        # Nothing may end later than this, whatever the plugin does.
        end = started + self._retry + self._timeout
        deadline = started + self._timeout
        while True:
            if connection is None:
                # Made with each wait the timeout, or less if the end is nearer.
                connection = self._connected(method, body, started, end)
                deadline = min(time.monotonic() + self._timeout, end)
            else:
                connection.limit(self._timeout)  # a slow reply may have lowered it
            began = time.perf_counter() if self.trace is not None else 0.0
            try:
                status, reply, reusable = connection.exchange(request, deadline)
            except _Failure as failure:
                connection.close()
                # Sent again only when a pooled connection turns out closed
                # before any reply: see the module docstring.
                resend = connection.reused and failure.closed and not failure.replied
                if self.trace is not None:
                    self._traced(
                        method,
                        body,
                        status=None,
                        reply=b"",
                        error=str(failure),
                        resent=resend,
                        began=began,
                    )
                if not resend:
                    raise PluginTransportError(
                        f"{method}: {self.label} failed to answer: {failure}",
                        method=method,
                        text=str(failure),
                    ) from None
                connection = None
                continue
            if self.trace is not None:
                self._traced(
                    method, body, status=status, reply=reply, error="", resent=False, began=began
                )
            if reusable:
                self._release(connection)
            else:
                connection.close()
            return status, reply

    def _traced(
        self,
        method: str,
        body: bytes,
        *,
        status: int | None,
        reply: bytes,
        error: str,
        resent: bool,
        began: float,
    ) -> None:
        trace = self.trace
        if trace is not None:
            err_field = status == 200 and wire.has_misplaced_err(reply)
            seconds = time.perf_counter() - began
            trace(Exchange(method, body, status, reply, error, err_field, resent, seconds))

    def _connected(self, method: str, body: bytes, started: float, end: float) -> _Connection:
        """A new connection; one that cannot be made is retried with back-off until ``retry``."""
        backoff = _FIRST_BACKOFF
        while True:
            began = time.perf_counter() if self.trace is not None else 0.0
            left = end - time.monotonic()
            try:
                if left <= 0:  # a re-send late in the call: its time is up
                    raise TimeoutError("timed out")
                return self._connect(min(self._timeout, left))
            except ssl.SSLError as exc:
                failure: OSError = exc  # a certificate does not come right by waiting
                waited = False
            except OSError as exc:
                failure = exc
                waited = time.monotonic() + backoff <= started + self._retry
            if not waited:
                error = self._unreachable(method, failure)
                if self.trace is not None:
                    self._traced(
                        method,
                        body,
                        status=None,
                        reply=b"",
                        error=error.message,
                        resent=False,
                        began=began,
                    )
                raise error
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _unreachable(self, method: str, exc: OSError) -> PluginTransportError:
        waited = f" (retried for {self._retry:g} s)" if self._retry else ""
        return PluginTransportError(
            f"{method}: cannot reach {self.label}{waited}: {_describe(exc)}",
            method=method,
            text=_describe(exc),
        )

    def _connect(self, wait: float) -> _Connection:
        endpoint = self.endpoint
        if endpoint.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(wait)
                sock.connect(endpoint.address)
            except BaseException:
                sock.close()
                raise
            return _PLAIN(sock, wait, self._spin)
        host, port = endpoint.host_and_port()
        sock = socket.create_connection((host, port), timeout=wait)
        if self._context is None:
            return _PLAIN(sock, wait, self._spin)
        try:
            tls = self._context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return _TimedConnection(tls, wait, 0.0)  # an SSL socket takes no MSG_DONTWAIT

    def _reuse(self, method: str) -> _Connection | None:
        with self._lock:
            if self._closed:
                raise PluginTransportError(
                    f"{method}: the client of {self.label} is closed", method=method, text="closed"
                )
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_stale():
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


def activate(client: PluginClient) -> Capability:
    """Activate the plugin as an IPAM driver and return its capabilities.

    As Docker: the plugin must list ``IpamDriver`` in ``Implements``, and a plugin
    that does not answer ``GetCapabilities`` has none.
    """
    (implements,) = client.call(wire.ACTIVATE)
    if wire.IMPLEMENTS not in implements:
        raise PluginError(
            "Plugin does not implement the requested driver: "
            f'plugin="{client.name}", requested implementation="{wire.IMPLEMENTS}"',
            method=wire.ACTIVATE.method,
            text=", ".join(implements),
        )
    try:
        mac, replay = client.call(wire.GET_CAPABILITIES)
    except IpamError:
        return Capability()
    return Capability(requires_mac_address=mac, requires_request_replay=replay)
