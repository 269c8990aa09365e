"""Serve an :class:`~ipamkit.Ipam` to Docker's daemon over the IPAM plugin protocol.

Built as uvicorn is, from a socket server and httptools (llhttp, the HTTP
parser of Node.js), but with the standard library's ``socketserver`` and a
thread per connection instead of an event loop: drivers are synchronous, so
uvicorn or aiohttp would have to hand every call to a thread anyway. The
standard library's ``http.server`` was measured first: about 90 µs of CPU per
call, 55 of them in its header parsing (the email package), which with the
client's share left no margin on the 5,000 calls/s target on this 2-core
machine. With httptools a call costs the server about 45 µs of CPU in all,
driver and JSON included.

How errors are answered, and why:

- An error the driver raises (the call was understood, the answer is no) is
  HTTP 200 with ``Error``: it is the IPAM API's own error field, and Docker
  reads it on every IPAM call. ``Error`` holds Docker's exact well-known
  message for the nine well-known classes; ``IpamkitError`` and
  ``IpamkitMessage`` (ignored by Docker) let ipamkit's client restore the exact
  class and message. Docker wraps either channel into an unclassified error, so
  nothing is lost for the daemon by choosing this one.
- A request that is not understood (unknown endpoint, malformed JSON, a missing
  or mistyped field, a body too large, a bug in the driver) is a 4xx or 5xx
  status with ``Err``, the plugin transport's error field, as Docker's remote
  API documents for syntactic problems. The driver is not called for it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from ipaddress import ip_address
from typing import Any

import httptools

from ipamkit._contract import Capability, Feature, Ipam
from ipamkit.errors import IpamError
from ipamkit.protocol import wire

__all__ = [
    "IDLE_TIMEOUT",
    "LINGER",
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "MAX_HEAD",
    "MAX_PATH",
    "PluginServer",
    "open_tcp_server",
    "open_unix_server",
]

log = logging.getLogger("ipamkit.protocol.server")

#: Largest request body accepted; Docker's largest requests are a few hundred bytes.
MAX_BODY = 1 << 20
#: Largest request line and headers accepted, and longest path.
MAX_HEAD = 64 << 10
MAX_PATH = 8 << 10
#: Connections served at once; a connection beyond them is answered 503.
MAX_CONNECTIONS = 128
#: Seconds a connection may stay silent (idle, or in the middle of a request).
IDLE_TIMEOUT = 300.0
#: Seconds for which a refused request's remaining input is read and dropped.
LINGER = 1.0

_Undo = Callable[[], None]


class _Dispatcher:
    """Turns a request (path and body) into a reply, calling the driver at most once."""

    def __init__(self, driver: Ipam, capability: Capability) -> None:
        self._driver = driver
        self._capability = capability
        thread_safe = any(str(f) == Feature.THREAD_SAFE.value for f in driver.features)
        # A driver that does not declare itself thread-safe sees one call at a time.
        self._lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if thread_safe else threading.Lock()
        )
        self._routes: dict[wire.Message, Callable[..., tuple[bytes, _Undo | None]]] = {
            wire.ACTIVATE: self._activate,
            wire.GET_CAPABILITIES: self._get_capabilities,
            wire.GET_DEFAULT_ADDRESS_SPACES: self._get_default_address_spaces,
            wire.REQUEST_POOL: self._request_pool,
            wire.RELEASE_POOL: self._release_pool,
            wire.REQUEST_ADDRESS: self._request_address,
            wire.RELEASE_ADDRESS: self._release_address,
        }

    def handle(self, path: str, body: bytes) -> tuple[int, bytes, _Undo | None]:
        """Return the status, the reply body, and how to undo the call if the reply is lost."""
        message = wire.MESSAGES.get(path)
        if message is None:
            return _status_error(404, f"unknown endpoint {path!r}")
        try:
            arguments = message.decode_request(body)
        except wire.WireError as exc:
            return _status_error(400, str(exc))
        try:
            with self._lock:
                reply, undo = self._routes[message](*arguments)
        except IpamError as exc:
            return 200, wire.encode(wire.error_reply(exc)), None
        except Exception as exc:
            log.exception("%s: the driver failed", message.method)
            return _status_error(500, f"internal error in the driver: {type(exc).__name__}: {exc}")
        return 200, reply, undo

    def _activate(self) -> tuple[bytes, None]:
        return wire.ACTIVATE.encode_reply([wire.IMPLEMENTS]), None

    def _get_capabilities(self) -> tuple[bytes, None]:
        capability = self._capability
        reply = wire.GET_CAPABILITIES.encode_reply(
            capability.requires_mac_address, capability.requires_request_replay
        )
        return reply, None

    def _get_default_address_spaces(self) -> tuple[bytes, None]:
        local, global_ = self._driver.get_default_address_spaces()
        return wire.GET_DEFAULT_ADDRESS_SPACES.encode_reply(local, global_), None

    def _request_pool(
        self,
        address_space: str,
        pool: str,
        sub_pool: str,
        options: dict[str, str] | None,
        v6: bool,
    ) -> tuple[bytes, _Undo]:
        driver = self._driver
        result = driver.request_pool(address_space, pool, sub_pool, options, v6)
        reply = wire.REQUEST_POOL.encode_reply(result.pool_id, str(result.pool), result.meta)
        return reply, lambda: driver.release_pool(result.pool_id)

    def _release_pool(self, pool_id: str) -> tuple[bytes, None]:
        self._driver.release_pool(pool_id)
        return wire.RELEASE_POOL.encode_reply(), None

    def _request_address(
        self, pool_id: str, address: str, options: dict[str, str] | None
    ) -> tuple[bytes, _Undo | None]:
        driver = self._driver
        result = driver.request_address(pool_id, address or None, options)
        allocated = result.address
        if allocated is None:
            return wire.REQUEST_ADDRESS.encode_reply("", result.meta), None
        reply = wire.REQUEST_ADDRESS.encode_reply(str(allocated), result.meta)
        ip = allocated.ip
        return reply, lambda: driver.release_address(pool_id, ip)

    def _release_address(self, pool_id: str, address: str) -> tuple[bytes, None]:
        self._driver.release_address(pool_id, address)
        return wire.RELEASE_ADDRESS.encode_reply(), None


def _err(text: str) -> bytes:
    return wire.encode({wire.STATUS_ERROR_FIELD: text})


def _status_error(status: int, text: str) -> tuple[int, bytes, None]:
    return status, _err(text), None


class _Refused(Exception):
    """A request the connection cannot go on after: answered with ``status``, then closed."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _Request:
    """One request as httptools parses it; the limits are checked as the bytes come."""

    __slots__ = ("body", "keep_alive", "path", "size")

    def __init__(self) -> None:
        self.path = b""
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = False


