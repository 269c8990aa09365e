"""Fixtures of the Docker daemon tests, for other tests too.

A test gets real processes, each on dirs of its own, so several daemons and
plugins can run at once, also beside other test runs:

``start_ipamkit(driver="default", *args)``
    starts ``ipamkit serve DRIVER --as NAME ARGS`` (a :class:`ServedIpamkit`) under a
    plugin name unique to this run (``plugin.name``, for ``--ipam-driver``);
``start_docker()``
    starts a ``dockerd`` on a temp dir of its own (a :class:`DockerDaemon`) with the
    busybox image :data:`IMAGE` imported; ``daemon.docker(...)`` runs the CLI against it;
``make_veth_pair()``
    creates a :class:`VethPair` on the host, a parent for macvlan networks (``pair.ends``).

``daemon.restart()`` and ``plugin.restart()`` stop one by PID and start it again on
the same dirs or arguments. At the end every daemon has its containers and networks
removed and is stopped, its mounts, bridges and dir removed; then every plugin is
stopped, then the veth pairs deleted. Where a daemon cannot run here the tests skip
with the reason, and fail under ``CI=true``.

A test outside ``tests/docker`` imports the fixtures into its conftest
(``from tests.docker.conftest import busybox_rootfs, make_veth_pair, start_docker,
start_ipamkit``); ``tests.docker.commands`` has the CLI steps (``create_network``,
``macvlan``, ``run_sleeper``, ``address``), and ``test_side_by_side.py`` runs two daemons
on two segments. Two daemons, each with its own plugin, on one L2 segment::

    def test_two_hosts(start_docker, start_ipamkit, make_veth_pair):
        plugins = [start_ipamkit("etcd", "--driver-opt", f"host={h}") for h in "ab"]
        daemons = [start_docker(), start_docker()]
        for daemon, plugin, parent in zip(daemons, plugins, make_veth_pair().ends, strict=True):
            macvlan = ["--driver=macvlan", f"--opt=parent={parent}"]
            ipam = [f"--ipam-driver={plugin.name}", "--subnet=10.250.0.0/24"]
            daemon.docker("network", "create", *macvlan, *ipam, "net")
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.docker.daemon import DOCKER, DOCKERD, DockerDaemon
from tests.docker.image import BUSYBOX, IMAGE, busybox_is_static, import_image, write_rootfs
from tests.docker.links import VethPair
from tests.docker.plugin import ServedIpamkit
from tests.docker.processes import unavailable

__all__ = ["IMAGE", "DockerDaemon", "ServedIpamkit", "VethPair", "daemons", "plugins"]

StartIpamkit = Callable[..., ServedIpamkit]
StartDocker = Callable[[], DockerDaemon]


def _missing() -> str | None:
    """Why a daemon cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Docker daemon tests need root (dockerd, mounts, veth links)"
    for path, package in ((DOCKERD, "docker.io"), (DOCKER, "docker.io")):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install {package})"
    if shutil.which("ip") is None:
        return "the ip command is missing (apt-get install iproute2)"
    if not busybox_is_static():
        return f"no statically linked {BUSYBOX} (apt-get install busybox-static)"
    return None


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root as a tar, built once; checks first that a daemon can run here."""
    reason = _missing()
    if reason is not None:
        unavailable(reason)
    return write_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs.tar")


@contextmanager
def plugins(logs: Path) -> Iterator[StartIpamkit]:
    """A starter of ``ipamkit serve`` processes, all stopped when the block ends."""
    numbers = itertools.count()
    with ExitStack() as stack:

        def start(driver: str = "default", *args: str) -> ServedIpamkit:
            plugin = ServedIpamkit(logs / f"ipamkit-{next(numbers)}.log", driver, args)
            stack.callback(plugin.stop)
            plugin.start()
            return plugin

        yield start


@contextmanager
def daemons(rootfs: Path, logs: Path) -> Iterator[StartDocker]:
    """A starter of daemons with the busybox image, all closed when the block ends."""
    numbers = itertools.count()
    with ExitStack() as stack:

        def start() -> DockerDaemon:
            daemon = DockerDaemon(logs / f"dockerd-{next(numbers)}.log")
            stack.callback(daemon.close)
            daemon.start()
            import_image(daemon, rootfs)
            return daemon

        yield start


@pytest.fixture
def make_veth_pair(busybox_rootfs: Path) -> Iterator[Callable[[], VethPair]]:
    """A maker of veth pairs, deleted at the end (busybox_rootfs: only where tests can run)."""
    with ExitStack() as stack:

        def make() -> VethPair:
            pair = VethPair()
            pair.create()
            stack.callback(pair.delete)
            return pair

        yield make


@pytest.fixture
def start_ipamkit(tmp_path: Path, make_veth_pair: Callable[[], VethPair]) -> Iterator[StartIpamkit]:
    """A starter of plugins, their logs in ``tmp_path``.

    After make_veth_pair, so that the links go last, once no network uses them.
    """
    with plugins(tmp_path) as start:
        yield start


@pytest.fixture
def start_docker(
    busybox_rootfs: Path, start_ipamkit: StartIpamkit, tmp_path: Path
) -> Iterator[StartDocker]:
    """A starter of daemons, their logs in ``tmp_path``.

    After start_ipamkit, so that the daemons go first, while their plugins still answer.
    """
    with daemons(busybox_rootfs, tmp_path) as start:
        yield start
