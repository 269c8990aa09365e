"""Docker's daemon creates networks and runs containers through ``ipamkit serve default``.

One daemon and one in-memory plugin serve the whole module (each test uses
subnets of its own and removes what it made); what ipamkit holds is read from
the plugin itself, over its socket, without activating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_interface, ip_network
from pathlib import Path

import pytest

from ipamkit.drivers.remote import RemoteIpam
from ipamkit.errors import IPAlreadyAllocatedError, PoolOverlapError
from tests.docker.commands import addresses, create_network, run_sleeper
from tests.docker.conftest import daemons, plugins
from tests.docker.daemon import DockerDaemon
from tests.docker.image import IMAGE
from tests.docker.plugin import ServedIpamkit

pytestmark = pytest.mark.slow

LOCAL = "LocalDefault"


@pytest.fixture(scope="module")
def ipamkit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedIpamkit]:
    with plugins(tmp_path_factory.mktemp("ipamkit")) as start:
        yield start()


@pytest.fixture(scope="module")
def daemon(
    busybox_rootfs: Path, ipamkit: ServedIpamkit, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerDaemon]:
    with daemons(busybox_rootfs, tmp_path_factory.mktemp("dockerd")) as start:
        yield start()


@pytest.fixture
def docker(daemon: DockerDaemon) -> Iterator[DockerDaemon]:
    """The module's daemon, emptied of containers and networks after each test."""
    yield daemon
    daemon.remove_all()


@pytest.fixture
def held(ipamkit: ServedIpamkit) -> Iterator[RemoteIpam]:
    """The served driver, to ask what it holds."""
    with ipamkit.client() as driver:
        yield driver


def ipam_config(docker: DockerDaemon, network: str) -> list[dict[str, object]]:
    ipam = docker.inspect("network", network)["IPAM"]
    assert isinstance(ipam, dict)
    assert ipam["Driver"].startswith("ipamkit-test-")
    config: list[dict[str, object]] = ipam["Config"]
    return config


def test_explicit_subnet_and_gateway(
    docker: DockerDaemon, ipamkit: ServedIpamkit, held: RemoteIpam
) -> None:
    create_network(docker, ipamkit, "explicit", "--subnet=10.231.0.0/24", "--gateway=10.231.0.254")
    run_sleeper(docker, "first", "explicit")
    run_sleeper(docker, "chosen", "explicit", "--ip=10.231.0.50")
    run_sleeper(docker, "second", "explicit")

    assert ipam_config(docker, "explicit") == [
        {"Subnet": "10.231.0.0/24", "Gateway": "10.231.0.254"}
    ]
    assert [
        addresses(docker, c, "explicit")["IPAddress"] for c in ("first", "chosen", "second")
    ] == [
        "10.231.0.1",
        "10.231.0.50",
        "10.231.0.2",
    ]
    assert addresses(docker, "first", "explicit")["Gateway"] == "10.231.0.254"
    with pytest.raises(PoolOverlapError):
        held.request_pool(LOCAL, "10.231.0.0/25")
    for taken in ("10.231.0.254", "10.231.0.1", "10.231.0.50", "10.231.0.2"):
        with pytest.raises(IPAlreadyAllocatedError):
            held.request_address(f"{LOCAL}/10.231.0.0/24", taken)


def test_chosen_pool(docker: DockerDaemon, ipamkit: ServedIpamkit, held: RemoteIpam) -> None:
    create_network(docker, ipamkit, "pooled")
    create_network(docker, ipamkit, "pooled-too")
    run_sleeper(docker, "member", "pooled")

    ((config,), (other,)) = ipam_config(docker, "pooled"), ipam_config(docker, "pooled-too")
    subnet = ip_network(str(config["Subnet"]))
    assert ip_network(str(other["Subnet"])) != subnet
    assert not subnet.overlaps(ip_network(str(other["Subnet"])))
    hosts = subnet.hosts()
    gateway, first = next(hosts), next(hosts)
    assert config["Gateway"] == str(gateway)
    assert addresses(docker, "member", "pooled")["IPAddress"] == str(first)
    with pytest.raises(PoolOverlapError):
        held.request_pool(LOCAL, str(subnet))


def test_ip_range_with_aux_address(
    docker: DockerDaemon, ipamkit: ServedIpamkit, held: RemoteIpam
) -> None:
    create_network(
        docker, ipamkit, "ranged", "--subnet=10.232.0.0/24", "--ip-range=10.232.0.128/25",
        "--aux-address=router=10.232.0.129", "--aux-address=outside=10.232.0.7",
    )  # fmt: skip
    run_sleeper(docker, "ranged-1", "ranged")
    run_sleeper(docker, "ranged-2", "ranged")
    run_sleeper(docker, "below-range", "ranged", "--ip=10.232.0.20")

    # The gateway is the range's first address; the aux addresses are skipped.
    assert [addresses(docker, c, "ranged") for c in ("ranged-1", "ranged-2", "below-range")] == [
        {"IPAddress": a, "Gateway": "10.232.0.128", "GlobalIPv6Address": "", "IPv6Gateway": ""}
        for a in ("10.232.0.130", "10.232.0.131", "10.232.0.20")
    ]
    pool_id = f"{LOCAL}/10.232.0.0/24/10.232.0.128/25"
    for taken in ("10.232.0.128", "10.232.0.129", "10.232.0.7"):
        with pytest.raises(IPAlreadyAllocatedError):
            held.request_address(pool_id, taken)


