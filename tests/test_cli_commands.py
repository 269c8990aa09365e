"""``ipamkit``'s commands: built-in ones, and those other distributions contribute."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httptools
import pluggy
import pytest

import ipamkit
from ipamkit.cli import main, status

ROOT = Path(__file__).resolve().parents[1]

GREETING = """
    NAME = "greet"
    HELP = "say hello"

    def add_arguments(parser):
        parser.add_argument("who")

    def run(args):
        print(f"hello {args.who}")
        return 0
"""


def _dist(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A site with ipamkit installed and nothing else of it: no conformance suite."""
    site = tmp_path / "site"
    site.mkdir()
    for package in (ipamkit, pluggy, httptools):
        source = Path(package.__file__ or "").parent
        (site / source.name).symlink_to(source)
    _dist(site, "ipamkit", "[console_scripts]\nipamkit = ipamkit.cli:main\n", {})
    return site


def _ipamkit(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, so only what the site holds is installed.
    return subprocess.run(
        [sys.executable, "-S", "-m", "ipamkit", *args],
        env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_distribution_contributes_a_command(bare: Path) -> None:
    _dist(bare, "greeter", "[ipamkit.commands]\ngreet = greeter\n", {"greeter": GREETING})
    done = _ipamkit(bare, "greet", "world")
    assert (done.returncode, done.stdout) == (0, "hello world\n"), done.stderr
    listing = _ipamkit(bare, "--help").stdout
    assert "greet" in listing
    assert "say hello" in listing
    version = _ipamkit(bare, "--version").stdout
    assert "greet: from greeter 1.0" in version


def test_without_the_suite_check_says_how_to_install_it(bare: Path) -> None:
    done = _ipamkit(bare, "check", "default", "--profile", "ci")
    assert done.returncode == status.NOT_INSTALLED
    assert done.stdout == ""
    assert done.stderr.startswith("ipamkit check: error: ")
    assert "python -m pip install ./conformance" in done.stderr
    assert "(needs ipamkit-conformance: not installed)" in _ipamkit(bare, "--help").stdout
    # The built-in commands are untouched by the absence.
    assert _ipamkit(bare, "drivers").returncode == 0


def test_the_install_hint_works_from_a_clone(bare: Path, tmp_path: Path) -> None:
    # The hint, run as it says from the root of the repository, installs the suite
    # (here into the bare site) so that the command is there.
    hint = _ipamkit(bare, "check", "x").stderr
    command = hint.rsplit("with: ", 1)[1].strip()
    assert command == "python -m pip install ./conformance"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(bare)]
    installed = subprocess.run(
        [*pip, *command.split()[4:]],  # the hint's own arguments, as it gives them
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    listing = _ipamkit(bare, "--help").stdout
    assert "not installed" not in listing
    assert "run the conformance suite" in listing


def test_a_broken_command_is_reported_and_hides_nothing(bare: Path) -> None:
    _dist(
        bare,
        "broken-cmd",
        "[ipamkit.commands]\nbroken = broken_cmd\nnotacommand = os\n",
        {"broken_cmd": "import nonexistent_dependency\n"},
    )
    done = _ipamkit(bare, "broken")
    assert done.returncode == status.NOT_INSTALLED
    assert "from broken-cmd 1.0 cannot be loaded" in done.stderr
    assert "No module named 'nonexistent_dependency'" in done.stderr
    assert "is no command named 'notacommand'" in _ipamkit(bare, "notacommand").stderr
    assert _ipamkit(bare, "drivers").returncode == 0


def test_a_name_two_distributions_claim_is_no_ones(bare: Path) -> None:
    for dist in ("first", "second"):
        _dist(bare, dist, f"[ipamkit.commands]\ngreet = {dist}_mod\n", {f"{dist}_mod": GREETING})
    done = _ipamkit(bare, "greet", "x")
    assert done.returncode == status.NOT_INSTALLED
    assert "two distributions contribute it" in done.stderr


def test_a_built_in_name_cannot_be_taken(bare: Path) -> None:
    _dist(bare, "taker", "[ipamkit.commands]\ndrivers = taker\n", {"taker": GREETING})
    done = _ipamkit(bare, "drivers")
    assert done.returncode == 0
    assert "NAME" in done.stdout
    assert "command 'drivers' from taker 1.0 ignored" in done.stderr


def test_version_names_ipamkit_and_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ipamkit 0.")
    pytest.importorskip("ipamkit_conformance")
    assert lines[1].startswith("  check: from ipamkit-conformance ")


def test_usage_mistakes_have_one_status_and_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["drivers", "--no-such-option"])
    assert exited.value.code == status.USAGE
    assert "ipamkit drivers: error: unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["serve", "no-such-driver"], status.DRIVER, "ipamkit serve: error: no IPAM driver named"),
        (
            ["serve", "null", "--driver-opt", "x"],
            status.USAGE,
            "ipamkit serve: error: --driver-opt",
        ),
        (["serve", "null", "--listen", "nowhere"], status.USAGE, "expected HOST:PORT"),
        (
            ["serve", "null", "--spin", "0.001", "--driver-threads", "2"],
            status.USAGE,
            "ipamkit serve: error: --spin and --driver-threads exclude each other",
        ),
    ],
)
def test_serve_uses_the_same_statuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    socket = ["--socket", str(tmp_path / "s.sock")] if "--listen" not in args else []
    assert main([*args, *socket]) == code
    assert message in capsys.readouterr().err
