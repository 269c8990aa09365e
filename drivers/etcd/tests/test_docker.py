"""Two Docker daemons, one address space: each daemon with its own ``ipamkit serve etcd``.

As deployed on two hosts of one L2 segment: each daemon has its own plugin
(its own name and host identity), both plugins are on one etcd member and one
key prefix, and each daemon has a macvlan network with the same subnet and
gateway on its own end of one veth pair. What the daemons report (``docker
inspect``) is compared with what etcd holds (the driver's ``holdings``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from etcd_cluster import Cluster
from ipamkit_etcd import EtcdIpam
from ipamkit_etcd._client import EtcdClient, prefix_end
from ipamkit_etcd._layout import SpaceRecord

from ipamkit import Host
from tests.docker.commands import address, addresses, create_network, macvlan, run_sleeper
from tests.docker.conftest import IMAGE, ServedIpamkit, StartDocker, StartIpamkit
from tests.docker.daemon import DockerDaemon
from tests.docker.links import VethPair

pytestmark = pytest.mark.slow

SUBNET = "10.243.0.0/24"
GATEWAY = "10.243.0.1"
# Docker asks a remote driver for its local default space for every network
# that is not a swarm network, macvlan included.
POOL_ID = f"LocalDefault/{SUBNET}"
HOSTS = ("a", "b")
PER_DAEMON = 3


class SameAddressError(AssertionError):
    """Containers of the two daemons were given one address."""


@pytest.fixture
def plugins(
    etcd_member: Cluster, etcd_prefix: str, start_ipamkit: StartIpamkit
) -> list[ServedIpamkit]:
    """``ipamkit serve etcd`` for each host: one member, one prefix, a host identity each."""
    shared = [f"--driver-opt=endpoints={etcd_member.endpoints[0]}"]
    shared.append(f"--driver-opt=prefix={etcd_prefix}")
    return [start_ipamkit("etcd", *shared, f"--driver-opt=host={host}") for host in HOSTS]


@pytest.fixture
def pool_keys(etcd_member: Cluster, etcd_prefix: str) -> Callable[[], list[str]]:
    """The keys under the prefix that hold part of the pool: its own, or a space listing it."""
    spaces = f"{etcd_prefix}space/"

    def find() -> list[str]:
        client = EtcdClient(etcd_member.endpoints, timeout=5, retry=10)
        try:
            found = client.range_all(etcd_prefix, prefix_end(etcd_prefix))
        finally:
            client.close()
        return [
            kv.key
            for kv in found
            if SUBNET in kv.key
            or (kv.key.startswith(spaces) and SUBNET in SpaceRecord.decode(kv.value).masters)
        ]

    return find


@pytest.fixture
def inspector(etcd_member: Cluster, etcd_prefix: str) -> Iterator[EtcdIpam]:
    """A driver on the plugins' prefix, only to read what etcd holds."""
    options = {"endpoints": etcd_member.endpoints[0], "prefix": etcd_prefix, "host": "inspector"}
    driver = Host(options={"etcd": options}).driver("etcd")
    assert isinstance(driver, EtcdIpam)
    yield driver
    driver.close()


def _containers(daemon: DockerDaemon, names: list[str]) -> dict[str, str]:
    """Each container's address on ``lan``, as the daemon reports it."""
    found = {}
    for name in names:
        reported = addresses(daemon, name, "lan")
        assert reported["Gateway"] == GATEWAY
        found[name] = reported["IPAddress"]
    return found


def _expected(held: dict[str, dict[str, str]]) -> dict[str, tuple[str, ...]]:
    """What etcd must hold: the gateway for both hosts, each container's address for its own."""
    expected: dict[str, tuple[str, ...]] = {GATEWAY: HOSTS}
    for host, by_name in held.items():
        expected |= dict.fromkeys(by_name.values(), (host,))
    return expected


def test_two_daemons_share_one_address_space(
    plugins: list[ServedIpamkit],
    inspector: EtcdIpam,
    pool_keys: Callable[[], list[str]],
    start_docker: StartDocker,
    make_veth_pair: Callable[[], VethPair],
) -> None:
    daemons = dict(zip(HOSTS, (start_docker(), start_docker()), strict=True))
    parents = make_veth_pair().ends  # one end each: two hosts' links on one segment
    for daemon, plugin, parent in zip(daemons.values(), plugins, parents, strict=True):
        subnet = (f"--subnet={SUBNET}", f"--gateway={GATEWAY}")
        create_network(daemon, plugin, "lan", *macvlan(parent), *subnet)

    # Started in turns, so that the two plugins ask etcd at the same stage.
    names = [f"c{i}" for i in range(PER_DAEMON)]
    for name in names:
        for daemon in daemons.values():
            run_sleeper(daemon, name, "lan")
    held = {host: _containers(daemon, names) for host, daemon in daemons.items()}
    every = [ip for by_name in held.values() for ip in by_name.values()]
    assert len(every) == 2 * PER_DAEMON
    if len(set(every)) != len(every):
        raise SameAddressError(f"addresses given twice: {held}")
    assert GATEWAY not in every
    assert inspector.holdings(POOL_ID) == _expected(held)
    assert pool_keys()  # what the teardown check below must find gone

    # A held address is refused to the other daemon; once freed, it gets it with --ip.
    for host, other in (("a", "b"), ("b", "a")):
        taken = next(iter(held[host].values()))
        error = daemons[other].refused(
            "run", "--detach", "--init", "--name=late", "--network=lan", f"--ip={taken}",
            IMAGE, "sleep", "3600",
        )  # fmt: skip
        assert "remote: Address already in use" in error, error
        daemons[other].docker("rm", "--force", "late")
        assert inspector.holdings(POOL_ID) == _expected(held)

        freed, held[host] = held[host], {}
        daemons[host].docker("rm", "--force", *freed)
        assert inspector.holdings(POOL_ID) == _expected(held)
        for name, ip in freed.items():
            run_sleeper(daemons[other], f"{name}-from-{host}", "lan", f"--ip={ip}")
            assert address(daemons[other], f"{name}-from-{host}", "lan") == ip
        held[other] |= {f"{name}-from-{host}": ip for name, ip in freed.items()}
        assert inspector.holdings(POOL_ID) == _expected(held)

    # Full teardown: etcd holds nothing of the pool.
    for daemon in daemons.values():
        daemon.remove_all()
    assert inspector.holdings(POOL_ID) == {}
    assert pool_keys() == []
