"""``ipamkit serve NAME``: give a driver to Docker's daemon as an IPAM plugin."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from contextlib import suppress
from types import FrameType

from ipamkit._contract import DEFAULT_IPAM, NULL_IPAM
from ipamkit._host import Host
from ipamkit.errors import IpamError
from ipamkit.protocol.discovery import check_plugin_name
from ipamkit.protocol.server import MAX_CONNECTIONS, PluginServer, open_tcp_server, open_unix_server

NAME = "serve"
HELP = "serve a driver over Docker's IPAM plugin protocol"

#: Where Docker's daemon looks for plugin sockets.
SOCKET_DIR = "/run/docker/plugins"
#: IPAM driver names Docker's daemon keeps for its own drivers.
DOCKER_BUILTINS = (DEFAULT_IPAM, NULL_IPAM)

log = logging.getLogger("ipamkit.serve")


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
        help="with --listen, write the address to this spec file (/etc/docker/plugins/PLUGIN.spec)",
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
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        metavar="N",
        help=f"connections served at once; more are answered 503 (default {MAX_CONNECTIONS})",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")


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


def _open(args: argparse.Namespace, host: Host) -> PluginServer:
    if args.listen is not None:
        address, port = _split_listen(args.listen)
        driver, capability = host.driver(args.name), host.capability(args.name)
        return open_tcp_server(
            driver, capability, address, port, max_connections=args.max_connections
        )
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
    return open_unix_server(
        driver,
        capability,
        path,
        mode=0o660 if args.group_access else 0o600,
        max_connections=args.max_connections,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="ipamkit serve: %(message)s",
        stream=sys.stderr,
    )
    try:
        host = Host(options={args.name: _options(args.driver_opt)})
        server = _open(args, host)
    except (IpamError, OSError, ValueError) as exc:
        print(f"ipamkit serve: error: {exc}", file=sys.stderr)
        return 1
    if args.spec_file is not None:
        try:
            with open(args.spec_file, "w") as spec:
                spec.write(server.url + "\n")
        except OSError as exc:
            server.close()
            print(f"ipamkit serve: error: cannot write the spec file: {exc}", file=sys.stderr)
            return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, name="ipamkit-serve")
    try:
        worker.start()
        print(f"ipamkit serve: serving {args.name!r} at {server.url}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        if worker.is_alive():
            server.shutdown()
            worker.join()
        server.close()
        if args.spec_file is not None:
            with suppress(FileNotFoundError):
                os.unlink(args.spec_file)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
