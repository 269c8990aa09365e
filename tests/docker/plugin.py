"""``ipamkit serve`` as a Docker v1 plugin, under a name no other run or daemon uses."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ipamkit.drivers.remote import RemoteIpam
from ipamkit.protocol.client import Endpoint, PluginClient
from tests.docker.processes import stop_child

#: Where Docker's daemon finds v1 plugins, whatever its --exec-root says.
PLUGIN_DIR = Path("/run/docker/plugins")
#: Seconds ``ipamkit serve`` gets to listen after it is started.
START_TIMEOUT = 30.0
REPO = Path(__file__).resolve().parents[2]

# Plugin names are global on the machine: this run's token keeps parallel runs apart,
# the counter the plugins of one run (one per daemon, say).
_RUN = secrets.token_hex(3)
_NUMBERS = itertools.count()


def read_state(path: Path) -> dict[str, set[str]]:
    """Each pool of a durable state file with its addresses, as ``ipamkit state`` shows them."""
    done = subprocess.run(
        [sys.executable, "-m", "ipamkit", "state", str(path), "--json", "--addresses"],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {pool["pool_id"]: set(pool["addresses"]) for pool in json.loads(done.stdout)["pools"]}


class ServeError(AssertionError):
    """``ipamkit serve`` did not start listening."""


def plugin_name() -> str:
    """A plugin name no other plugin of this or another test run has."""
    return f"ipamkit-test-{_RUN}-{next(_NUMBERS)}"


class ServedIpamkit:
    """One ``ipamkit serve DRIVER --as NAME ARGS`` process; restartable with the same arguments."""

    def __init__(self, log_path: Path, driver: str = "default", args: Sequence[str] = ()) -> None:
        self.name = plugin_name()
        self.driver = driver
        self.args = list(args)
        self.socket = PLUGIN_DIR / f"{self.name}.sock"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start serving; return once the socket accepts connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "ipamkit", "serve", self.driver, "--as", self.name]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.args],
                env=dict(os.environ, PYTHONPATH=str(REPO)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self.process.poll() is not None:
                raise ServeError(f"ipamkit serve exited ({self.process.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise ServeError(f"ipamkit serve did not listen in {timeout:.0f} s:\n{self.log()}")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        """Stop serving by PID (SIGTERM, bounded wait, SIGKILL)."""
        if self.process is not None:
            stop_child(self.process)
        # A killed server cannot remove its socket; nobody else uses this name.
        self.socket.unlink(missing_ok=True)

    def restart(self, args: Sequence[str] | None = None) -> None:
        """Stop the server and start it again, with the same arguments or with ``args``."""
        self.stop()
        if args is not None:
            self.args = list(args)
        self.start()

    def client(self) -> RemoteIpam:
        """The served driver through ipamkit's remote driver, without ``Plugin.Activate``.

        Activating would start a new lifetime of an in-memory driver, which is
        exactly what a test looking at what the driver holds must not do.
        """
        return RemoteIpam(PluginClient(Endpoint.parse(str(self.socket)), timeout=30, retry=0))

    def log(self) -> str:
        """What every start of this server wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
