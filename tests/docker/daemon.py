"""A Docker daemon of a test's own: sockets, data and state under one temp dir.

Started with flags that touch nothing outside the machine: no iptables rules,
no forwarding, no default bridge, its own containerd under the exec root, its
own (empty) daemon.json and CLI config. Several can run at once, each on its
own dir. (It still writes ``/etc/docker/key.json``, as every 20.10 daemon does.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.docker.processes import STOP_TIMEOUT, processes_mentioning, run, stop_child, stop_pid

#: Seconds a daemon gets to answer after it is started.
START_TIMEOUT = 90.0
#: Seconds one ``docker`` command may take.
CLI_TIMEOUT = 120.0
#: The daemon's own CLI (Debian's ``docker.io``), not another ``docker`` on PATH.
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"


class DockerError(AssertionError):
    """A ``docker`` command did not do what the test expected."""


def _mount_points(under: Path) -> list[str]:
    prefix = str(under) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with spaces and such written as octal escapes.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
        if point == str(under) or point.startswith(prefix):
            points.append(point)
    return points


def unmount_all(under: Path) -> None:
    """Unmount every mount at or below ``under``, deepest first."""
    for point in sorted(_mount_points(under), key=len, reverse=True):
        try:
            run(["umount", point])
        except RuntimeError:
            run(["umount", "--lazy", point])


class DockerDaemon:
    """One ``dockerd`` and the ``docker`` CLI pointed at it.

    ``start()``/``stop()`` may be repeated on the same dirs (a daemon restart);
    ``close()`` removes what the daemon made and then the dir itself.
    """

    def __init__(self, log_path: Path) -> None:
        # Short: containerd's socket under the exec root must fit in a unix socket path.
        self.root = Path(tempfile.mkdtemp(prefix="ipkd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.pidfile = self.root / "docker.pid"
        self.log_path = log_path  # outside the root: kept for a look after a failure
        self.config = self.root / "daemon.json"
        self.cli_config = self.root / "cli"
        self.process: subprocess.Popen[bytes] | None = None
        self.networks: set[str] = set()  # IDs of the networks it ever had: their bridges
        self.config.write_text("{}\n")
        self.cli_config.mkdir(exist_ok=True)

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` of this daemon."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start ``dockerd`` on this daemon's dirs; return once it answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    DOCKERD,
                    f"--host={self.host}",
                    f"--data-root={self.data_root}",
                    f"--exec-root={self.exec_root}",
                    f"--pidfile={self.pidfile}",
                    f"--config-file={self.config}",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-forward=false",
                    "--ip-masq=false",
                    "--bridge=none",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DockerError(f"dockerd exited ({self.process.returncode}):\n{self.log_tail()}")
            probe = self.docker("version", "--format", "{{.Server.Version}}", check=False)
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise DockerError(f"dockerd did not answer in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop ``dockerd`` by PID (its containers stop with it) and what it left running."""
        if self.process is not None:
            stop_child(self.process, timeout)
        # After a SIGKILL its containerd and shims live on; they name our exec root.
        for pid in processes_mentioning(str(self.exec_root)):
            stop_pid(pid, timeout=10)
        unmount_all(self.root)

    def restart(self) -> None:
        """Stop the daemon and start it again on the same dirs."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def docker(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this daemon; with ``check``, a failure is a DockerError."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_HOST": self.host}
        env["DOCKER_CONFIG"] = str(self.cli_config)
        done = subprocess.run(
            [DOCKER, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and done.returncode != 0:
            raise DockerError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
        if args[:2] == ("network", "create") and done.returncode == 0:
            self.networks.add(done.stdout.strip())
        return done

    def output(self, *args: str) -> str:
        """What ``docker ARGS`` prints, stripped; a failure is a DockerError."""
        return self.docker(*args).stdout.strip()

    def refused(self, *args: str) -> str:
        """Run ``docker ARGS``, which must fail; return its error text."""
        done = self.docker(*args, check=False)
        if done.returncode == 0:
            raise DockerError(f"docker {' '.join(args)} succeeded: {done.stdout.strip()}")
        return done.stderr.strip()

    def inspect(self, kind: str, name: str) -> dict[str, object]:
        """``docker KIND inspect NAME`` as data."""
        (found,) = json.loads(self.output(kind, "inspect", name))
        assert isinstance(found, dict)
        return found

    def log(self) -> str:
        """Everything every start of this daemon logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def remove_all(self) -> None:
        """Remove every container and every network it made (releasing their addresses)."""
        containers = self.output("ps", "--all", "--quiet").split()
        if containers:
            self.docker("rm", "--force", *containers)
        for network in sorted(self.networks):
            if network in self.output("network", "ls", "--quiet", "--no-trunc").split():
                self.docker("network", "rm", network)

    def close(self) -> None:
        """Stop the daemon, delete the bridges it left and remove its dir."""
        try:
            if self.running():
                self.remove_all()
        finally:
            self.stop()
            for network in self.networks:
                bridge = f"br-{network[:12]}"
                if Path(f"/sys/class/net/{bridge}").exists():
                    run(["ip", "link", "delete", bridge])
            if _mount_points(self.root):
                raise RuntimeError(f"mounts left under {self.root}: {_mount_points(self.root)}")
            shutil.rmtree(self.root)
