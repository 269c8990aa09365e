"""Serve an :class:`~ipamkit.Ipam` to Docker's daemon over the IPAM plugin protocol.

One asyncio event loop serves every connection; httptools (llhttp) parses the
requests (:mod:`ipamkit.protocol._http`), :mod:`ipamkit.protocol._dispatch`
answers them. Why an event loop: Docker's daemon opens one connection per
concurrent call and keeps each alive, so a busy daemon holds many mostly idle
connections. Here one costs a few kilobytes and no thread; the
thread-per-connection server this replaced needed 3,002 threads for 3,000
connections and answered callers beyond its 128 with 503, which Docker does
not retry (leaking the addresses of failed ReleaseAddress calls). asyncio and
httptools rather than a server library: they are what uvicorn is built from,
the project depends on httptools already, and the protocol needs nothing of
ASGI or of a framework.

Limits, and why: beyond ``max_connections`` open connections the one idle
the longest is closed to make room, else new ones wait in the listen backlog,
so none is refused; a request must arrive whole within ``request_timeout`` of
its first byte and a reply be taken within it (a deadline per request, not
per byte), so neither idle nor slow-drip connections lock others out; a
pipelining client's unanswered requests stay in the kernel, not in memory.

How calls reach the driver: drivers are synchronous. By default the loop
calls the driver itself, between reading a request and writing its reply:
one call at a time, so a driver that is not thread-safe needs no lock, and a
call costs no thread switch. Handing each call to threads costs the GIL's
hand-over instead: measured with ``bench/bench_serve.py`` on this shared
2-core machine (load average 2 to 3, ``default``, RequestAddress +
ReleaseAddress, medians of 3), server CPU per call was 21.5 µs called by the
loop against 118 µs through 4 threads with one caller, 16.5 against 85 µs
with 1,000 callers. ``driver_threads`` is for a driver that waits on I/O and
declares :attr:`~ipamkit.Feature.THREAD_SAFE`: its calls then overlap (a
driver that is not thread-safe gets one thread, serialised off the loop).

Between events, an idle loop polls for ``spin`` seconds (200 µs by default)
before it sleeps: a caller's next request then finds it awake
(:mod:`ipamkit.protocol._spin` says why, with figures, and what it costs).
Not with ``driver_threads``: they need the GIL, which a polling loop holds
between its polls.

Beside the threaded server, same run: with 1,000 callers 28,783 calls/s, no
error, 16.5 µs CPU per call and 32 MiB peak RSS, against 10,226 calls/s,
2,084 errors (503s), 81.5 µs and 50 MiB; with 8 callers 16 against 22 µs
(24.5 against 22 in a run at load 6 to 12); with one caller the threaded
server costs less, 18 against 21.5 µs (25.5 against 33). That gap is the
loop's own turn: counted with valgrind, a fixed reply costs an asyncio server
about 27k instructions per request against 7k for a thread blocked in
``recv()`` (and one ``epoll_wait`` more), while this module's own work per
request is now about what the threaded server's was. Docker's daemon makes a
few calls at a time, for which either rate is far beyond its needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from ipaddress import ip_address
from typing import Any

from ipamkit._contract import Capability, Feature, Ipam
from ipamkit.protocol._dispatch import Answer, Dispatcher, Undo, status_error
from ipamkit.protocol._http import MAX_BODY, MAX_HEAD, MAX_PATH, Refused, RequestParser, response
from ipamkit.protocol._spin import SPIN, check_spin
from ipamkit.protocol._spin import run as run_loop

__all__ = [
    "DRIVER_THREADS",
    "IDLE_TIMEOUT",
    "LINGER",
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "MAX_HEAD",
    "MAX_PATH",
    "REQUEST_TIMEOUT",
    "SHUTDOWN_GRACE",
    "SPIN",
    "PluginServer",
    "open_tcp_server",
    "open_unix_server",
    "tls_context",
]

log = logging.getLogger("ipamkit.protocol.server")

#: Connections open at once; beyond them, idle ones are closed, else new ones wait.
MAX_CONNECTIONS = 4096
#: Seconds a keep-alive connection may wait for its next request.
IDLE_TIMEOUT = 300.0
#: Seconds from a request's first byte to its last, and for a reply to be taken.
REQUEST_TIMEOUT = 10.0
#: Seconds for which a refused request's remaining input is read and dropped.
LINGER = 1.0
#: Seconds calls in progress get to be answered once shutdown begins.
SHUTDOWN_GRACE = 1.0
#: Threads that call the driver; 0: the event loop calls it itself.
DRIVER_THREADS = 0

# Bytes read at once: one request head at most.
_READ_SIZE = MAX_HEAD
# Requests of one connection answered before the others get their turn.
_ANSWERS_PER_TURN = 16
# How often deadlines are checked.
_SWEEP_INTERVAL = 0.25
# How long accepting pauses when the process runs out of file descriptors.
_ACCEPT_BACKOFF = 1.0


class _Expiry:
    """What a connection's deadline is for."""

    IDLE = "idle"
    REQUEST = "request"
    READER = "reader"
    LINGER = "linger"
    NONE = "none"


