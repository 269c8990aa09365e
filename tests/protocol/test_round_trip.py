"""Client and server together: every call, and every contract error, survive the wire."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from ipamkit import (
    GATEWAY,
    REQUEST_ADDRESS_TYPE,
    Address,
    AddressResult,
    Capability,
    Host,
    Ipam,
    PoolResult,
    errors,
)
from ipamkit.drivers.remote import Endpoint, RemoteIpam, connect
from ipamkit.protocol.server import open_unix_server
from tests.protocol.memory_driver import MemoryIpam


class Raising(Ipam):
    """Raises ``self.error`` from every call."""

    def __init__(self) -> None:
        self.error: BaseException = errors.IpamError()

    def get_default_address_spaces(self) -> tuple[str, str]:
        raise self.error

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        raise self.error

    def release_pool(self, pool_id: str) -> None:
        raise self.error

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        raise self.error

    def release_address(self, pool_id: str, address: Address | str) -> None:
        raise self.error

    def is_builtin(self) -> bool:
        return False


def _serve(driver: Ipam, capability: Capability, directory: Path) -> Iterator[RemoteIpam]:
    server = open_unix_server(driver, capability, str(directory / "rt.sock"))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    client, fetched = connect(Endpoint.parse(server.url), retry=0)
    assert fetched == capability
    try:
        yield client
    finally:
        client.close()
        server.shutdown()
        thread.join()
        server.close()


@pytest.fixture
def memory(short_dir: Path) -> Iterator[RemoteIpam]:
    yield from _serve(MemoryIpam(), Capability(requires_request_replay=True), short_dir)


@pytest.fixture(scope="module")
def raising() -> Iterator[tuple[Raising, RemoteIpam]]:
    """One server for the module: each test sets the error it wants raised."""
    directory = Path(tempfile.mkdtemp(prefix="ipk-", dir="/tmp"))
    driver = Raising()
    for client in _serve(driver, Capability(requires_mac_address=True), directory):
        yield driver, client
    shutil.rmtree(directory, ignore_errors=True)


def test_every_call_round_trips(memory: RemoteIpam) -> None:
    assert memory.get_default_address_spaces() == ("local", "global")
    v4 = memory.request_pool("local", "10.9.0.0/16", options={"k": "v"})
    assert v4 == ("local/10.9.0.0/16", IPv4Network("10.9.0.0/16"), {"pools": "1"})
    v6 = memory.request_pool("global", "2001:db8::/64", v6=True)
    assert v6.pool == IPv6Network("2001:db8::/64")
    assert memory.request_address(v4.pool_id) == (IPv4Interface("10.9.0.1/16"), {"used": "1"})
    assert memory.request_address(v4.pool_id, "10.9.3.4").address == IPv4Interface("10.9.3.4/16")
    assert memory.request_address(v6.pool_id).address == IPv6Interface("2001:db8::1/64")
    memory.release_address(v4.pool_id, "10.9.3.4")
    memory.release_address(v6.pool_id, IPv6Interface("2001:db8::1/64"))
    memory.release_pool(v4.pool_id)
    memory.release_pool(v6.pool_id)
    with pytest.raises(errors.BadPoolError, match=r"no pool 'local/10\.9\.0\.0/16'"):
        memory.release_pool(v4.pool_id)


def test_one_driver_shared_by_threads_gets_distinct_answers(memory: RemoteIpam) -> None:
    pool_id = memory.request_pool("local", "10.8.0.0/16").pool_id
    got: list[object] = []

    def work() -> None:
        got.extend(memory.request_address(pool_id).address for _ in range(25))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(got)) == len(got) == 200
    assert repr(memory).startswith("RemoteIpam('unix:///tmp/")


_CLASSES = [
    errors.IpamError,
    errors.InvalidParameterError,
    errors.NotFoundError,
    errors.ForbiddenError,
    errors.UnavailableError,
    errors.NoMoreSubnetsError,
    errors.InvalidAddressSpaceError,
    errors.InvalidPoolError,
    errors.InvalidSubPoolError,
    errors.NoAvailableIPsError,
    errors.NoIPReturnedError,
    errors.IPAlreadyAllocatedError,
    errors.IPOutOfRangeError,
    errors.PoolOverlapError,
    errors.BadPoolError,
]


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("message", [None, "a more precise text: 10.0.0.0/8 ∌ 11.0.0.1 <&>"])
def test_every_contract_error_comes_back_with_its_class_and_message(
    raising: tuple[Raising, RemoteIpam], cls: type[errors.IpamError], message: str | None
) -> None:
    driver, client = raising
    driver.error = cls(message)
    calls = [
        client.get_default_address_spaces,
        lambda: client.request_pool("local", "10.0.0.0/8"),
        lambda: client.release_pool("p"),
        lambda: client.request_address("p", "10.0.0.1"),
        lambda: client.release_address("p", "10.0.0.1"),
    ]
    for call in calls:
        with pytest.raises(errors.IpamError) as caught:
            call()
        assert type(caught.value) is cls
        assert str(caught.value) == str(driver.error)


def test_a_driver_bug_comes_back_as_a_plugin_error(raising: tuple[Raising, RemoteIpam]) -> None:
    driver, client = raising
    driver.error = KeyError("oops")
    with pytest.raises(errors.PluginError) as caught:
        client.release_pool("p")
    assert type(caught.value) is errors.PluginError
    assert str(caught.value) == (
        "IpamDriver.ReleasePool: internal error in the driver: KeyError: 'oops'"
    )


def _outcome(step: Callable[[Ipam, str], object], driver: Ipam, space: str) -> object:
    """What a step gives: its result, or its exception's exact class and message."""
    try:
        return step(driver, space)
    except errors.IpamError as exc:
        return type(exc), str(exc)


