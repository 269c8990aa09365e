"""``ipamkit serve NAME``: give a driver to Docker's daemon as an IPAM plugin."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from types import FrameType

from ipamkit._contract import DEFAULT_IPAM, NULL_IPAM, Capability, Ipam
from ipamkit._host import Host
from ipamkit.cli import status
from ipamkit.errors import DriverLoadError, DriverNotConfiguredError, DriverNotFoundError, IpamError
from ipamkit.protocol._spin import spin_range_error
from ipamkit.protocol.discovery import check_plugin_name
from ipamkit.protocol.server import (
    DRIVER_THREADS,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT,
    SPIN,
    PluginServer,
    open_tcp_server,
    open_unix_server,
    tls_context,
)

try:
    import resource
except ImportError:  # Windows: no descriptor limits to raise
    resource = None  # type: ignore[assignment]

NAME = "serve"
HELP = "serve a driver over Docker's IPAM plugin protocol"

#: Where Docker's daemon looks for plugin sockets.
SOCKET_DIR = "/run/docker/plugins"
#: IPAM driver names Docker's daemon keeps for its own drivers.
DOCKER_BUILTINS = (DEFAULT_IPAM, NULL_IPAM)
#: The option that makes a built-in in-memory driver keep its state, by driver name.
DURABLE_OPTIONS = {DEFAULT_IPAM: "--driver-opt state=PATH"}
LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("ipamkit.serve")


def _whole_number(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _spin_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    problem = spin_range_error(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the driver to serve")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--socket",
        metavar="PATH",
        help=f"unix socket to listen on (default {SOCKET_DIR}/PLUGIN.sock)",
    )
    where.add_argument(
        "--listen", metavar="HOST:PORT", help="loopback TCP address to listen on instead"
    )
    parser.add_argument(
        "--as",
        dest="plugin",
        metavar="PLUGIN",
        help="the plugin name Docker will know the driver by, as in --ipam-driver PLUGIN "
        "(default NAME)",
    )
    parser.add_argument(
        "--spec-file",
        metavar="PATH",
        help="with --listen, write the address to this spec file (/etc/docker/plugins/PLUGIN.spec"
        ", or PLUGIN.json, which also carries the TLS settings Docker needs with --tls-cert)",
    )
    parser.add_argument(
        "--spec-ca",
        metavar="PATH",
        help="with --tls-cert, the CA Docker verifies this server's certificate with "
        "(CAFile of the .json spec file)",
    )
    parser.add_argument(
        "--spec-client-cert",
        metavar="PATH",
        help="with --tls-client-ca, the certificate Docker shows (CertFile of the .json spec file)",
    )
    parser.add_argument(
        "--spec-client-key",
        metavar="PATH",
        help="the private key of --spec-client-cert (KeyFile of the .json spec file)",
    )
    parser.add_argument(
        "--group-access",
        action="store_true",
        help="let the socket's group connect too (mode 0660 instead of 0600)",
    )
    parser.add_argument(
        "--driver-opt",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="an option for the driver (repeatable)",
    )
    parser.add_argument(
        "--tls-cert", metavar="PATH", help="with --listen, serve HTTPS with this certificate"
    )
    parser.add_argument("--tls-key", metavar="PATH", help="the private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        metavar="PATH",
        help="require client certificates signed by these CAs (with --tls-cert)",
    )
    parser.add_argument(
        "--max-connections",
        type=_whole_number(1),
        default=MAX_CONNECTIONS,
        metavar="N",
        help="connections open at once; beyond them idle ones are closed, else new ones wait "
        f"(default {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        default=REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="time for a request to arrive whole, and for its reply to be read "
        f"(default {REQUEST_TIMEOUT:g})",
    )
    parser.add_argument(
        "--driver-threads",
        type=_whole_number(0),
        default=DRIVER_THREADS,
        metavar="N",
        help="call a thread-safe driver from N threads, for a driver that waits on I/O "
        "(default 0: the event loop calls it, one call at a time)",
    )
    parser.add_argument(
        "--spin",
        type=_spin_seconds,
        metavar="SECONDS",
        help="how long the idle server polls before it sleeps, so that a caller's next "
        f"request finds it awake (default {SPIN:g}; 0: never; not with --driver-threads)",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="least severity logged (info)"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="a line of text or a JSON object per entry (text)",
    )
    parser.add_argument("--verbose", action="store_true", help="the same as --log-level debug")


def _utc(record: logging.LogRecord) -> str:
    return f"{_utc_seconds(int(record.created))}.{int(record.msecs):03d}Z"


@functools.lru_cache(maxsize=1)
def _utc_seconds(seconds: int) -> str:
    # Once per second, not per entry: every call is an entry.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class _TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, the time in UTC to the millisecond."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


# Built once: json.dumps(default=...) builds an encoder per entry.
_JSON = json.JSONEncoder(default=str)


class _JsonFormatter(logging.Formatter):
    """One JSON object per entry; a call's fields (see ipamkit.protocol._dispatch) at top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "call", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _JSON.encode(entry)


