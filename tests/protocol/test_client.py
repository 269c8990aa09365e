"""The remote driver against a recording fake plugin: what goes out, and how replies are read."""

from __future__ import annotations

import json
import threading
import time
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface
from pathlib import Path

import pytest

from ipamkit import Capability, Host, errors
from ipamkit.drivers import remote as remote_module
from ipamkit.drivers.remote import Endpoint, Exchange, PluginReplyWarning, RemoteIpam, connect
from tests.protocol.conftest import FakePlugin, Recorded, UnixServer, plugin_handler

DOCKER_HEADERS = {
    "Host": "plugin.moby.localhost",
    "Accept": "application/vnd.docker.plugins.v1.2+json",
}


def _connect(plugin: FakePlugin, **kwargs: float) -> tuple[RemoteIpam, Capability]:
    return connect(Endpoint.parse(str(plugin.socket)), name="fake", **kwargs)


def _json(text: str) -> tuple[int, bytes]:
    return 200, text.encode()


def _echo_address(request: Recorded) -> tuple[int, bytes]:
    """The requested address in 10.1.0.0/16, or 10.1.2.3."""
    wanted = json.loads(request.body)["Address"] or "10.1.2.3"
    return _json(f'{{"Address":"{wanted}/16","Data":null}}')


@pytest.fixture
def driver(fake_plugin: FakePlugin) -> RemoteIpam:
    fake_plugin.replies.update(
        {
            "/IpamDriver.GetCapabilities": _json(
                '{"RequiresMACAddress":true,"RequiresRequestReplay":false}'
            ),
            "/IpamDriver.GetDefaultAddressSpaces": _json(
                '{"LocalDefaultAddressSpace":"lo","GlobalDefaultAddressSpace":"gl"}'
            ),
            "/IpamDriver.RequestPool": _json(
                '{"PoolID":"p1","Pool":"10.1.0.0/16","Data":{"com.docker.network.gateway":"10.1.0.1/16"}}'
            ),
            "/IpamDriver.ReleasePool": _json("{}"),
            "/IpamDriver.RequestAddress": _echo_address,
            "/IpamDriver.ReleaseAddress": _json("{}"),
        }
    )
    remote, capability = _connect(fake_plugin)
    assert capability == Capability(requires_mac_address=True)
    return remote


def _only(request: Recorded, path: str, body: bytes) -> None:
    assert (request.method, request.path, request.body) == ("POST", path, body)
    assert {k: request.headers[k] for k in DOCKER_HEADERS} == DOCKER_HEADERS
    assert "Content-Type" not in request.headers
    assert request.headers["Content-Length"] == str(len(body))


