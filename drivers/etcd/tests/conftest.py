"""Fixtures: a real etcd member for the session, a fresh key prefix per test.

Where etcd cannot start, the tests skip with the reason; under ``CI=true``
they fail instead, so a missing etcd cannot hide.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipamkit import Host

sys.path.insert(0, str(Path(__file__).parent))
# The repository's Docker fixtures (tests.docker), for test_docker.py; appended, so that
# the ipamkit installed in the environment stays the one imported.
sys.path.append(str(Path(__file__).parents[3]))

from etcd_cluster import Certificates, Cluster, EtcdMissing
from ipamkit_etcd import EtcdIpam

from tests.docker.conftest import (  # noqa: F401  # fixtures, for test_docker.py
    busybox_rootfs,
    make_veth_pair,
    start_docker,
    start_ipamkit,
)

Factory = Callable[..., EtcdIpam]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"etcd is required under CI=true: {reason}")
    pytest.skip(reason)


def start_cluster(size: int, workdir: Path, *, tls: bool = False) -> Cluster:
    """Start ``size`` members (TLS only, with ``tls``), or skip (fail under CI) with the reason."""
    try:
        certificates = Certificates.make(workdir / "tls") if tls else None
        cluster = Cluster(size, workdir, certificates, in_memory=True)
    except EtcdMissing as exc:
        _unavailable(str(exc))
        raise  # not reached
    try:
        cluster.start()
    except EtcdMissing as exc:
        cluster.stop()  # the members that did start
        _unavailable(str(exc))
        raise  # not reached
    return cluster


@pytest.fixture(scope="session")
def etcd_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One etcd member on a loopback port, for the whole session."""
    cluster = start_cluster(1, tmp_path_factory.mktemp("etcd"))
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/test/{uuid.uuid4().hex}/"


@pytest.fixture
def make_driver(etcd_member: Cluster, etcd_prefix: str) -> Iterator[Factory]:
    """Build drivers on the session's member and this test's prefix, as a host loads them."""
    made: list[EtcdIpam] = []

    def make(host: str = "a", **options: str) -> EtcdIpam:
        given = {
            "endpoints": ",".join(etcd_member.endpoints),
            "prefix": etcd_prefix,
            "host": host,
        }
        driver = Host(options={"etcd": given | options}).driver("etcd")
        assert isinstance(driver, EtcdIpam)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()