class _Protocol:
    """httptools callbacks: builds requests, and refuses what breaks the limits."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.complete: list[_Request] = []
        # Bytes received while a head is unfinished count against its limit, so
        # that an endless request line or header cannot fill the memory.
        self.in_head = True
        self.head_bytes = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raise :class:`_Refused` for what cannot be served."""
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                raise _Refused(431, f"request head larger than {MAX_HEAD} bytes")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserUpgrade:
            raise _Refused(400, "protocol upgrades are not supported") from None
        except httptools.HttpParserError as exc:
            raise _Refused(400, f"malformed HTTP request: {exc}") from None

    def on_message_begin(self) -> None:
        self.current = _Request()

    def on_url(self, url: bytes) -> None:
        request = self._request()
        request.path += url
        if len(request.path) > MAX_PATH:
            raise _Refused(414, f"request path longer than {MAX_PATH} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
            raise _Refused(413, f"request body of {int(value)} bytes exceeds {MAX_BODY}")

    def on_headers_complete(self) -> None:
        self.in_head, self.head_bytes = False, 0
        method = self.parser.get_method()
        if method != b"POST":
            raise _Refused(405, f"method {method.decode(errors='replace')} not allowed: use POST")

    def on_body(self, body: bytes) -> None:
        request = self._request()
        request.size += len(body)
        if request.size > MAX_BODY:
            raise _Refused(413, f"request body exceeds {MAX_BODY} bytes")
        request.body.append(body)

    def on_message_complete(self) -> None:
        request = self._request()
        # The parser forgets the connection's fate once the message is over.
        request.keep_alive = self.parser.should_keep_alive()
        self.complete.append(request)
        self.current = None
        self.in_head = True

    def _request(self) -> _Request:
        if self.current is None:  # httptools always begins a message first
            raise _Refused(400, "malformed HTTP request")
        return self.current


def _linger(sock: socket.socket) -> None:
    """Read and drop what the client still sends, briefly, before the connection closes.

    Closing with unread input resets the connection, and the client may lose
    the error reply it was sent before reading it.
    """
    deadline = time.monotonic() + LINGER
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER)
        while time.monotonic() < deadline and sock.recv(65536):
            pass


