"""``ipamkit serve default --driver-opt state=PATH``: a restarted plugin loses nothing."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipamkit
from ipamkit import Capability, errors

L = "LocalDefault"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ipk-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(socket: Path, state: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``ipamkit serve default`` on ``state``; return it and its line saying how it went."""
    command = [sys.executable, "-m", "ipamkit", "serve", "default", "--socket", str(socket)]
    process = subprocess.Popen(
        [*command, "--driver-opt", f"state={state}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = process.stderr
    assert stderr is not None
    said: list[str] = []

    def read() -> None:  # past any warning, to the line that says serving or failing
        for line in stderr:
            if "serving" in line or "error" in line:
                said.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    if not said:
        process.kill()
        process.wait(timeout=10)
        pytest.fail("ipamkit serve said neither serving nor error within 60 s")
    return process, said[0]


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stderr is not None:
        process.stderr.close()


def client(socket: Path) -> ipamkit.Ipam:
    return ipamkit.Host(options={"remote": {"url": str(socket)}}).driver("remote")


def test_a_restarted_plugin_resumes_and_a_second_one_is_refused(short_dir: Path) -> None:
    socket, state = short_dir / "default.sock", short_dir / "default.db"
    first, said = serve(socket, state)
    try:
        assert "serving 'default'" in said, said
        host = ipamkit.Host(options={"remote": {"url": str(socket)}})
        assert host.capability("remote") == Capability(requires_request_replay=False)
        remote = host.driver("remote")
        pool_id = remote.request_pool(L, "10.5.0.0/16").pool_id
        held = [str(remote.request_address(pool_id).address) for _ in range(3)]
        remote.release_address(pool_id, held[0].split("/")[0])
        chosen = remote.request_pool(L).pool_id
        # A second plugin on the same file does not start, and says who holds it.
        second, refusal = serve(short_dir / "other.sock", state)
        assert second.wait(timeout=60) == 1
        stop(second)
        assert f"state file {state} is in use by pid {first.pid} on host " in refusal
    finally:
        stop(first)
    again, said = serve(socket, state)
    try:
        assert "serving 'default'" in said, said
        remote = client(socket)
        with pytest.raises(errors.PoolOverlapError):
            remote.request_pool(L, "10.5.0.0/16")
        assert str(remote.request_address(pool_id).address) == held[0]  # the released one
        assert str(remote.request_address(pool_id).address) == "10.5.0.4/16"
        assert remote.request_pool(L).pool_id != chosen  # the rotation went on
        remote.release_pool(chosen)
    finally:
        stop(again)
