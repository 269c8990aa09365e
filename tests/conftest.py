"""Install small driver plugins as real distributions for the host to discover."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# A plugin that registers one working driver per declared name, with the options
# it received kept on the driver so tests can see them.
GOOD_PLUGIN = """
    from ipamkit import Capability, hookimpl
    from ipamkit.drivers.null import NullIpam

    IMPORTS = []

    class Recording(NullIpam):
        def __init__(self, options):
            self.options = dict(options)

        def is_builtin(self):
            return False

    @hookimpl
    def ipamkit_register_drivers(registerer, options):
        IMPORTS.append(sorted(options))
        for name, opts in sorted(options.items()):
            registerer.register_ipam_driver_with_capabilities(
                name, Recording(opts), Capability(requires_mac_address=True)
            )
"""


class Site:
    """A directory on ``sys.path`` holding distributions written by a test."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def install(
        self,
        distribution: str,
        entry_points: Mapping[str, str],
        modules: Mapping[str, str] = {},
        version: str = "1.0",
    ) -> None:
        """Write ``distribution``'s dist-info and its plugin modules."""
        info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[ipamkit.drivers]\n{lines}")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    for variable in ("IPAMKIT_BLOCKED_DRIVERS", "IPAMKIT_ALLOWED_DRIVERS", "IPAMKIT_STRICT"):
        monkeypatch.delenv(variable, raising=False)
    installed = Site(tmp_path / "site", monkeypatch)
    installed.root.mkdir()
    yield installed
    for module in installed.modules:
        sys.modules.pop(module, None)


@pytest.fixture
def second_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    installed = Site(tmp_path / "site2", monkeypatch)
    installed.root.mkdir()
    yield installed
    for module in installed.modules:
        sys.modules.pop(module, None)