def test_ipv6(docker: DockerDaemon, ipamkit: ServedIpamkit, held: RemoteIpam) -> None:
    create_network(
        docker, ipamkit, "dual", "--ipv6", "--subnet=10.233.0.0/24",
        "--subnet=fd6b:1c00:233::/64", "--gateway=fd6b:1c00:233::ffff",
    )  # fmt: skip
    run_sleeper(docker, "dual-1", "dual")
    run_sleeper(docker, "dual-2", "dual", "--ip6=fd6b:1c00:233::42")

    assert addresses(docker, "dual-1", "dual") == {
        "IPAddress": "10.233.0.2",
        "Gateway": "10.233.0.1",
        "GlobalIPv6Address": "fd6b:1c00:233::1",
        "IPv6Gateway": "fd6b:1c00:233::ffff",
    }
    assert addresses(docker, "dual-2", "dual")["GlobalIPv6Address"] == "fd6b:1c00:233::42"
    with pytest.raises(IPAlreadyAllocatedError):
        held.request_address(f"{LOCAL}/fd6b:1c00:233::/64", "fd6b:1c00:233::42")


def test_taken_ip_refused(docker: DockerDaemon, ipamkit: ServedIpamkit) -> None:
    create_network(docker, ipamkit, "contested", "--subnet=10.234.0.0/24")
    run_sleeper(docker, "holder", "contested", "--ip=10.234.0.9")

    refused = f"remote: {IPAlreadyAllocatedError.default_message}"
    assert refused in docker.refused(
        "run", "--detach", "--network=contested", "--ip=10.234.0.9", IMAGE, "sleep", "600"
    )
    # The gateway Docker asked for is taken as well.
    assert refused in docker.refused(
        "run", "--detach", "--network=contested", "--ip=10.234.0.1", IMAGE, "sleep", "600"
    )
    assert addresses(docker, "holder", "contested")["IPAddress"] == "10.234.0.9"
    running = docker.output("ps", "--quiet", "--filter=network=contested").split()
    assert len(running) == 1


def test_teardown_leaves_ipamkit_empty(
    docker: DockerDaemon, ipamkit: ServedIpamkit, held: RemoteIpam
) -> None:
    create_network(docker, ipamkit, "plain", "--subnet=10.235.0.0/24", "--gateway=10.235.0.254")
    create_network(docker, ipamkit, "chosen")
    create_network(
        docker, ipamkit, "ranged", "--subnet=10.236.0.0/24", "--ip-range=10.236.0.64/26",
        "--aux-address=a=10.236.0.65",
    )  # fmt: skip
    create_network(
        docker, ipamkit, "dual", "--ipv6", "--subnet=10.237.0.0/24", "--subnet=fd6b:1c00:237::/64"
    )
    for name in ("plain", "chosen", "ranged", "dual"):
        run_sleeper(docker, f"{name}-1", name)
        run_sleeper(docker, f"{name}-2", name)
    run_sleeper(docker, "pinned", "plain", "--ip=10.235.0.77")
    chosen = str(ipam_config(docker, "chosen")[0]["Subnet"])
    # Each pool with the first address a fresh pool of that request hands out.
    pools = [
        ("10.235.0.0/24", "", False, "10.235.0.1/24"),
        (chosen, "", False, f"{ip_network(chosen)[1]}/{ip_network(chosen).prefixlen}"),
        ("10.236.0.0/24", "10.236.0.64/26", False, "10.236.0.64/24"),
        ("10.237.0.0/24", "", False, "10.237.0.1/24"),
        ("fd6b:1c00:237::/64", "", True, "fd6b:1c00:237::1/64"),
    ]
    for pool, _, v6, _ in pools:
        with pytest.raises(PoolOverlapError):
            held.request_pool(LOCAL, pool, v6=v6)

    docker.remove_all()

    # Every pool is free again (an overlapping one would be refused) and starts afresh.
    for pool, sub_pool, v6, first in pools:
        pool_id, granted, _ = held.request_pool(LOCAL, pool, sub_pool, v6=v6)
        assert granted == ip_network(pool)
        assert held.request_address(pool_id)[0] == ip_interface(first)
        held.release_pool(pool_id)
