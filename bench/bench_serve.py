"""``ipamkit serve`` under 1, 8 and 1,000 concurrent keep-alive callers, beside the threaded server.

    python bench/bench_serve.py [--calls N] [--callers 1,8,1000] [--quick]

Each run starts a fresh server process serving ``default`` on a unix socket;
every caller opens one connection and keeps it, as Docker's daemon does, and
makes RequestAddress + ReleaseAddress pairs on it; all callers connect before
the first call. Printed for each: calls per second (wall clock), errors (any
reply other than a 200 without ``Error``, or a broken connection), the server's
CPU time per call (``/proc/PID/stat``) and its peak RSS (``VmHWM``).

Five servers are measured in the same run:

- ``ipamkit``: the event-loop server, calling the driver itself, the calls
  not logged (the level a library user gets by default);
- ``ipamkit, 4 threads``: the same, calling the driver from 4 threads
  (``--driver-threads 4``);
- ``ipamkit, logged``: the first, each call logged as ``ipamkit serve`` logs
  by default (its own logging set-up, level INFO, text lines, to ``/dev/null``
  for its standard error);
- ``ipamkit, spin=0``: the first, its idle loop never polling before it
  sleeps (see :mod:`ipamkit.protocol._spin`);
- ``threads``, the baseline: the thread-per-connection server this one
  replaced, exactly as it was, read with ``git show`` from commit
  ``BASELINE_COMMIT`` at run time (no copy of it is kept in the tree). Without
  git or that commit, the baseline is skipped and the reason printed.

The load comes from one asyncio process sharing the machine's two cores with
the server, so calls/s is the pair's, and the busier the machine the noisier.
The figures are printed, never judged: the exit status says only whether the
benchmark ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ipamkit import Host
from ipamkit.cli import serve as serve_command
from ipamkit.protocol import server as event_loop_server
from ipamkit.protocol import wire

#: main before the event-loop server: ipamkit/protocol/server.py with a thread per connection.
BASELINE_COMMIT = "476bd2d"
REPO = Path(__file__).resolve().parent.parent
POOL = {"AddressSpace": "LocalDefault", "Pool": "10.0.0.0/8", "SubPool": "", "Options": {}}


def _baseline_module(where: Path) -> ModuleType | str:
    """The baseline server module, or why it cannot be had."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{BASELINE_COMMIT}:ipamkit/protocol/server.py"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"git show {BASELINE_COMMIT} failed: {exc}"
    path = where / "threaded_server.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("threaded_server", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The servers measured: keyword arguments of open_unix_server, or the baseline.
KINDS = {
    "ipamkit": {},
    "ipamkit, 4 threads": {"driver_threads": 4},
    "ipamkit, logged": {},
    "ipamkit, spin=0": {"spin": 0.0},
}
BASELINE = "threads"


def serve(kind: str, path: str, baseline_dir: str) -> None:
    """The server process: serve ``default`` with the server ``kind`` until SIGTERM."""
    if kind == "ipamkit, logged":
        # ipamkit serve's own set-up, which logs to the standard error.
        devnull = open(os.devnull, "w")  # noqa: SIM115 (open as long as the server logs)
        with contextlib.redirect_stderr(devnull):
            serve_command._configure_logging(
                argparse.Namespace(log_format="text", log_level="info", verbose=False)
            )
    host = Host()
    driver, capability = host.driver("default"), host.capability("default")
    if kind == BASELINE:
        module = _baseline_module(Path(baseline_dir))
        assert isinstance(module, ModuleType), module
        server = module.open_unix_server(driver, capability, path)
    else:
        server = event_loop_server.open_unix_server(driver, capability, path, **KINDS[kind])
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()
    server.close()


def _head(path: str, body: bytes) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: \r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        len(body),
        body,
    )


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return int(head.split(b" ")[1]), await reader.readexactly(length), b"Connection: close" in head


@dataclass
class Tally:
    calls: int = 0
    errors: int = 0