class _Connection(asyncio.BufferedProtocol):
    """One client connection: requests in order, one at a time, until it closes.

    A buffered protocol: asyncio reads into the server's one buffer instead of
    allocating 256 KiB per read, which cost 36-46 µs of CPU per read here,
    against 10-20 µs (measured with an echo server on this machine).
    """

    #: Set by connection_made, which asyncio calls before any other callback.
    transport: asyncio.Transport

    def __init__(self, server: _Serving) -> None:
        self._server = server
        self._parser = RequestParser()
        # The parser's list of complete requests (it never replaces it).
        self._requests = self._parser.complete
        #: A request is with the driver.
        self.busy = False
        self._reading = True
        self._write_paused = False
        # Set once input is refused: the error goes out after the replies before it.
        self._refusal: Refused | None = None
        self._dropping = False
        self.deadline = math.inf
        self.expiry = _Expiry.NONE
        #: Closed by the server to make room; no longer counted.
        self.evicted = False

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._server.opened(self)
        self._wait()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._dropping:
            return
        server = self._server
        if self.expiry is _Expiry.IDLE:
            server.active(self)
            self._set_deadline(_Expiry.REQUEST, server.request_timeout)
        try:
            self._parser.feed(server.read_buffer[:nbytes])
        except Refused as refused:
            self._refusal, self._dropping = refused, True
        if not self.busy and (self._requests or self._refusal is not None):
            self._next()  # else the request's deadline runs on: it does not restart per byte
        if self._requests and self._reading:
            # Pipelined requests not answered yet: the rest waits in the kernel, not here.
            self.transport.pause_reading()
            self._reading = False

    def eof_received(self) -> bool:
        # The client is done: a call in progress is undone when its reply cannot go out.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._set_deadline(_Expiry.READER, self._server.request_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._next()

    # serving

    def _set_deadline(self, expiry: str, seconds: float) -> None:
        self.expiry, self.deadline = expiry, time.monotonic() + seconds

    def _wait(self) -> None:
        """Wait for the next request, or for the rest of one begun."""
        if self._parser.mid_request:
            self._set_deadline(_Expiry.REQUEST, self._server.request_timeout)
        else:
            self._set_deadline(_Expiry.IDLE, self._server.idle_timeout)
            self._server.idle(self)

    def _next(self) -> None:
        """Answer the requests received, or wait for one."""
        transport, server, requests = self.transport, self._server, self._requests
        # A pipelining client gets a few answers per turn of the loop, then
        # the other connections get theirs.
        for _ in range(_ANSWERS_PER_TURN):
            if self.busy or self._write_paused or transport.is_closing():
                return
            if not requests:
                break
            request = requests.pop(0)
            path, body = request.path.decode(errors="replace"), b"".join(request.body)
            if server.in_threads:
                self.busy, self.expiry, self.deadline = True, _Expiry.NONE, math.inf
                server.call(path, body, partial(self._answer, request.keep_alive))
                return
            self._send(request.keep_alive, server.handle(path, body))
        else:
            server.later(self._next)
            return
        if self._refusal is not None:
            self._refuse(self._refusal)
        elif server.stopping:
            transport.close()
        else:
            if not self._reading:
                transport.resume_reading()
                self._reading = True
            self._wait()

    def _answer(self, keep_alive: bool, answer: Answer) -> None:
        """Send the answer a driver thread gave, and go on."""
        self.busy = False
        self._send(keep_alive, answer)
        self._next()

    def _send(self, keep_alive: bool, answer: Answer) -> None:
        transport = self.transport
        status, body, undo = answer
        if transport.is_closing():
            # The client left before its answer: it will never know of the allocation.
            if undo is not None:
                self._server.undo(undo)
            return
        close = not keep_alive or self._server.stopping
        transport.write(response(status, body, close=close))
        if transport.is_closing():
            # The write failed at once, the connection with it (the client is gone).
            if undo is not None:
                self._server.undo(undo)
        elif close:
            transport.close()

    def _refuse(self, refused: Refused) -> None:
        """Answer ``refused``, then close once the client stops sending (or LINGER passes)."""
        log.warning("refused (%d): %s", refused.status, refused.text)
        transport = self.transport
        status, body, _ = status_error(refused.status, refused.text)
        transport.write(response(status, body, close=True))
        # Closing with unread input resets the connection, and the client may
        # lose the reply before reading it: half-close, drop what comes, close.
        if transport.can_write_eof():
            transport.write_eof()
            self._set_deadline(_Expiry.LINGER, LINGER)
        else:
            transport.close()

    def expire(self) -> None:
        """The deadline passed."""
        expiry, self.expiry, self.deadline = self.expiry, _Expiry.NONE, math.inf
        if expiry == _Expiry.REQUEST:
            self._dropping = True
            timeout = self._server.request_timeout
            self._refuse(Refused(408, f"request not complete within {timeout:g} s"))
        elif expiry == _Expiry.READER:
            log.warning("closing a connection whose client does not read its replies")
            self.abort()
        elif expiry == _Expiry.LINGER:
            self.abort()
        else:
            log.debug("closing a connection idle for %g s", self._server.idle_timeout)
            self.close()

    def close(self) -> None:
        """Close once what was written has gone out."""
        self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what was not sent."""
        self.transport.abort()


class _Serving:
    """The listener's accept loop, the open connections, their deadlines and the executor."""

    def __init__(
        self,
        listener: socket.socket,
        dispatcher: Dispatcher,
        *,
        threads: int,
        max_connections: int,
        request_timeout: float,
        idle_timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        self._listener = listener
        self._dispatcher = dispatcher
        self._max_connections = max_connections
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self._tls = tls
        self._connections: set[_Connection] = set()
        # Idle connections, the longest idle first: the first to close for room.
        self._idle: dict[_Connection, None] = {}
        # Accepted sockets not yet connections (TLS handshakes in progress).
        self._adopting: set[asyncio.Task[None]] = set()
        self._counted = 0
        self._accepting = False
        # An accepted socket that waits for room (at most one: others wait in the backlog).
        self._waiting: socket.socket | None = None
        self.stopping = False
        self._loop = asyncio.get_running_loop()
        #: What every connection reads into; parsed at once (the loop has one thread).
        self.read_buffer = memoryview(bytearray(_READ_SIZE))
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix="ipamkit-driver") if threads else None
        )
        #: Whether the driver is called from threads (else by the loop, in :meth:`handle`).
        self.in_threads = self._executor is not None

    # connections

    def opened(self, connection: _Connection) -> None:
        self._connections.add(connection)

    def idle(self, connection: _Connection) -> None:
        self._idle[connection] = None
        if self._waiting is not None:
            self._admit_waiting()

    def active(self, connection: _Connection) -> None:
        self._idle.pop(connection, None)

    def closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        self._idle.pop(connection, None)
        if not connection.evicted:
            self._uncount()

    def _uncount(self) -> None:
        self._counted -= 1
        if self._waiting is not None:
            self._admit_waiting()

    def _make_room(self) -> bool:
        """Close the longest idle connection, if any; tell whether there is room now."""
        if self._counted < self._max_connections:
            return True
        if not self._idle:
            return False
        connection = next(iter(self._idle))
        del self._idle[connection]
        connection.evicted = True
        self._counted -= 1
        log.debug("closing an idle connection to make room for a new one")
        connection.close()
        return True

    # calls

    def later(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the loop's next turn."""
        self._loop.call_soon(callback)

    def call(self, path: str, body: bytes, answer: Callable[[Answer], None]) -> None:
        """Answer the request in a driver thread; hand the answer to ``answer`` on the loop."""
        assert self._executor is not None
        future = self._loop.run_in_executor(self._executor, self.handle, path, body)
        future.add_done_callback(lambda done: answer(done.result()))

    def handle(self, path: str, body: bytes) -> Answer:
        """Answer the request."""
        try:
            return self._dispatcher.handle(path, body)
        except Exception as exc:  # the dispatcher answers every error: this is a bug
            log.error("the server failed to answer: %s: %s", type(exc).__name__, exc)
            return status_error(500, f"internal error: {type(exc).__name__}")

    def undo(self, undo: Undo) -> None:
        """Undo a call whose answer could not be sent."""
        if self._executor is None:
            _undo(undo)
        else:
            self._executor.submit(_undo, undo)

    # accepting

    def _start_accepting(self) -> None:
        if self._accepting:
            return
        self._loop.add_reader(self._listener.fileno(), self._accept)
        self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting:
            self._loop.remove_reader(self._listener.fileno())
            self._accepting = False

    def _accept(self) -> None:
        for _ in range(128):  # then let the other callbacks run
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                # Out of file descriptors, say: the connections wait in the backlog.
                log.warning("cannot accept connections for %g s: %s", _ACCEPT_BACKOFF, exc)
                self._stop_accepting()
                self._loop.call_later(_ACCEPT_BACKOFF, self._resume_accepting)
                return
            if not self._make_room():
                # Every connection is busy: this one waits, the next ones in the backlog.
                self._waiting = sock
                self._stop_accepting()
                return
            self._admit(sock)

    def _admit_waiting(self) -> None:
        if self._waiting is not None and not self.stopping and self._make_room():
            sock, self._waiting = self._waiting, None
            self._admit(sock)
            self._start_accepting()

    def _admit(self, sock: socket.socket) -> None:
        self._counted += 1
        sock.setblocking(False)
        task = self._loop.create_task(self._adopt(sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    def _resume_accepting(self) -> None:
        if not self._accepting and not self.stopping and self._waiting is None:
            self._start_accepting()

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                partial(_Connection, self),
                sock,
                ssl=self._tls,
                ssl_handshake_timeout=self.request_timeout if self._tls else None,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("refused a connection: TLS handshake failed: %s", exc)
            sock.close()
            self._uncount()
        except asyncio.CancelledError:
            sock.close()
            raise

    # running

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then end every connection within SHUTDOWN_GRACE."""
        self._start_accepting()
        sweeper = self._loop.call_later(_SWEEP_INTERVAL, self._sweep)
        try:
            await stop.wait()
        finally:
            sweeper.cancel()
            await self._stop()

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self._connections if c.deadline < now]:
            connection.expire()
        self._loop.call_later(_SWEEP_INTERVAL, self._sweep)

    async def _stop(self) -> None:
        self.stopping = True
        self._stop_accepting()
        if self._waiting is not None:
            self._waiting.close()
        for task in self._adopting:
            task.cancel()
        for connection in list(self._connections):
            if not connection.busy:
                connection.close()  # busy ones close once answered
        deadline = self._loop.time() + SHUTDOWN_GRACE
        while self._connections and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        # What is left will not be read in time (a client that never reads its
        # replies) or waits for a driver call that outlived the grace.
        for connection in list(self._connections):
            connection.abort()
        await asyncio.sleep(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _undo(undo: Undo) -> None:
    try:
        undo()
    except Exception as exc:
        log.warning("could not undo a call whose reply was lost: %s", exc)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # One line: asyncio's default handler logs a traceback for what is only a
    # client's doing (a reset in the middle of a TLS handshake, say).
    exception = context.get("exception")
    detail = f": {type(exception).__name__}: {exception}" if exception is not None else ""
    log.warning("%s%s", context.get("message", "event loop error"), detail)


class PluginServer:
    """A listening plugin server; :meth:`serve_forever` answers until :meth:`shutdown`."""

    def __init__(
        self,
        listener: socket.socket,
        url: str,
        cleanup: Callable[[], None],
        serving: Callable[[], _Serving],
        spin: float = SPIN,
    ) -> None:
        self._listener = listener
        self._spin = spin
        self._cleanup = cleanup
        self._serving = serving
        #: Where the server listens, as a plugin address (``unix://…``, ``tcp://…``, ``https://…``).
        self.url = url
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        """Answer requests until :meth:`shutdown` is called from another thread."""
        try:
            run_loop(self._run(), self._spin)
        finally:
            self._stopped.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_error)
        stop = asyncio.Event()
        with self._lock:
            self._loop, self._stop = loop, stop
            if self._stop_requested:
                stop.set()
        await self._serving().run(stop)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait for it to return (SHUTDOWN_GRACE at most).

        The socket file goes first, so that a client looks for the plugin anew.
        """
        self._cleanup()
        with self._lock:
            self._stop_requested = True
            loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return  # serve_forever() has not started: it will stop at once
        with contextlib.suppress(RuntimeError):  # the loop is closed: it is over already
            loop.call_soon_threadsafe(stop.set)
        self._stopped.wait()

    def close(self) -> None:
        """Remove the socket file and stop listening."""
        self._cleanup()
        self._listener.close()

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


def _check_limits(
    driver_threads: int,
    max_connections: int,
    request_timeout: float,
    idle_timeout: float,
    spin: float,
) -> None:
    for name, value, least in (
        ("driver_threads", driver_threads, 0),
        ("max_connections", max_connections, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
        if value < least:
            raise ValueError(f"{name} must be at least {least}, not {value}")
    for name, seconds in (("request_timeout", request_timeout), ("idle_timeout", idle_timeout)):
        if not seconds > 0 or not math.isfinite(seconds):
            raise ValueError(f"{name} must be a positive number of seconds, not {seconds}")
    check_spin(spin)


def _plugin_server(
    listener: socket.socket,
    url: str,
    cleanup: Callable[[], None],
    driver: Ipam,
    capability: Capability,
    *,
    renew: Callable[[], Ipam] | None,
    driver_threads: int,
    max_connections: int,
    request_timeout: float,
    idle_timeout: float,
    spin: float,
    tls: ssl.SSLContext | None,
) -> PluginServer:
    dispatcher = Dispatcher(driver, capability, renew)
    thread_safe = any(str(f) == Feature.THREAD_SAFE.value for f in driver.features)
    listener.setblocking(False)
    serving = partial(
        _Serving,
        listener,
        dispatcher,
        threads=driver_threads if thread_safe else min(driver_threads, 1),
        max_connections=max_connections,
        request_timeout=request_timeout,
        idle_timeout=idle_timeout,
        tls=tls,
    )
    # Driver threads need the GIL, which a polling loop holds between its polls.
    return PluginServer(listener, url, cleanup, serving, 0.0 if driver_threads else spin)


def open_unix_server(
    driver: Ipam,
    capability: Capability,
    path: str,
    *,
    mode: int = 0o600,
    renew: Callable[[], Ipam] | None = None,
    driver_threads: int = DRIVER_THREADS,
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    spin: float = SPIN,
) -> PluginServer:
    """Listen on a unix socket at ``path``, created with ``mode`` (owner-only by default).

    ``renew`` builds a fresh driver: with it, a driver whose capability asks
    for request replay is replaced at each ``Plugin.Activate`` (a new daemon
    lifetime, whose replay must find it empty).
    """
    if mode & ~0o660:
        raise ValueError(f"socket mode {mode:o} grants more than owner and group")
    if not hasattr(socket, "AF_UNIX"):
        raise OSError(errno.EAFNOSUPPORT, "unix sockets are not available on this system")
    _check_limits(driver_threads, max_connections, request_timeout, idle_timeout, spin)
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
    _claim_path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask closes the window between bind() and chmod() in which another
    # user could connect.
    previous = os.umask(0o777 & ~mode)
    try:
        listener.bind(path)
    except BaseException:
        listener.close()
        raise
    finally:
        os.umask(previous)
    os.chmod(path, mode)
    inode = os.stat(path).st_ino
    listener.listen(socket.SOMAXCONN)

    def remove_socket() -> None:
        # Only our own socket: another server may have replaced it meanwhile.
        with contextlib.suppress(OSError):
            if os.lstat(path).st_ino == inode:
                os.unlink(path)

    return _plugin_server(
        listener,
        f"unix://{os.path.abspath(path)}",
        remove_socket,
        driver,
        capability,
        renew=renew,
        driver_threads=driver_threads,
        max_connections=max_connections,
        request_timeout=request_timeout,
        idle_timeout=idle_timeout,
        spin=spin,
        tls=None,
    )


def tls_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """A server's TLS context; with ``client_ca_file``, clients must show a certificate.

    The certificate must be signed by a CA of ``client_ca_file``.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def open_tcp_server(
    driver: Ipam,
    capability: Capability,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    renew: Callable[[], Ipam] | None = None,
    driver_threads: int = DRIVER_THREADS,
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    spin: float = SPIN,
) -> PluginServer:
    """Listen on a loopback TCP address, over TLS with ``tls`` (see :func:`tls_context`).

    Only loopback addresses: without TLS client certificates nothing
    authenticates a client. Requests that carry a browser's headers are
    refused (403), so that no web page reaches the driver.
    """
    try:
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"refusing to listen on {host!r}: only loopback addresses are allowed")
    _check_limits(driver_threads, max_connections, request_timeout, idle_timeout, spin)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except BaseException:
        listener.close()
        raise
    bound_host, bound_port = listener.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    scheme = "https" if tls is not None else "tcp"
    return _plugin_server(
        listener,
        f"{scheme}://{shown}:{bound_port}",
        lambda: None,
        driver,
        capability,
        renew=renew,
        driver_threads=driver_threads,
        max_connections=max_connections,
        request_timeout=request_timeout,
        idle_timeout=idle_timeout,
        spin=spin,
        tls=tls,
    )
