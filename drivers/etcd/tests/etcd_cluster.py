"""Real etcd members on loopback ports, for the tests, the benchmark and tox.

Each member is an ``etcd`` process with its data under a temporary folder,
stopped by its PID; every wait is bounded. As a script it runs a command with
one member up, ``@endpoints@`` in its arguments replaced by the member's URL:

    python etcd_cluster.py -- ipamkit check etcd --driver-opt endpoints=@endpoints@
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "Cluster", "EtcdMissing", "etcd_binary"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class EtcdMissing(Exception):
    """etcd cannot be started here; the message says why."""


def etcd_binary() -> str:
    """The path of the ``etcd`` server, or :class:`EtcdMissing`."""
    path = shutil.which("etcd")
    if path is None:
        raise EtcdMissing(
            "no etcd binary on PATH (Debian: apt-get install -y etcd-server etcd-client)"
        )
    return path


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class Certificates:
    """A CA, a certificate for 127.0.0.1 signed by it, and a client certificate."""

    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]

    @classmethod
    def make(cls, folder: Path) -> Certificates:
        """Make them with the openssl command; EtcdMissing if it is not there."""
        if shutil.which("openssl") is None:
            raise EtcdMissing("no openssl command to make TLS certificates with")
        folder.mkdir(parents=True, exist_ok=True)
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

        run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca")
        # etcd's gateway dials its own gRPC port with the server's certificate.
        for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
            subject = f"/CN={name}"
            run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
            (folder / f"{name}.ext").write_text(
                f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"
            )
            run(
                "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext",
            )  # fmt: skip
        pair = lambda name: (folder / f"{name}.pem", folder / f"{name}.key")  # noqa: E731
        return cls(folder / "ca.pem", pair("server"), pair("client"))


@dataclass
class Member:
    """One etcd process of a cluster."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class Cluster:
    """``size`` etcd members on loopback, under ``workdir``; clients need TLS with ``tls``.

    With ``in_memory``, the members' data is in a folder of ``/dev/shm`` (where
    there is one), removed by :meth:`stop`: etcd's fsync per write costs far
    more on this machine's disk than the rest of a transaction (about 1,600
    txns/s against 2,650), and the tests check what etcd agreed to, which a
    member killed and restarted keeps all the same. The benchmark keeps its
    data on disk, as a deployment does.
    """

    def __init__(
        self,
        size: int,
        workdir: Path | str,
        tls: Certificates | None = None,
        *,
        in_memory: bool = False,
    ) -> None:
        self._binary = etcd_binary()
        self.tls = tls
        ports = _free_ports(2 * size)
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        self._memory = (
            tempfile.TemporaryDirectory(prefix="ipamkit-etcd-", dir="/dev/shm")
            if in_memory and os.path.isdir("/dev/shm")
            else None
        )
        data = Path(self._memory.name) if self._memory is not None else root
        self.members = [
            Member(
                f"m{i}", ports[2 * i], ports[2 * i + 1], data / f"m{i}", "https" if tls else "http"
            )
            for i in range(size)
        ]
        self._initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self._logs = root

    @property
    def endpoints(self) -> list[str]:
        """The client URLs of every member."""
        return [member.url for member in self.members]

    def start(self) -> None:
        """Start every member and wait until each answers; EtcdMissing if one cannot."""
        for member in self.members:
            self._spawn(member, "new")
        for member in self.members:
            self._wait_ready(member)

    def _spawn(self, member: Member, state: str) -> None:
        log = open(self._logs / f"{member.name}.log", "ab")  # noqa: SIM115  # the child keeps it
        member.process = subprocess.Popen(
            [
                self._binary,
                "--name",
                member.name,
                "--data-dir",
                str(member.data_dir),
                "--listen-client-urls",
                member.url,
                "--advertise-client-urls",
                member.url,
                "--listen-peer-urls",
                member.peer_url,
                "--initial-advertise-peer-urls",
                member.peer_url,
                "--initial-cluster",
                self._initial,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                f"ipamkit-{os.getpid()}-{id(self)}",
                *self._tls_flags(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def _tls_flags(self) -> list[str]:
        if self.tls is None:
            return []
        cert, key = self.tls.server
        return [
            f"--cert-file={cert}",
            f"--key-file={key}",
            f"--trusted-ca-file={self.tls.ca}",
            "--client-cert-auth",
        ]

    def _context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(*map(str, self.tls.client))
        return context

    def _wait_ready(self, member: Member) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert member.process is not None
            if member.process.poll() is not None:
                raise EtcdMissing(f"etcd member {member.name} exited: {self._tail(member)}")
            try:
                self.status(member)
                if self.leader() is not None:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise EtcdMissing(f"etcd member {member.name} did not answer in {_START_TIMEOUT:g} s")

    def _tail(self, member: Member) -> str:
        log = self._logs / f"{member.name}.log"
        return log.read_text(errors="replace")[-600:] if log.exists() else ""

    def status(self, member: Member) -> dict[str, object]:
        """The member's ``maintenance/status``."""
        request = urllib.request.Request(
            member.url + "/v3/maintenance/status", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=2, context=self._context()) as reply:
            answer: dict[str, object] = json.loads(reply.read())
            return answer

    def leader(self) -> int | None:
        """The index of the leader among the running members, or None."""
        for index, member in enumerate(self.members):
            if member.process is None or member.process.poll() is not None:
                continue
            try:
                status = self.status(member)
            except OSError:
                continue
            header = status.get("header")
            leader = status.get("leader")
            if isinstance(header, dict) and leader and header.get("member_id") == leader:
                return index
        return None

    def wait_leader(self, timeout: float = _START_TIMEOUT) -> int:
        """Wait until a leader is elected; return its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise EtcdMissing(f"no etcd leader after {timeout:g} s")

    def kill(self, index: int) -> None:
        """SIGKILL one member, by its PID."""
        member = self.members[index]
        if member.process is not None:
            os.kill(member.process.pid, signal.SIGKILL)
            member.process.wait(timeout=_STOP_TIMEOUT)
            member.process = None

    def restart(self, index: int) -> None:
        """Start a killed member again, with its data."""
        member = self.members[index]
        self._spawn(member, "existing")
        self._wait_ready(member)

    def stop(self) -> None:
        """Stop every member by PID: SIGTERM, then SIGKILL after a bounded wait; remove
        the data kept in memory."""
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
        for member in self.members:
            if member.process is None:
                continue
            try:
                member.process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(member.process.pid, signal.SIGKILL)
                member.process.wait(timeout=_STOP_TIMEOUT)
            member.process = None
        if self._memory is not None:
            self._memory.cleanup()

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Run ``argv`` (after ``--``) with one member up, ``@endpoints@`` replaced by its URL.

    Where etcd cannot start the command is skipped with the reason (exit 0),
    except under ``CI=true``, where that is a failure.
    """
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: etcd_cluster.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ipamkit-etcd-") as workdir:
        try:
            with Cluster(1, workdir, in_memory=True) as cluster:  # stops what started if one fails
                endpoints = ",".join(cluster.endpoints)
                return subprocess.call([arg.replace("@endpoints@", endpoints) for arg in argv])
        except EtcdMissing as exc:
            if os.environ.get("CI", "").lower() == "true":
                print(f"etcd is required under CI=true: {exc}", file=sys.stderr)
                return 1
            print(f"SKIPPED (etcd cannot start: {exc}): {' '.join(argv)}")
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
