"""``ipamkit check``: the suite as a command, for a person and for CI."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ipamkit.cli import status

# Each test runs the suite in subprocesses: minutes in all, so only one Python runs them.
pytestmark = pytest.mark.slow

pytest.importorskip(
    "ipamkit_conformance",
    reason="the conformance suite is not installed: pip install -e conformance",
)

#: A driver that refuses every explicit pool: one bug that would block most clauses.
POOLS_REFUSED = """
from ipamkit import hookimpl
from ipamkit.errors import PoolOverlapError
from refdrivers import RefIpam

class PoolsRefused(RefIpam):
    def request_pool(self, address_space, pool="", sub_pool="", options=None, v6=False):
        if pool:
            raise PoolOverlapError(f"{pool} overlaps everything, says this driver")
        return super().request_pool(address_space, pool, sub_pool, options, v6)

@hookimpl
def ipamkit_register_drivers(registerer, options):
    registerer.register_ipam_driver("broken-pools-refused", PoolsRefused())
"""


#: The reference driver, counting the instances made and closed (into $COUNTED_REPORT).
COUNTED = """
import atexit, json, os
from ipamkit import hookimpl
from refdrivers import RefIpam

COUNTS = {"made": 0, "closed": 0}

class Counted(RefIpam):
    def __init__(self):
        super().__init__()
        COUNTS["made"] += 1

    def close(self):
        COUNTS["closed"] += 1

@atexit.register
def _report():
    with open(os.environ["COUNTED_REPORT"], "w") as report:
        json.dump(COUNTS, report)

@hookimpl
def ipamkit_register_drivers(registerer, options):
    registerer.register_ipam_driver("reference-counted", Counted())
"""


@pytest.fixture(scope="module")
def site(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference drivers plus this module's own."""
    root = tmp_path_factory.mktemp("check-site")
    for module, driver, source in (
        ("pools_refused", "broken-pools-refused", POOLS_REFUSED),
        ("counted", "reference-counted", COUNTED),
    ):
        (root / f"{module}.py").write_text(source)
        info = root / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[ipamkit.drivers]\n{driver} = {module}\n")
    return root


def _env(site: Path, installed: Path, home: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join([str(site), str(installed)]),
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
    }


