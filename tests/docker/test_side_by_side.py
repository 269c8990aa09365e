"""Two daemons, each with its own plugin, run at once without seeing each other."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ipamkit.errors import PoolOverlapError
from tests.docker.commands import address, create_network, macvlan, run_sleeper
from tests.docker.conftest import StartDocker, StartIpamkit
from tests.docker.links import VethPair

pytestmark = pytest.mark.slow

SUBNET = "10.242.0.0/24"


def test_two_daemons_with_a_plugin_each(
    start_docker: StartDocker,
    start_ipamkit: StartIpamkit,
    make_veth_pair: Callable[[], VethPair],
) -> None:
    plugins = [start_ipamkit(), start_ipamkit()]
    daemons = [start_docker(), start_docker()]
    # Two segments: on one, two independent drivers would hand out the same address.
    parents = [make_veth_pair().ends[0], make_veth_pair().ends[0]]
    for daemon, plugin, parent in zip(daemons, plugins, parents, strict=True):
        create_network(daemon, plugin, "lan", *macvlan(parent), f"--subnet={SUBNET}")
        run_sleeper(daemon, "one", "lan")

    assert len({p.name for p in plugins} | {str(p.socket) for p in plugins}) == 4
    assert len({d.root for d in daemons}) == 2
    for daemon, plugin in zip(daemons, plugins, strict=True):
        ipam = daemon.inspect("network", "lan")["IPAM"]
        assert isinstance(ipam, dict)
        assert ipam["Driver"] == plugin.name
        assert address(daemon, "one", "lan") == "10.242.0.2"
        with plugin.client() as driver, pytest.raises(PoolOverlapError):
            driver.request_pool("LocalDefault", SUBNET)

    # Removing one daemon's network frees its plugin's pool, not the other's.
    daemons[0].remove_all()
    with plugins[0].client() as driver:
        driver.release_pool(driver.request_pool("LocalDefault", SUBNET).pool_id)
    with plugins[1].client() as driver, pytest.raises(PoolOverlapError):
        driver.request_pool("LocalDefault", SUBNET)
