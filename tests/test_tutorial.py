"""The driver author's tutorial, followed word for word in a fresh virtual environment.

The steps are read from ``docs/tutorial.rst`` itself, in page order: each console
command runs in one shell (so ``cd`` and ``activate`` carry over), and each file the
page shows is written where its caption says, with exactly the text Sphinx renders
(Sphinx's own reader applies the ``literalinclude`` options). The tutorial installs
ipamkit and ipamkit-conformance from a clone of the repository next to the project's
folder: this checkout is put there, and nothing else helps pip along.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sphinx.config import Config
from sphinx.directives.code import LiteralIncludeReader

from tests.console import Command, parse_session

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.rst"
EXAMPLE = ROOT / "drivers" / "example"
#: Where the tutorial expects the clone of ipamkit's repository: beside the project.
CLONE = "ipamkit"

_DIRECTIVE = re.compile(r"^\.\. (literalinclude|code-block):: *(.*)$")
_OPTION = re.compile(r"^   :([\w-]+):(?: (.*))?$")


@dataclass(frozen=True)
class File:
    path: str
    text: str


def _blocks(text: str) -> list[tuple[str, str, dict[str, str], str]]:
    """Return each top-level directive of interest: its name, argument, options and body."""
    lines = text.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        options: dict[str, str] = {}
        body: list[str] = []
        for following in lines[index + 1 :]:
            option = _OPTION.match(following)
            if option is not None and not body:
                options[option.group(1)] = option.group(2) or ""
            elif following.startswith("   ") or not following.strip():
                body.append(following[4:])
            else:
                break
        blocks.append((match.group(1), match.group(2), options, "\n".join(body).strip("\n")))
    return blocks


def tutorial_steps() -> list[Command | File]:
    """The tutorial's commands and files, in the order a reader meets them."""
    steps: list[Command | File] = []
    for directive, argument, options, body in _blocks(TUTORIAL.read_text()):
        if directive == "literalinclude":
            source = (TUTORIAL.parent / argument).resolve()
            text, _ = LiteralIncludeReader(str(source), options, Config()).read()
            steps.append(File(options["caption"], text))
        elif argument == "console":
            steps.extend(parse_session(body))
    return steps


def test_the_tutorial_shows_the_whole_example_driver() -> None:
    """The files the tutorial builds up are exactly those of ``drivers/example``."""
    shown: dict[str, str] = {}
    for step in tutorial_steps():
        if isinstance(step, File):
            shown[step.path] = shown.get(step.path, "") + step.text
    for path, text in shown.items():
        assert (EXAMPLE / path).read_text() == text, f"the tutorial shows another {path}"
    assert set(shown) | {"ipamkit_example/py.typed"} == {
        str(p.relative_to(EXAMPLE)) for p in EXAMPLE.rglob("*") if p.is_file() and _kept(p)
    }


def _kept(path: Path) -> bool:
    # Files a build or a test run leaves behind are no part of the driver.
    return not any(
        part.startswith(".") or part == "__pycache__" or part.endswith(".egg-info")
        for part in path.relative_to(EXAMPLE).parts
    )


def _script(steps: list[Command | File], files: Path, outputs: Path) -> str:
    # -e and pipefail stop at the first failing step; no -u, as in a reader's shell.
    lines = ["set -eo pipefail"]
    written: set[str] = set()
    for number, step in enumerate(steps):
        if isinstance(step, Command):
            lines.append(f"echo {number} > {outputs}/last")
            lines.append(f"{{ {step.line}\n}} > {outputs}/{number} 2>&1")
        else:
            (files / str(number)).write_text(step.text)
            redirect = ">>" if step.path in written else ">"
            lines.append(f"cat {files}/{number} {redirect} {shlex.quote(step.path)}")
            written.add(step.path)
    lines.append(f"pwd > {outputs}/project")
    return "\n".join(lines) + "\n"


def _environment(bin_dir: Path, cache: Path) -> dict[str, str]:
    # A reader's shell: no virtual environment active, the Python under test as
    # python3, and nothing from this test run's environment or settings.
    own_bin = str(Path(sys.prefix) / "bin")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != own_bin]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IPAMKIT_", "PYTHON")) and k not in ("VIRTUAL_ENV", "PATH")
    }
    env["PATH"] = os.pathsep.join([str(bin_dir), *path])
    # ipamkit check keeps hypothesis' examples in the user's cache: this test's own.
    env["XDG_CACHE_HOME"] = str(cache)
    return env


@pytest.mark.slow
def test_following_the_tutorial_word_for_word_yields_a_working_driver(tmp_path: Path) -> None:
    files, outputs, work, bin_dir, cache = (
        tmp_path / name for name in ("files", "outputs", "work", "bin", "cache")
    )
    for folder in (files, outputs, work, bin_dir):
        folder.mkdir()
    (work / CLONE).symlink_to(ROOT)
    (bin_dir / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))

    steps = tutorial_steps()
    result = subprocess.run(
        ["bash", "-c", _script(steps, files, outputs)],
        cwd=work,
        env=_environment(bin_dir, cache),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    last = int((outputs / "last").read_text())
    for number, step in enumerate(steps[: last + 1]):
        if not isinstance(step, Command):
            continue
        output = (outputs / str(number)).read_text()
        if number == last and result.returncode != 0:
            pytest.fail(f"$ {step.line}\nfailed ({result.returncode}):\n{output}")
        mismatch = step.mismatch(output)
        if mismatch is not None:
            pytest.fail(mismatch)
    assert result.returncode == 0, result.stderr

    project = Path((outputs / "project").read_text().strip())
    check = "import ipamkit; d = ipamkit.Host().driver('example'); assert not d.is_builtin()"
    subprocess.run([project / ".venv" / "bin" / "python", "-c", check], check=True)