def _response(status: int, body: bytes, *, close: bool) -> bytes:
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        HTTPStatus(status).phrase.encode(),
        _MEDIA_TYPE,
        len(body),
        b"Connection: close\r\n" if close else b"",
        body,
    )


_MEDIA_TYPE = wire.MEDIA_TYPE.encode()


class _Handler(socketserver.BaseRequestHandler):
    """Serves one connection: requests in order, until it closes or breaks the protocol."""

    request: socket.socket
    server: _Serving
    #: False for a connection opened beyond the server's limit.
    admitted: bool

    def handle(self) -> None:
        sock = self.request
        sock.settimeout(IDLE_TIMEOUT)
        self.admitted = self.server.admitted(sock)
        protocol = _Protocol()
        try:
            while True:
                # Never more than MAX_HEAD at once, so that one read alone
                # cannot break the head's limit.
                data = sock.recv(MAX_HEAD)
                if not data:
                    return  # closed, possibly mid-request: nobody to answer, nothing done
                try:
                    protocol.feed(data)
                except _Refused as refused:
                    sock.sendall(_response(refused.status, _err(refused.text), close=True))
                    _linger(sock)
                    return
                for request in protocol.complete:
                    if not self._answer(sock, request):
                        return
                protocol.complete.clear()
        except OSError:
            return  # timed out or reset: the connection is over

    def _answer(self, sock: socket.socket, request: _Request) -> bool:
        """Answer one request; tell whether the connection goes on."""
        if not self.admitted:
            sock.sendall(_response(503, _err("too many connections, try again"), close=True))
            return False
        path = request.path.decode(errors="replace")
        status, reply, undo = self.server.dispatcher.handle(path, b"".join(request.body))
        log.debug("%s: %d", path, status)
        try:
            sock.sendall(_response(status, reply, close=not request.keep_alive))
        except OSError:
            # The client is gone and will never learn of the allocation: give it back.
            if undo is not None:
                with contextlib.suppress(Exception):
                    undo()
            return False
        return request.keep_alive


