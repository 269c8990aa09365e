"""What the Docker tests need of the machine, and stopping what they start, by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

#: Seconds a process gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``; under ``CI=true`` fail instead, so it cannot hide."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (a skip is a failure under CI=true)", pytrace=False)
    pytest.skip(reason)


def run(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a short host command (``ip``, ``umount``); its failure is an error with its output."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def stop_child(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a child, wait at most ``timeout`` seconds, then SIGKILL it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (a test's own temp dir, so only its processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in command:
            found.append(int(entry.name))
    return found


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a process that is not our child, wait at most ``timeout`` seconds, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return
    raise RuntimeError(f"process {pid} survived SIGKILL")