def _configure_logging(args: argparse.Namespace) -> logging.Handler:
    # What neither format shows is not gathered for each entry (the process ID
    # is a system call each time).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if args.log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("DEBUG" if args.verbose else args.log_level.upper())
    return handler


def _announce(handler: logging.Handler, text: str) -> None:
    """Write ``text`` whatever the level: it tells whoever waits that the server listens."""
    handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, text, (), None))


def _options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--driver-opt {pair!r}: expected KEY=VALUE")
        options[key] = value
    return options


def _split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _renewer(args: argparse.Namespace) -> Callable[[], Ipam]:
    """Build the served driver anew, from a fresh host with the same options."""
    options = _options(args.driver_opt)
    return lambda: Host(options={args.name: options}).driver(args.name)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        if args.tls_key is not None or args.tls_client_ca is not None:
            raise ValueError("--tls-key and --tls-client-ca go with --tls-cert")
        return None
    if args.listen is None:
        raise ValueError("--tls-cert goes with --listen: a unix socket needs no TLS")
    if args.tls_key is None:
        raise ValueError("--tls-cert needs --tls-key")
    return tls_context(args.tls_cert, args.tls_key, args.tls_client_ca)


def _spec_tls(args: argparse.Namespace) -> dict[str, object] | None:
    """The ``TLSConfig`` of the spec file (None: no TLS); refuse what cannot work.

    A ``.spec`` file holds only an address: Docker would then speak TLS without
    verifying the certificate, so with TLS only the ``.json`` form is written,
    and only with the CA to verify with (Docker skips verification without one).
    """
    given = {
        "--spec-ca": args.spec_ca,
        "--spec-client-cert": args.spec_client_cert,
        "--spec-client-key": args.spec_client_key,
    }
    if args.tls_cert is None or args.spec_file is None:
        extra = next((flag for flag, value in given.items() if value is not None), None)
        if extra is not None:
            raise ValueError(f"{extra} goes with --tls-cert and --spec-file")
        return None
    if not args.spec_file.endswith(".json"):
        raise ValueError(
            "with --tls-cert, --spec-file must name a .json spec file: a .spec file holds "
            "only the address, and Docker would not verify the certificate"
        )
    if args.spec_ca is None:
        raise ValueError(
            "with --tls-cert, the spec file needs --spec-ca, the CA Docker verifies with"
        )
    wanted = args.tls_client_ca is not None
    for flag in ("--spec-client-cert", "--spec-client-key"):
        if (given[flag] is not None) != wanted:
            raise ValueError(
                f"{flag} goes with --tls-client-ca: Docker shows the client certificate the "
                "server asks for"
            )
    for flag, value in given.items():
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"{flag} {value!r}: no such file")
    return {
        "InsecureSkipVerify": False,
        "CAFile": os.path.abspath(args.spec_ca),
        "CertFile": os.path.abspath(args.spec_client_cert) if wanted else "",
        "KeyFile": os.path.abspath(args.spec_client_key) if wanted else "",
    }


def _spec(args: argparse.Namespace, url: str, tls: dict[str, object] | None) -> str:
    """The spec file's text: the address, or Docker's ``.json`` form of it."""
    if not args.spec_file.endswith(".json"):
        return url + "\n"
    spec: dict[str, object] = {"Name": args.plugin or args.name, "Addr": url}
    if tls is not None:
        spec["TLSConfig"] = tls
    return json.dumps(spec, indent=2) + "\n"