class _Serving(socketserver.ThreadingMixIn, socketserver.BaseServer):
    """What the handler needs from either server: the dispatcher and connection tracking."""

    # Not daemon threads: closing the server waits for calls in progress to be
    # answered, once every connection has stopped reading (drop_connections).
    daemon_threads = False
    # socketserver's default backlog of 5 turns a burst of connections into
    # EAGAIN on a unix socket.
    request_queue_size = socket.SOMAXCONN
    dispatcher: _Dispatcher
    max_connections: int

    def init_tracking(self, dispatcher: _Dispatcher, max_connections: int) -> None:
        self.dispatcher = dispatcher
        self.max_connections = max_connections
        # Connection to whether it is within the limit.
        self._connections: dict[socket.socket, bool] = {}
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked here, before its thread starts, so that no connection escapes
        # drop_connections() once the accept loop has stopped.
        with self._connections_lock:
            self._connections[request] = len(self._connections) < self.max_connections
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def admitted(self, connection: socket.socket) -> bool:
        """Tell whether ``connection`` was opened within the limit."""
        with self._connections_lock:
            return self._connections.get(connection, False)

    def drop_connections(self) -> None:
        """Stop reading every open connection; replies being written still go out."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error while serving a connection")


# Windows has no unix sockets, and this module must import there all the same:
# the command line imports it.
if hasattr(socketserver, "UnixStreamServer"):

    class _UnixServer(_Serving, socketserver.UnixStreamServer):
        pass


class _TCPServer(_Serving, socketserver.TCPServer):
    allow_reuse_address = True


class _TCP6Server(_TCPServer):
    address_family = socket.AF_INET6


class PluginServer:
    """A listening plugin server; :meth:`serve_forever` answers until :meth:`shutdown`."""

    def __init__(self, server: _Serving, url: str, cleanup: Callable[[], None]) -> None:
        self._server = server
        self._cleanup = cleanup
        #: Where the server listens, as a plugin address (``unix://…`` or ``tcp://…``).
        self.url = url

    def serve_forever(self) -> None:
        """Answer requests until :meth:`shutdown` is called from another thread."""
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait for it to return."""
        self._server.shutdown()

    def close(self) -> None:
        """Remove the socket file, end every connection once its call is answered, stop."""
        self._cleanup()
        self._server.drop_connections()
        self._server.server_close()

    def __enter__(self) -> PluginServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _claim_path(path: str) -> None:
    """Make ``path`` free for a new socket, removing a stale one; refuse anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket, not replacing it", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # a socket nobody listens on: left over by a server that died
        return
    finally:
        probe.close()
    raise FileExistsError(errno.EADDRINUSE, "another server is listening on this socket", path)


def open_unix_server(
    driver: Ipam,
    capability: Capability,
    path: str,
    *,
    mode: int = 0o600,
    max_connections: int = MAX_CONNECTIONS,
) -> PluginServer:
    """Listen on a unix socket at ``path``, created with ``mode`` (owner-only by default).

    Beyond ``max_connections`` open connections, requests are answered 503.
    """
    if mode & ~0o660:
        raise ValueError(f"socket mode {mode:o} grants more than owner and group")
    if not hasattr(socket, "AF_UNIX"):
        raise OSError(errno.EAFNOSUPPORT, "unix sockets are not available on this system")
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
    _claim_path(path)
    server = _UnixServer(path, _Handler, bind_and_activate=False)
    server.init_tracking(_Dispatcher(driver, capability), max_connections)
    # The umask closes the window between bind() and chmod() in which another
    # user could connect.
    previous = os.umask(0o777 & ~mode)
    try:
        server.server_bind()
    except BaseException:
        server.server_close()
        raise
    finally:
        os.umask(previous)
    os.chmod(path, mode)
    inode = os.stat(path).st_ino
    server.server_activate()

    def remove_socket() -> None:
        # Only our own socket: another server may have replaced it meanwhile.
        with contextlib.suppress(OSError):
            if os.lstat(path).st_ino == inode:
                os.unlink(path)

    return PluginServer(server, f"unix://{os.path.abspath(path)}", remove_socket)


def open_tcp_server(
    driver: Ipam,
    capability: Capability,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
) -> PluginServer:
    """Listen on a loopback TCP address (there is no authentication, so nothing else)."""
    try:
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"refusing to listen on {host!r}: only loopback addresses are allowed")
    cls = _TCP6Server if ":" in host else _TCPServer
    server = cls((host, port), _Handler)
    server.init_tracking(_Dispatcher(driver, capability), max_connections)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return PluginServer(server, f"tcp://{shown}:{bound_port}", lambda: None)