@pytest.fixture
def remote_default(short_dir: Path) -> Iterator[RemoteIpam]:
    host = Host()
    yield from _serve(host.driver("default"), host.capability("default"), short_dir)


_SUB = "10.20.0.0/16/10.20.1.0/24"
_STEPS: list[Callable[[Ipam, str], object]] = [
    lambda d, space: d.request_pool(space, "10.20.0.0/16", "10.20.1.0/24"),
    lambda d, space: d.request_pool(space, "10.20.0.0/24"),
    lambda d, space: d.request_pool(space, "fd00::/64", v6=True),
    lambda d, space: d.request_pool("nowhere"),
    lambda d, space: d.request_pool(space, "10.0.0.0/33"),
    lambda d, space: d.request_pool(space, sub_pool="10.0.0.0/24"),
    lambda d, space: d.request_address(f"{space}/{_SUB}"),
    lambda d, space: d.request_address(f"{space}/{_SUB}", "10.20.1.1"),
    lambda d, space: d.request_address(f"{space}/{_SUB}", "10.21.0.1"),
    lambda d, space: d.request_address(
        f"{space}/{_SUB}", "10.20.9.9", {REQUEST_ADDRESS_TYPE: GATEWAY}
    ),
    lambda d, space: d.request_address(f"{space}/fd00::/64"),
    lambda d, space: d.release_address(f"{space}/{_SUB}", "10.20.1.1"),
    lambda d, space: d.release_pool(f"{space}/10.99.0.0/16"),
    lambda d, space: d.release_pool("garbage"),
    lambda d, space: d.release_pool(f"{space}/{_SUB}"),
    lambda d, space: d.release_pool(f"{space}/{_SUB}"),
]


def test_the_default_driver_behaves_the_same_through_the_wire(
    remote_default: RemoteIpam,
) -> None:
    local = Host().driver("default")
    space = local.get_default_address_spaces()[0]
    assert remote_default.get_default_address_spaces() == local.get_default_address_spaces()
    remote = [_outcome(step, remote_default, space) for step in _STEPS]
    assert remote == [_outcome(step, local, space) for step in _STEPS]
    failures = [o[0] for o in remote if type(o) is tuple]
    assert failures == [
        errors.PoolOverlapError,
        errors.InvalidAddressSpaceError,
        errors.InvalidPoolError,
        errors.InvalidSubPoolError,
        errors.IPOutOfRangeError,
        errors.BadPoolError,
        errors.InvalidPoolError,
        errors.BadPoolError,
    ]
