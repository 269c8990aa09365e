"""A served in-memory driver and the daemon's lifetimes: each activation starts it empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ipamkit import GATEWAY, REQUEST_ADDRESS_TYPE, errors
from ipamkit.drivers.remote import Endpoint, RemoteIpam, connect
from ipamkit.protocol._dispatch import LIFETIME_MESSAGE
from tests.protocol.conftest import Served
from tests.protocol.server_helpers import wait_for

Serve = Callable[..., Served]
AS_GATEWAY = {REQUEST_ADDRESS_TYPE: GATEWAY}
IN_MEMORY = "holds its allocations in memory: a restart of this plugin loses every allocation"


def _activate(served: Served) -> RemoteIpam:
    """Connect as the daemon does at the start of a lifetime: Plugin.Activate first."""
    driver, _ = connect(Endpoint.parse(str(served.socket)), retry=0)
    return driver


def test_the_daemons_replay_after_an_activation_succeeds(serve: Serve) -> None:
    served = serve("default")
    lifetime = _activate(served)
    explicit = lifetime.request_pool("LocalDefault", "10.1.0.0/16")
    gateway = lifetime.request_address(explicit.pool_id, "10.1.0.1", AS_GATEWAY).address
    container = lifetime.request_address(explicit.pool_id).address
    chosen = lifetime.request_pool("LocalDefault")
    lifetime.close()

    # The daemon restarts: it activates the plugin, then replays everything it holds,
    # a chosen pool as the explicit pool it got.
    replay = _activate(served)
    assert replay.request_pool("LocalDefault", "10.1.0.0/16") == explicit
    assert replay.request_address(explicit.pool_id, "10.1.0.1", AS_GATEWAY).address == gateway
    assert container is not None
    assert replay.request_address(explicit.pool_id, str(container.ip)).address == container
    assert replay.request_pool("LocalDefault", str(chosen.pool)).pool_id == chosen.pool_id
    # And the new lifetime goes on from there.
    with pytest.raises(errors.PoolOverlapError):
        replay.request_pool("LocalDefault", "10.1.2.0/24")
    replay.close()
    line = f"WARNING ipamkit.protocol.server: {LIFETIME_MESSAGE}"
    wait_for(lambda: served.log().count(line) >= 2, "two lifetime log lines")
    assert served.log().count(line) == 2


def test_a_driver_that_keeps_its_own_state_is_never_replaced(serve: Serve) -> None:
    served = serve("memory")  # registered without request replay
    first = _activate(served)
    first.request_pool("local", "10.2.0.0/16")
    again = _activate(served)
    with pytest.raises(errors.PoolOverlapError):
        again.request_pool("local", "10.2.0.0/16")
    for driver in (first, again):
        driver.close()
    assert LIFETIME_MESSAGE not in served.log()


def test_serving_an_in_memory_driver_warns_and_names_the_option_that_keeps_state(
    serve: Serve,
) -> None:
    (warning,) = [line for line in serve("default").log().splitlines() if IN_MEMORY in line]
    assert "WARNING ipamkit.serve: 'default' " + IN_MEMORY in warning
    assert warning.endswith("; --driver-opt state=PATH keeps them")
    assert IN_MEMORY not in serve("memory").log()