async def _caller(path: str, pool_id: str, pairs: int, tally: Tally, start: asyncio.Event) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    await start.wait()
    done = 0
    while done < pairs:
        try:
            body = wire.REQUEST_ADDRESS.encode_request(pool_id, "", None)
            writer.write(_head(wire.REQUEST_ADDRESS.path, body))
            status, reply, closing = await _reply(reader)
            tally.calls += 1
            if status != 200 or b'"Error"' in reply:
                tally.errors += 1
            else:
                address = wire.REQUEST_ADDRESS.read_reply(reply, status=200)[0].split("/")[0]
                body = wire.RELEASE_ADDRESS.encode_request(pool_id, address)
                writer.write(_head(wire.RELEASE_ADDRESS.path, body))
                status, reply, closing = await _reply(reader)
                tally.calls += 1
                tally.errors += status != 200 or b'"Error"' in reply
        except (OSError, asyncio.IncompleteReadError):
            tally.errors += 1
            closing = True
        done += 1
        if closing:  # a refusal, or a broken connection: a new one, as Docker's client does
            writer.close()
            reader, writer = await asyncio.open_unix_connection(path)
    writer.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(path: str, callers: int, pairs: int, pid: int) -> tuple[Tally, float, float]:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(_head(wire.REQUEST_POOL.path, wire.encode({**POOL, "V6": False})))
    _, reply, _ = await _reply(reader)
    writer.close()
    pool_id = wire.REQUEST_POOL.read_reply(reply, status=200)[0]
    tally, start = Tally(), asyncio.Event()
    tasks = [
        asyncio.create_task(_caller(path, pool_id, pairs, tally, start)) for _ in range(callers)
    ]
    await asyncio.sleep(0.5)  # every connection is open
    cpu, started = _cpu_seconds(pid), time.perf_counter()
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    return tally, time.perf_counter() - started, _cpu_seconds(pid) - cpu


@dataclass
class Measured:
    rate: float
    errors: int
    cpu_per_call: float
    peak_rss_mib: float


def run(kind: str, callers: int, calls: int, baseline_dir: str) -> Measured:
    """One run: a fresh server of ``kind``, ``callers`` callers making ``calls`` calls."""
    with tempfile.TemporaryDirectory(prefix="ipk-bench-", dir="/tmp") as where:
        path = os.path.join(where, "serve.sock")
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, path, baseline_dir],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == "ready\n"
            pairs = max(1, calls // (2 * callers))
            tally, seconds, cpu = asyncio.run(_load(path, callers, pairs, server.pid))
            rss = _peak_rss_mib(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    return Measured(tally.calls / seconds, tally.errors, cpu / tally.calls, rss)


def _row(callers: int, kind: str, runs: list[Measured]) -> str:
    rate = statistics.median(m.rate for m in runs)
    cpu = statistics.median(m.cpu_per_call for m in runs)
    return (
        f"{callers:>7,}  {kind:<19} {rate:>9,.0f} calls/s  "
        f"{sum(m.errors for m in runs):>6,} errors  {cpu * 1e6:>7.1f} us CPU/call  "
        f"peak RSS {max(m.peak_rss_mib for m in runs):6.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per run")
    parser.add_argument("--callers", default="1,8,1000", help="concurrent callers per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, interleaved")
    parser.add_argument(
        "--quick", action="store_true", help="one round of 1,000 calls, 1, 8 and 200 callers"
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    calls, callers, rounds = (
        (1000, "1,8,200", 1) if args.quick else (args.calls, args.callers, args.rounds)
    )
    with tempfile.TemporaryDirectory() as baseline_dir:
        baseline = _baseline_module(Path(baseline_dir))
        kinds = list(KINDS)
        print(
            f"serving default on a unix socket: RequestAddress + ReleaseAddress, {calls:,} calls "
            f"per run; median of {rounds} interleaved runs (errors: their sum)"
        )
        if isinstance(baseline, str):
            print(f"baseline skipped: {baseline}")
        else:
            kinds.append(BASELINE)
            print(f"baseline {BASELINE!r}: ipamkit/protocol/server.py at {BASELINE_COMMIT}")
        for count in (int(c) for c in callers.split(",")):
            runs: dict[str, list[Measured]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind in kinds:
                    runs[kind].append(run(kind, count, calls, baseline_dir))
            for kind in kinds:
                print(_row(count, kind, runs[kind]), flush=True)


if __name__ == "__main__":
    main()