def test_activation_and_capabilities_are_posted_with_empty_bodies(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    activate, capabilities = fake_plugin.requests
    _only(activate, "/Plugin.Activate", b"")
    _only(capabilities, "/IpamDriver.GetCapabilities", b"")
    assert not driver.is_builtin()


def test_every_call_goes_out_as_docker_sends_it(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    del fake_plugin.requests[:]
    assert driver.get_default_address_spaces() == ("lo", "gl")
    pool = driver.request_pool("lo", "10.1.0.0/16", "10.1.1.0/24", {"b": "2", "a": "1"}, True)
    assert pool == ("p1", IPv4Network("10.1.0.0/16"), {"com.docker.network.gateway": "10.1.0.1/16"})
    driver.request_address("p1", "10.1.0.5", {"RequestAddressType": "com.docker.network.gateway"})
    driver.request_address("p1")
    driver.release_address("p1", IPv4Interface("10.1.2.3/16"))
    driver.release_pool("p1")
    expected = [
        ("/IpamDriver.GetDefaultAddressSpaces", b""),
        (
            "/IpamDriver.RequestPool",
            b'{"AddressSpace":"lo","Pool":"10.1.0.0/16","SubPool":"10.1.1.0/24",'
            b'"Options":{"a":"1","b":"2"},"V6":true}\n',
        ),
        (
            "/IpamDriver.RequestAddress",
            b'{"PoolID":"p1","Address":"10.1.0.5",'
            b'"Options":{"RequestAddressType":"com.docker.network.gateway"}}\n',
        ),
        ("/IpamDriver.RequestAddress", b'{"PoolID":"p1","Address":"","Options":null}\n'),
        ("/IpamDriver.ReleaseAddress", b'{"PoolID":"p1","Address":"10.1.2.3"}\n'),
        ("/IpamDriver.ReleasePool", b'{"PoolID":"p1"}\n'),
    ]
    assert len(fake_plugin.requests) == len(expected)
    for request, (path, body) in zip(fake_plugin.requests, expected, strict=True):
        _only(request, path, body)


def test_an_empty_options_map_is_sent_as_such(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    driver.request_pool("lo", options={})
    assert fake_plugin.requests[-1].body == (
        b'{"AddressSpace":"lo","Pool":"","SubPool":"","Options":{},"V6":false}\n'
    )


def test_calls_share_one_keep_alive_connection(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    for _ in range(5):
        driver.request_address("p1")
    assert {r.connection for r in fake_plugin.requests} == {0}


def test_a_connection_the_plugin_closes_is_not_reused(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}\n"
    )
    driver.release_pool("p1")
    driver.request_address("p1")
    first, second = fake_plugin.requests[-2:]
    assert first.connection != second.connection


def test_a_reply_whose_body_ends_with_the_connection_is_read(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    fake_plugin.replies["/IpamDriver.RequestAddress"] = (
        b'HTTP/1.0 200 OK\r\n\r\n{"Address":"10.1.0.9/16"}'
    )
    assert driver.request_address("p1").address == IPv4Interface("10.1.0.9/16")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
        b"SMTP ready\r\n",
    ],
    ids=["nothing", "cut short", "not http"],
)
def test_a_broken_reply_is_a_transport_error(
    driver: RemoteIpam, fake_plugin: FakePlugin, raw: bytes
) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = raw
    with pytest.raises(
        errors.PluginTransportError, match=r'^IpamDriver\.ReleasePool: plugin "fake" at unix://'
    ):
        driver.release_pool("p1")
    driver.request_address("p1")  # the next call gets a fresh connection


def test_a_returned_address_keeps_its_host_bits(driver: RemoteIpam) -> None:
    address, meta = driver.request_address("p1")
    assert address == IPv4Interface("10.1.2.3/16")
    assert meta == {}


def test_reply_fields_match_case_insensitively(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json(
        '{"address":"2001:db8::7/64","DATA":{"k":"v"},"unknown":1}'
    )
    assert driver.request_address("p1") == (IPv6Interface("2001:db8::7/64"), {"k": "v"})


def test_host_bits_of_a_returned_pool_are_masked(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    fake_plugin.replies["/IpamDriver.RequestPool"] = _json('{"PoolID":"p","Pool":"10.1.2.3/16"}')
    assert driver.request_pool("lo").pool == IPv4Network("10.1.0.0/16")


def test_an_empty_address_is_no_ip_returned(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json('{"Address":""}')
    with pytest.raises(errors.NoIPReturnedError):
        driver.request_address("p1")


@pytest.mark.parametrize(
    ("path", "reply", "call"),
    [
        ("/IpamDriver.RequestAddress", '{"Address":"10.1.2.3"}', "address"),
        ("/IpamDriver.RequestAddress", '{"Address":"10.1.2.3/255.255.0.0"}', "address"),
        ("/IpamDriver.RequestPool", '{"PoolID":"p","Pool":"garbage"}', "pool"),
        ("/IpamDriver.RequestPool", '{"PoolID":7}', "pool"),
        ("/IpamDriver.RequestPool", "not json", "pool"),
    ],
)
def test_an_invalid_reply_is_a_plugin_error(
    driver: RemoteIpam, fake_plugin: FakePlugin, path: str, reply: str, call: str
) -> None:
    fake_plugin.replies[path] = _json(reply)
    with pytest.raises(errors.PluginError) as caught:
        driver.request_address("p1") if call == "address" else driver.request_pool("lo")
    assert caught.value.method == path[1:]


def test_non_200_with_err_is_method_colon_err(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.ReleaseAddress"] = (500, b'{"Err":"boom-500"}\n')
    with pytest.raises(errors.PluginError, match=r"^IpamDriver\.ReleaseAddress: boom-500$"):
        driver.release_address("p1", "10.1.2.3")


def test_200_with_error_is_an_error(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = _json('{"Error":"boom-release-pool"}')
    with pytest.raises(errors.PluginError, match=r"^remote: boom-release-pool$"):
        driver.release_pool("p1")


def test_200_with_err_is_success(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/IpamDriver.ReleasePool"] = _json('{"Err":"ignored"}')
    driver.release_pool("p1")


def test_well_known_texts_from_a_foreign_plugin_keep_their_class(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    fake_plugin.replies["/IpamDriver.RequestPool"] = (
        500,
        b'{"Err":"Pool overlaps with other one on this address space"}',
    )
    with pytest.raises(errors.PoolOverlapError):
        driver.request_pool("lo", "10.0.0.0/8")
    fake_plugin.replies["/IpamDriver.RequestPool"] = _json(
        '{"Error":"There is already defined pool 10.1.0.0/16 that overlaps this one"}'
    )
    with pytest.raises(errors.PluginError) as caught:
        driver.request_pool("lo", "10.0.0.0/8")
    assert caught.value.text == "There is already defined pool 10.1.0.0/16 that overlaps this one"


def test_arguments_are_checked_before_anything_is_sent(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    sent = len(fake_plugin.requests)
    with pytest.raises(TypeError):
        driver.request_pool("lo", pool=10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        driver.request_pool("lo", options={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        driver.request_pool("lo", v6="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        driver.release_pool(None)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidParameterError):
        driver.request_address("p1", "10.1.0.256")
    with pytest.raises(errors.InvalidParameterError):
        driver.release_address("p1", "fe80::1%eth0")
    assert len(fake_plugin.requests) == sent


def test_activation_is_refused_without_ipam_driver(fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/Plugin.Activate"] = _json('{"Implements":["NetworkDriver"]}')
    with pytest.raises(errors.PluginError) as caught:
        _connect(fake_plugin)
    assert str(caught.value) == (
        'Plugin does not implement the requested driver: plugin="fake", '
        'requested implementation="IpamDriver"'
    )
    assert fake_plugin.calls() == ["/Plugin.Activate"]


def test_a_failed_activation_is_an_error(fake_plugin: FakePlugin) -> None:
    fake_plugin.replies["/Plugin.Activate"] = (500, b'{"Err":"not ready"}')
    with pytest.raises(errors.PluginError, match=r"^Plugin\.Activate: not ready$"):
        _connect(fake_plugin)


@pytest.mark.parametrize(
    "reply", [(404, b"404 page not found\n"), (200, b'{"Error":"no capabilities here"}')]
)
def test_a_legacy_plugin_without_capabilities_has_none(
    fake_plugin: FakePlugin, reply: tuple[int, bytes]
) -> None:
    fake_plugin.replies["/IpamDriver.GetCapabilities"] = reply
    _, capability = _connect(fake_plugin)
    assert capability == Capability()
    assert fake_plugin.calls() == ["/Plugin.Activate", "/IpamDriver.GetCapabilities"]


def test_a_plugin_that_starts_late_is_reached_by_retrying(short_dir: Path) -> None:
    plugin = FakePlugin(short_dir / "late.sock")
    server = UnixServer(str(plugin.socket), plugin_handler(plugin), bind_and_activate=False)

    def start_later() -> None:
        time.sleep(0.3)
        server.server_bind()
        server.server_activate()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        _, capability = connect(Endpoint.parse(str(plugin.socket)), retry=5)
        assert capability == Capability()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_unreachable_plugin_fails_clearly_after_the_retry_budget(short_dir: Path) -> None:
    started = time.monotonic()
    with pytest.raises(
        errors.PluginTransportError, match='cannot reach plugin "remote" at unix://'
    ):
        connect(Endpoint.parse(str(short_dir / "nobody.sock")), retry=0.5)
    assert 0.3 < time.monotonic() - started < 10  # the budget given, not the default 15 s


def test_a_plugin_that_does_not_answer_times_out_and_is_not_asked_again(
    driver: RemoteIpam, fake_plugin: FakePlugin, short_dir: Path
) -> None:
    def slow(request: Recorded) -> tuple[int, bytes]:
        time.sleep(1.0)
        return 200, b"{}"

    fake_plugin.replies["/IpamDriver.ReleasePool"] = slow
    remote, _ = _connect(fake_plugin, timeout=0.2)
    sent = len(fake_plugin.requests)
    # Timed out, where without the timeout the slow reply would have come in 1 s.
    with pytest.raises(errors.PluginTransportError, match="timed out"):
        remote.release_pool("p1")
    assert fake_plugin.calls()[sent:] == ["/IpamDriver.ReleasePool"]
    time.sleep(1.0)  # let the slow reply go before the fixture stops the server


def test_a_closed_driver_refuses_calls(driver: RemoteIpam) -> None:
    driver.close()
    with pytest.raises(errors.PluginTransportError, match="closed"):
        driver.get_default_address_spaces()


@pytest.mark.parametrize(
    ("request_args", "reply", "problem"),
    [
        (
            ("lo", "10.1.0.0/16"),
            '{"PoolID":"p","Pool":"10.2.0.0/16"}',
            "returned pool 10.2.0.0/16, not the requested 10.1.0.0/16",
        ),
        (
            ("lo",),
            '{"PoolID":"p","Pool":"2001:db8::/64"}',
            "returned the IPv6 pool 2001:db8::/64 for an IPv4 request",
        ),
        (
            ("lo", "", "", None, True),
            '{"PoolID":"p","Pool":"10.1.0.0/16"}',
            "returned the IPv4 pool 10.1.0.0/16 for an IPv6 request",
        ),
        (
            ("lo", "10.1.0.0/16"),
            '{"PoolID":"","Pool":"10.1.0.0/16"}',
            "returned pool 10.1.0.0/16 with an empty pool ID",
        ),
    ],
)
def test_a_pool_reply_that_breaks_the_contract_is_a_plugin_error(
    driver: RemoteIpam,
    fake_plugin: FakePlugin,
    request_args: tuple[object, ...],
    reply: str,
    problem: str,
) -> None:
    fake_plugin.replies["/IpamDriver.RequestPool"] = _json(reply)
    with pytest.raises(errors.PluginError) as caught:
        driver.request_pool(*request_args)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f'IpamDriver.RequestPool: plugin "fake" at {driver.endpoint} broke the contract: {problem}'
    )
    assert caught.value.method == "IpamDriver.RequestPool"


def test_an_explicit_pool_is_not_judged_by_the_v6_flag(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    # Docker ignores the flag for an explicit pool; so must the check.
    assert driver.request_pool("lo", "10.1.0.0/16", v6=True).pool == IPv4Network("10.1.0.0/16")


@pytest.mark.parametrize(
    ("wanted", "reply", "problem"),
    [
        (
            None,
            "2001:db8::5/64",
            "returned the IPv6 address 2001:db8::5/64 from the pool 10.1.0.0/16",
        ),
        (None, "10.2.0.5/16", "returned address 10.2.0.5/16, outside its pool 10.1.0.0/16"),
        (
            None,
            "10.1.0.5/24",
            "returned address 10.1.0.5/24 with prefix length /24, not its pool's /16",
        ),
        ("10.1.0.5", "10.1.0.6/16", "returned address 10.1.0.6/16, not the requested 10.1.0.5"),
    ],
)
def test_an_address_reply_that_breaks_the_contract_is_a_plugin_error(
    driver: RemoteIpam, fake_plugin: FakePlugin, wanted: str | None, reply: str, problem: str
) -> None:
    pool_id = driver.request_pool("lo", "10.1.0.0/16").pool_id
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json(f'{{"Address":"{reply}"}}')
    with pytest.raises(errors.PluginError) as caught:
        driver.request_address(pool_id, wanted)
    assert str(caught.value) == (
        f'IpamDriver.RequestAddress: plugin "fake" at {driver.endpoint} broke the contract: '
        f"{problem}"
    )
    assert caught.value.text == reply


def test_check_replies_warn_lets_a_broken_reply_pass_with_a_warning(
    fake_plugin: FakePlugin,
) -> None:
    fake_plugin.replies["/IpamDriver.RequestPool"] = _json('{"PoolID":"p","Pool":"10.2.0.0/16"}')
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json('{"Address":"10.9.0.5/24"}')
    remote, _ = connect(Endpoint.parse(str(fake_plugin.socket)), name="fake", check_replies="warn")
    with pytest.warns(PluginReplyWarning, match="not the requested 10.1.0.0/16"):
        pool = remote.request_pool("lo", "10.1.0.0/16")
    assert pool.pool == IPv4Network("10.2.0.0/16")
    with pytest.warns(PluginReplyWarning, match="outside its pool 10.2.0.0/16"):
        assert remote.request_address("p").address == IPv4Interface("10.9.0.5/24")
    remote.close()


def test_check_replies_takes_error_or_warn_only(fake_plugin: FakePlugin) -> None:
    with pytest.raises(errors.InvalidParameterError, match="check_replies must be one of"):
        connect(Endpoint.parse(str(fake_plugin.socket)), check_replies="ignore")
    host = Host(options={"remote": {"url": str(fake_plugin.socket), "check_replies": "off"}})
    with pytest.raises(errors.DriverLoadError, match=r"check_replies must be one of .*, not 'off'"):
        host.driver("remote")
    assert fake_plugin.requests == []  # refused before the plugin is activated


def test_addresses_are_checked_against_the_live_pool_of_their_id(
    driver: RemoteIpam, fake_plugin: FakePlugin
) -> None:
    fake_plugin.replies["/IpamDriver.RequestPool"] = _json('{"PoolID":"p","Pool":"10.1.0.0/16"}')
    driver.request_pool("lo", "10.1.0.0/16")
    driver.release_pool("p")
    # The plugin hands the ID out again, for another pool.
    fake_plugin.replies["/IpamDriver.RequestPool"] = _json('{"PoolID":"p","Pool":"10.9.0.0/16"}')
    driver.request_pool("lo", "10.9.0.0/16")
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json('{"Address":"10.9.0.3/16"}')
    assert driver.request_address("p").address == IPv4Interface("10.9.0.3/16")
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json('{"Address":"10.1.0.3/16"}')
    with pytest.raises(errors.PluginError, match=r"outside its pool 10\.9\.0\.0/16"):
        driver.request_address("p")
    # Once released, the ID names no pool this driver knows: nothing to check against.
    driver.release_pool("p")
    assert driver.request_address("p").address == IPv4Interface("10.1.0.3/16")


def test_remembered_pools_are_bounded(
    driver: RemoteIpam, fake_plugin: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_module, "_MAX_POOLS", 3)
    for n in range(5):
        fake_plugin.replies["/IpamDriver.RequestPool"] = _json(
            f'{{"PoolID":"p{n}","Pool":"10.{n}.0.0/16"}}'
        )
        driver.request_pool("lo", f"10.{n}.0.0/16")
    fake_plugin.replies["/IpamDriver.RequestAddress"] = _json('{"Address":"192.0.2.1/16"}')
    for forgotten in ("p0", "p1"):
        assert driver.request_address(forgotten).address == IPv4Interface("192.0.2.1/16")
    for remembered in ("p2", "p3", "p4"):
        with pytest.raises(errors.PluginError, match="outside its pool"):
            driver.request_address(remembered)


def test_the_driver_exposes_the_trace_hook(driver: RemoteIpam, fake_plugin: FakePlugin) -> None:
    seen: list[Exchange] = []
    assert driver.trace is None
    driver.trace = seen.append
    driver.request_address("p1")
    driver.trace = None
    driver.request_address("p1")
    (exchange,) = seen
    assert exchange.method == "IpamDriver.RequestAddress"
    assert exchange.reply == b'{"Address":"10.1.2.3/16","Data":null}'


def test_closing_the_driver_twice_is_fine(driver: RemoteIpam) -> None:
    with driver:
        driver.get_default_address_spaces()
    driver.close()
    with pytest.raises(errors.PluginTransportError, match="is closed"):
        driver.request_address("p1")
