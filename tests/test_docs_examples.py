"""Every code example of the docs runs here, so the docs cannot rot.

Sybil rather than Sphinx's doctest builder: it runs in the ordinary test run
(no Sphinx build, no Sphinx in the test environment), reports a failing example
with its page and line, and takes a small evaluator of ours for console sessions.
Python blocks and ``>>>`` examples of one page share a namespace, in page order.
The tutorial is followed in a fresh virtual environment by ``test_tutorial.py``.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import pytest
from sybil import Example, Sybil
from sybil.parsers import markdown
from sybil.parsers.rest import CodeBlockParser, DocTestParser, PythonCodeBlockParser, SkipParser

from ipamkit import errors
from tests.console import parse_session

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIAL = "tutorial.rst"
PAGES = sorted(DOCS.glob("*.rst"))


def _environment() -> dict[str, str]:
    # The commands run the tools of this environment, with no ipamkit settings
    # leaking in from the caller, in an 80-column terminal as the docs show.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPAMKIT_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["COLUMNS"] = "80"
    return env


def run_session(example: Example) -> str | None:
    """Run each command of a console block in a scratch folder and check its output."""
    with tempfile.TemporaryDirectory() as scratch:
        for command in parse_session(example.parsed):
            result = subprocess.run(
                command.line,
                shell=True,
                cwd=scratch,
                env=_environment(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            output = result.stdout + result.stderr
            if result.returncode != 0:
                return f"$ {command.line}\nexited with status {result.returncode}:\n{output}"
            mismatch = command.mismatch(output)
            if mismatch is not None:
                return mismatch
    return None


SYBIL = Sybil(
    parsers=[
        DocTestParser(optionflags=doctest.ELLIPSIS),
        PythonCodeBlockParser(),
        CodeBlockParser("console", run_session),
        SkipParser(),
    ],
    path=str(DOCS),
    patterns=["*.rst"],
)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.name != TUTORIAL], ids=lambda page: page.name
)
def test_examples_of_page(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("IPAMKIT_")]:
        monkeypatch.delenv(variable)
    for example in SYBIL.parse(page):
        try:
            example.evaluate()
        except unittest.SkipTest:
            continue  # the page says why, in its ".. skip: next" comment


# What a page may show: code that runs here (python, console), text that is no
# code (pictures, sample output), and files of this repository (literalinclude).
_BLOCK = re.compile(r"^\s*\.\. (code-block|code|sourcecode|literalinclude)::(.*)$")
_RUN_HERE = {"python", "console"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_example_is_run(page: Path) -> None:
    lines = page.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        where = f"{page.name}:{number}"
        assert not re.search(r"(^|[^:]):: *$", line) or line.lstrip().startswith(".. "), (
            f"{where}: a '::' literal block has no language, so nothing runs it"
        )
        match = _BLOCK.match(line)
        if match is None:
            continue
        directive, argument = match.group(1), match.group(2).strip()
        if directive == "literalinclude":
            assert (page.parent / argument).resolve().is_file(), f"{where}: no file {argument}"
            continue
        allowed = {"console", "text"} if page.name == TUTORIAL else _RUN_HERE | {"text"}
        assert argument in allowed, f"{where}: a {argument or 'plain'} block is not run by any test"
    if page.name == TUTORIAL:
        assert not any(line.lstrip().startswith(">>>") for line in lines), (
            f"{page.name}: the tutorial runs in a fresh environment; show console sessions"
        )


def test_the_contract_page_names_every_error() -> None:
    page = (DOCS / "contract.rst").read_text()
    missing = [name for name in errors.__all__ if f":class:`~ipamkit.errors.{name}`" not in page]
    assert not missing, f"contract.rst does not say when these are raised: {missing}"


def test_examples_of_the_readme() -> None:
    readme = Sybil(
        parsers=[markdown.PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS)],
        path=str(ROOT),
        patterns=["README.md"],
    )
    examples = list(readme.parse(ROOT / "README.md"))
    assert examples, "README.md shows no Python example"
    for example in examples:
        example.evaluate()