def _spin(args: argparse.Namespace) -> float:
    if args.spin is None:
        return SPIN  # the library turns it off itself for driver threads
    if args.spin and args.driver_threads:
        # Threads calling the driver need the GIL, which the polling loop holds.
        raise ValueError("--spin and --driver-threads exclude each other: give one of them")
    spin: float = args.spin
    return spin


def _open(args: argparse.Namespace, host: Host) -> PluginServer:
    tls = _tls(args)
    limits = {
        "driver_threads": args.driver_threads,
        "max_connections": args.max_connections,
        "request_timeout": args.request_timeout,
        "spin": _spin(args),
        "renew": _renewer(args),
    }
    if args.listen is not None:
        address, port = _split_listen(args.listen)
        driver, capability = host.driver(args.name), host.capability(args.name)
        _warn_if_in_memory(args.name, capability)
        return open_tcp_server(driver, capability, address, port, tls=tls, **limits)
    if args.spec_file is not None:
        raise ValueError("--spec-file goes with --listen")
    plugin = args.plugin or args.name
    if plugin in DOCKER_BUILTINS and args.socket is None:
        log.warning(
            "Docker's daemon resolves %r to its own built-in driver and never asks a plugin "
            "of that name; serve it under another name with --as",
            plugin,
        )
    # Docker finds the default socket by plugin name, which must be a file name.
    path = args.socket or os.path.join(SOCKET_DIR, f"{check_plugin_name(plugin)}.sock")
    driver, capability = host.driver(args.name), host.capability(args.name)
    _warn_if_in_memory(args.name, capability)
    return open_unix_server(
        driver, capability, path, mode=0o660 if args.group_access else 0o600, **limits
    )


def _warn_if_in_memory(name: str, capability: Capability) -> None:
    # A driver that asks for request replay keeps no state of its own.
    if not capability.requires_request_replay:
        return
    keep = DURABLE_OPTIONS.get(name)
    remedy = f"{keep} keeps them" if keep else "a driver that keeps its own state keeps them"
    log.warning(
        "%r holds its allocations in memory: a restart of this plugin loses every allocation "
        "(Docker's daemon replays only when it restarts itself); %s",
        name,
        remedy,
    )


def _raise_file_limit(connections: int) -> None:
    """Let the process hold a descriptor per connection, up to the hard limit."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 64  # the listener, the driver's own files, standard streams
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(args: argparse.Namespace) -> int:
    handler = _configure_logging(args)
    try:
        spec_tls = _spec_tls(args)
        host = Host(options={args.name: _options(args.driver_opt)})
        server = _open(args, host)
    except (DriverNotFoundError, DriverNotConfiguredError, DriverLoadError) as exc:
        return status.error(NAME, str(exc), status.DRIVER)
    except (IpamError, ValueError) as exc:
        return status.error(NAME, str(exc), status.USAGE)
    except OSError as exc:
        return status.error(NAME, str(exc), status.FAILURE)
    if args.spec_file is not None:
        try:
            with open(args.spec_file, "w") as spec:
                spec.write(_spec(args, server.url, spec_tls))
        except OSError as exc:
            server.close()
            return status.error(NAME, f"cannot write the spec file: {exc}", status.FAILURE)
    _raise_file_limit(args.max_connections)
    # The handler only writes to a pipe: a handler that took a lock (setting a
    # threading.Event, say) deadlocked when the signal came while this thread
    # held that lock, entering the wait (the likely cause of a hang seen once in
    # 15 prompt SIGTERMs; none in 25 since).
    wake_reader, wake_writer = os.pipe()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        os.write(wake_writer, b"!")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, name="ipamkit-serve")
    try:
        worker.start()
        _announce(handler, f"serving {args.name!r} at {server.url}")
        os.read(wake_reader, 1)  # resumed after each handler (PEP 475) until it wrote
    finally:
        server.shutdown()
        worker.join()
        server.close()
        if args.spec_file is not None:
            with suppress(FileNotFoundError):
                os.unlink(args.spec_file)
        for sig, signal_handler in previous.items():
            signal.signal(sig, signal_handler)
        os.close(wake_reader)
        os.close(wake_writer)
    return 0