def _check(
    site: Path, installed: Path, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipamkit", "check", *args],
        cwd=cwd,
        env={**_env(site, installed, cwd), **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


Check = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def check(site: Path, installed: Path, tmp_path: Path) -> Check:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return _check(site, installed, tmp_path, *args, **env)

    return run


def _table(stdout: str) -> dict[str, list[str]]:
    """The clause table's rows (without their wrapped lines): clause to the other cells."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CLAUSE "))
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return {line.split()[0]: line.split()[1:] for line in lines[start + 2 : end] if line[:1] == "C"}


def test_check_prints_the_declarations_a_table_and_writes_json(
    check: Check, tmp_path: Path
) -> None:
    done = check("reference", "--json", "report.json")
    assert done.returncode == status.OK, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ipamkit-conformance: driver 'reference' (features: ")
    assert "pool reading: exclusive" in lines[0]
    assert lines[1].split() == ["CLAUSE", "RESULT", "REASON"]
    table = lines[1 : lines.index("", 1)]
    assert max(len(line) for line in table) <= 100
    assert _table(done.stdout)["C11-refcounted-reading"][0] == "skipped"
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["ok"], report["driver"]) == (True, "reference")
    outcomes = {c["id"]: c["outcome"] for c in report["clauses"]}
    assert outcomes["C07-pools-never-overlap"] == "passed"
    # The example database lives in the user's cache, not where the command ran.
    assert not (tmp_path / ".hypothesis").exists()
    assert (tmp_path / ".cache" / "ipamkit" / "hypothesis").is_dir()


def test_json_to_stdout_is_only_json(check: Check) -> None:
    done = check("null", "--json", "-", "--clause", "C01")
    report = json.loads(done.stdout)
    assert report["driver"] == "null"
    assert "CLAUSE" in done.stderr


def test_a_failing_driver_shows_the_reason_and_the_replay_not_tracebacks(check: Check) -> None:
    done = check("broken-out-of-range-accepted", "--clause", "C20")
    assert done.returncode == status.FAILURE
    rows = _table(done.stdout)
    assert rows["C20-address-out-of-range"][:2] == ["failed", "expected"]
    assert list(rows) == ["C20-address-out-of-range"]
    assert "C20-address-out-of-range failed: expected IPOutOfRangeError" in done.stdout
    assert "the shortest replay (paste into a test):" in done.stdout
    assert "ipam = ipamkit.Host(options={'broken-out-of-range-accepted': {}})" in done.stdout
    assert "Traceback" not in done.stdout
    assert "_pytest" not in done.stdout + done.stderr
    verbose = check("broken-out-of-range-accepted", "--clause", "C20", "-v")
    assert "FAILED test_addresses.py::test_address_out_of_range" in verbose.stdout
    assert "ClauseViolation" in verbose.stdout


def test_a_pool_refused_blocks_other_clauses_once(check: Check) -> None:
    done = check("broken-pools-refused", "--profile", "ci")
    assert done.returncode == status.FAILURE
    rows = _table(done.stdout)
    assert rows["C04-explicit-pool"][0] == "failed"
    blocked = [c for c, row in rows.items() if row[0] == "blocked"]
    assert "C14-address-in-pool" in blocked
    assert len(blocked) >= 5
    text = " ".join(done.stdout.split())
    assert "blocked by C04-explicit-pool: a pool was refused: PoolOverlapError" in text
    assert "C04-explicit-pool failed: PoolOverlapError: " in text
    assert "; blocks C03-address-spaces-independent, " in text
    assert "C14-address-in-pool, " in text.split("; blocks ", 1)[1]


def test_a_driver_declaring_nothing_is_warned_about_and_fails_strict(check: Check) -> None:
    done = check("reference-undeclared")
    assert done.returncode == status.OK
    assert "(features: none; pool reading: exclusive" in done.stdout
    assert "WARNING: " in done.stdout
    assert "clauses were skipped" in done.stdout
    strict = check("reference-undeclared", "--strict")
    assert strict.returncode == status.FAILURE
    assert "--strict: skipped clauses fail the run" in strict.stdout


def test_probing_finds_what_an_undeclared_driver_offers(check: Check) -> None:
    done = check("reference-undeclared", "--probe", "--pool-reading", "exclusive")
    assert done.returncode == status.OK, done.stdout + done.stderr
    header = done.stdout.split("CLAUSE", 1)[0]
    assert "features: chosen_ipv6_pools, chosen_pools, dynamic_addresses, exact_errors, " in header
    assert "probed: explicit_pools: yes (request_pool('alpha', '10.223.255.0/24') was granted)" in (
        header
    )
    assert "probed: thread_safe: no (not probed" in header
    assert "WARNING" not in done.stdout
    rows = _table(done.stdout)
    assert rows["C25-thread-safety"][0] == "skipped"
    assert sum(row[0] == "passed" for row in rows.values()) >= 23


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["no-such-driver"], status.DRIVER, "cannot load IPAM driver 'no-such-driver'"),
        (["null", "--driver-opt", "novalue"], status.USAGE, "--driver-opt wants KEY=VALUE"),
        (["null", "--pool-opt", "novalue"], status.USAGE, "--pool-opt wants KEY=VALUE"),
        (["null", "--address-opt", "x"], status.USAGE, "--address-opt wants KEY=VALUE"),
        (["null", "--clause", "C99"], status.USAGE, "--clause 'C99' names no clause"),
        (["null", "--peer-opt", "host"], status.USAGE, "--peer-opt wants KEY=VALUE"),
        (["null", "--restart-timeout", "0"], status.USAGE, "--restart-timeout must be positive"),
        (["null", "--restart-timeout", "nan"], status.USAGE, "--restart-timeout must be positive"),
        (
            ["reference-file", "--driver-opt", "state=s.json", "--peer-opt", "colour=blue"],
            status.USAGE,
            "cannot load the peer of 'reference-file'",
        ),
        (["null", "--feature", "ipv7"], status.USAGE, "argument --feature: invalid choice"),
        ([], status.USAGE, "give the driver to check"),
    ],
)
def test_usage_errors(check: Check, args: list[str], code: int, message: str) -> None:
    done = check(*args)
    assert done.returncode == code
    assert "ipamkit check: error: " in done.stderr
    assert message in done.stderr
    assert done.stdout == ""


def test_a_missing_plugin_fails_after_a_short_wait_that_retry_lengthens(
    check: Check, site: Path, installed: Path, tmp_path: Path
) -> None:
    sock = tmp_path / "late.sock"
    done = check("remote", "--driver-opt", f"url={sock}")
    assert done.returncode == status.DRIVER
    assert f'cannot reach plugin "remote" at unix://{sock} (retried for 2 s)' in done.stderr
    assert "start the plugin first, or give --driver-opt retry=SECONDS" in done.stderr
    # With retry given, the check waits that long for a plugin that comes late.
    options = ["--driver-opt", f"url={sock}", "--driver-opt", "retry=60", "--clause", "C01"]
    late = subprocess.Popen(
        [sys.executable, "-m", "ipamkit", "check", "remote", *options],
        cwd=tmp_path,
        env=_env(site, installed, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # longer than the short wait
        assert late.poll() is None
        with _served(sock):
            stdout, stderr = late.communicate(timeout=120)
    finally:
        late.kill()
    assert late.returncode == status.OK, stdout + stderr
    assert _table(stdout)["C01-default-address-spaces"][0] == "passed"


def test_an_unknown_xfail_and_options_for_features_the_driver_lacks_are_warnings(
    check: Check,
) -> None:
    done = check(
        "null",
        "--xfail",
        "C99-no-such-clause",
        "--peer-opt",
        "host=b",
        "--restart-cmd",
        "true",
        "--clause",
        "C01",
    )
    assert done.returncode == status.OK
    for warning in (
        "xfail 'C99-no-such-clause' names no clause of this suite; ignored",
        "--peer-opt given, but the driver is not shared; ignored",
        "--restart-cmd given, but the driver is not persistent; ignored",
    ):
        assert f"ipamkit check: warning: {warning}" in done.stderr


def test_a_persistent_driver_is_restarted_with_the_restart_command(
    check: Check, tmp_path: Path
) -> None:
    marks = tmp_path / "restarts"
    state = f"state={tmp_path / 'state.json'}"
    done = check(
        "reference-file", "--driver-opt", state, "--restart-cmd", f"echo restarted >> {marks}",
        "--clause", "C27",
    )  # fmt: skip
    assert done.returncode == status.OK, done.stdout + done.stderr
    assert _table(done.stdout)["C27-restart-keeps-state"][0] == "passed"
    assert set(marks.read_text().splitlines()) == {"restarted"}
    failing = check(
        "reference-file", "--driver-opt", state, "--restart-cmd", "echo no plugin >&2; exit 3",
        "--restart-timeout", "5", "--clause", "C27",
    )  # fmt: skip
    assert failing.returncode == status.FAILURE
    assert "exited with 3: no plugin" in failing.stdout


def test_the_peer_of_a_shared_driver_is_built_with_the_peer_options(
    check: Check, tmp_path: Path
) -> None:
    state = f"state={tmp_path / 'state.json'}"
    done = check("reference-file", "--driver-opt", state, "--peer-opt", "host=b", "--clause", "C30")
    assert done.returncode == status.OK, done.stdout + done.stderr
    assert _table(done.stdout)["C30-shared-pools"][0] == "passed"
    # A peer on a file of its own shares nothing with the first instance.
    other = f"state={tmp_path / 'other.json'}"
    apart = check("reference-file", "--driver-opt", state, "--peer-opt", other, "--clause", "C30")
    assert apart.returncode == status.FAILURE
    assert _table(apart.stdout)["C30-shared-pools"][0] == "failed"


def test_list_clauses(check: Check) -> None:
    done = check("--list-clauses")
    assert done.returncode == status.OK
    assert "C17-no-duplicate-addresses" in done.stdout
    assert len(_table(done.stdout)) == len(done.stdout.splitlines()) - 2


# -- remote plugins --------------------------------------------------------------


class _Plugin(BaseHTTPRequestHandler):
    """A plugin that answers errors with ``Err``, as network drivers do."""

    protocol_version = "HTTP/1.1"
    server: _PluginServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.replies.get(self.path.lstrip("/"), {"Err": "not implemented"})
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        super().__init__(path, _Plugin)
        self.replies = {
            "Plugin.Activate": {"Implements": ["IpamDriver"]},
            "IpamDriver.GetCapabilities": {"RequiresMACAddress": False},
            "IpamDriver.GetDefaultAddressSpaces": {
                "LocalDefaultAddressSpace": "local",
                "GlobalDefaultAddressSpace": "global",
            },
            "IpamDriver.RequestPool": {"Err": "pools are not my business"},
        }


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "plugin.sock")
    server = _PluginServer(path)
    worker = threading.Thread(target=server.serve_forever)
    worker.start()
    yield path
    server.shutdown()
    server.server_close()
    worker.join(timeout=10)


def test_a_remote_failure_shows_the_wire_exchange_and_says_err_is_dropped(
    check: Check, plugin: str, tmp_path: Path
) -> None:
    done = check(
        "remote",
        "--driver-opt",
        f"url={plugin}",
        "--feature",
        "explicit_pools",
        "--clause",
        "C04",
        "--wire-log",
        "wire.jsonl",
    )
    assert done.returncode == status.FAILURE
    assert "the plugin's last exchange:" in done.stdout
    assert '> POST /IpamDriver.RequestPool {"AddressSpace":"local"' in done.stdout
    assert '< 200 {"Err": "pools are not my business"}' in done.stdout
    assert 'Docker\'s IPAM client reads only "Error", so Docker drops this error' in (
        " ".join(done.stdout.split())
    )
    log = [json.loads(line) for line in (tmp_path / "wire.jsonl").read_text().splitlines()]
    assert "IpamDriver.RequestPool" in {e["method"] for e in log}
    assert all(e["test"] for e in log if e["method"] == "IpamDriver.RequestPool")


def test_a_plugin_that_stops_answering_stops_the_run_with_one_message(
    site: Path, installed: Path, tmp_path: Path
) -> None:
    sock, log = tmp_path / "default.sock", tmp_path / "wire.jsonl"
    with _served(sock) as server:
        options = ["--driver-opt", f"url={sock}", "--driver-opt", "retry=0", "--probe"]
        check = subprocess.Popen(
            [sys.executable, "-m", "ipamkit", "check", "remote", *options, "--wire-log", str(log)],
            cwd=tmp_path,
            env=_env(site, installed, tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Once the tests are well under way, the plugin goes away.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _lines(log) < 300:
            time.sleep(0.1)
        server.kill()
        stdout, stderr = check.communicate(timeout=300)
    assert check.returncode == status.FAILURE, stdout + stderr
    assert "the plugin stopped answering, so the run stops here" in stdout
    rows = _table(stdout)
    assert sum(row[:2] == ["not", "run"] for row in rows.values()) >= 5
    failed = sum(row[0] == "failed" for row in rows.values())
    assert failed <= 2
    # The stop's one message, and each failed clause's reason in its row and its details.
    assert stdout.count("cannot reach plugin") <= 1 + 2 * failed


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@contextlib.contextmanager
def _served(sock: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``ipamkit serve default`` on ``sock``, stopped (by its PID) at the end."""
    server = subprocess.Popen(
        [sys.executable, "-m", "ipamkit", "serve", "default", "--socket", str(sock)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server
    finally:
        server.kill()
        server.wait(timeout=10)


def test_the_suite_closes_every_driver_it_makes(check: Check, tmp_path: Path) -> None:
    # A remote driver's connections go with close(): per test, per example of the
    # state machine, and the one loaded to read the declarations.
    report = tmp_path / "counted.json"
    done = check("reference-counted", COUNTED_REPORT=str(report))
    assert done.returncode == status.OK, done.stdout + done.stderr
    counts = json.loads(report.read_text())
    assert counts["made"] > 140
    assert counts["closed"] == counts["made"]


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_on_a_terminal_progress_and_colour(
    site: Path, installed: Path, tmp_path: Path, no_color: bool
) -> None:
    # A real terminal (a pseudo-terminal) for both streams, as a person runs it.
    leader, follower = pty.openpty()
    env = {**_env(site, installed, tmp_path), "TERM": "xterm"}
    if no_color:
        env["NO_COLOR"] = "1"
    with subprocess.Popen(
        [sys.executable, "-m", "ipamkit", "check", "null", "--clause", "C01", "--clause", "C02"],
        cwd=tmp_path,
        env=env,
        stdout=follower,
        stderr=follower,
    ) as check:
        os.close(follower)
        output = b""
        with contextlib.suppress(OSError):  # EIO once the command has exited
            while chunk := os.read(leader, 4096):
                output += chunk
        os.close(leader)
    assert check.returncode == status.OK
    text = output.decode()
    assert "\r\x1b[Kipamkit check: 1/" in text
    assert ("\x1b[32mpassed" in text) is not no_color
