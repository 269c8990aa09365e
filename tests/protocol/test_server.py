"""``ipamkit serve`` as a real process: replies, robustness, socket handling, signals."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from ipamkit import Host, errors
from ipamkit.cli import build_parser
from ipamkit.cli import serve as serve_command
from ipamkit.drivers.remote import Endpoint, RemoteIpam, connect
from tests.protocol.conftest import Served, start_serve

Serve = Callable[..., Served]
State = tuple[Served, RemoteIpam, str]


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("plugin.moby.localhost", timeout=10)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


def _post(
    path: Path, url: str, body: bytes = b"", method: str = "POST"
) -> tuple[int, str, dict[str, object]]:
    connection = _Unix(path)
    try:
        connection.request(method, url, body=body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), json.loads(response.read())
    finally:
        connection.close()


def _raw(path: Path, data: bytes) -> bytes:
    """Send ``data`` as is and read until the server closes the connection."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _client(served: Served) -> RemoteIpam:
    driver, _ = connect(Endpoint.parse(str(served.socket)), retry=0)
    return driver


@pytest.fixture
def state(serve: Serve) -> State:
    """A server with one pool and its first address allocated."""
    served = serve()
    driver = _client(served)
    pool_id = driver.request_pool("local", "10.0.0.0/24").pool_id
    assert driver.request_address(pool_id).address == IPv4Interface("10.0.0.1/24")
    return served, driver, pool_id


def _assert_unharmed(served: Served, pool_id: str) -> None:
    """The server still answers, and holds exactly the pool and the one address."""
    assert served.alive()
    driver = _client(served)
    with pytest.raises(errors.PoolOverlapError):
        driver.request_pool("local", "10.0.0.0/16")
    with pytest.raises(errors.IPAlreadyAllocatedError):
        driver.request_address(pool_id, "10.0.0.1")
    address, meta = driver.request_address(pool_id)
    assert (address, meta) == (IPv4Interface("10.0.0.2/24"), {"used": "2"})
    driver.release_address(pool_id, "10.0.0.2")
    driver.close()


def test_activation_and_capabilities_replies(serve: Serve) -> None:
    served = serve()
    connection = _Unix(served.socket)
    connection.request("POST", "/Plugin.Activate", body=b"")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/vnd.docker.plugins.v1.2+json"
    assert response.read() == b'{"Implements":["IpamDriver"]}\n'
    connection.request("POST", "/IpamDriver.GetCapabilities", body=b"")
    assert connection.getresponse().read() == (
        b'{"RequiresMACAddress":false,"RequiresRequestReplay":false}\n'
    )
    connection.close()


def test_a_request_exactly_as_dockers_daemon_sends_it(serve: Serve) -> None:
    served = serve()
    body = b'{"AddressSpace":"local","Pool":"10.1.0.0/16","SubPool":"","Options":null,"V6":false}\n'
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(served.socket))
        sock.sendall(
            b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: plugin.moby.localhost\r\n"
            b"User-Agent: Go-http-client/1.1\r\nContent-Length: %d\r\n"
            b"Accept: application/vnd.docker.plugins.v1.2+json\r\nAccept-Encoding: gzip\r\n\r\n%s"
            % (len(body), body)
        )
        reply = sock.recv(65536)
    expected = b'{"PoolID":"local/10.1.0.0/16","Pool":"10.1.0.0/16","Data":{"pools":"1"}}\n'
    assert reply == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(expected), expected)
    )


def test_a_driver_error_is_200_with_dockers_text_and_the_exact_class(state: State) -> None:
    served, _, _ = state
    body = b'{"AddressSpace":"local","Pool":"10.0.0.0/8","SubPool":"","Options":null,"V6":false}\n'
    assert _post(served.socket, "/IpamDriver.RequestPool", body) == (
        200,
        "application/vnd.docker.plugins.v1.2+json",
        {
            "Error": "Pool overlaps with other one on this address space",
            "IpamkitError": "PoolOverlapError",
            "IpamkitMessage": "Pool overlaps with other one on this address space",
        },
    )


@pytest.mark.parametrize(
    ("url", "body", "status", "complaint"),
    [
        ("/IpamDriver.RequestPool", b"{not json", 400, "malformed JSON"),
        ("/IpamDriver.RequestPool", b"[1,2]", 400, "expected a JSON object"),
        ("/IpamDriver.ReleasePool", b'{"PoolID":7}', 400, "'PoolID' must be a string"),
        ("/IpamDriver.ReleaseAddress", b'{"Address":[]}', 400, "'Address' must be a string"),
        ("/IpamDriver.RequestPool", b"[" * 2000, 400, "nested too deeply"),
        ("/IpamDriver.Nope", b"{}", 404, "unknown endpoint '/IpamDriver.Nope'"),
        ("/IpamDriver.RequestPool?x=1", b"{}", 404, "unknown endpoint"),
        (
            "/IpamDriver.RequestPool",
            b'{"AddressSpace":"local","Pool":"","SubPool":"","Options":{"crash":""},"V6":false}',
            500,
            "internal error in the driver: RuntimeError: deliberate driver bug",
        ),
    ],
)
def test_bad_requests_get_a_clear_status_error_and_change_nothing(
    state: State, url: str, body: bytes, status: int, complaint: str
) -> None:
    served, _, pool_id = state
    got_status, _, reply = _post(served.socket, url, body)
    assert got_status == status
    assert complaint in str(reply["Err"])
    _assert_unharmed(served, pool_id)


def test_other_http_methods_are_refused_in_json(state: State) -> None:
    served, _, pool_id = state
    status, _, reply = _post(served.socket, "/Plugin.Activate", method="GET")
    assert status == 405
    assert reply == {"Err": "method GET not allowed: use POST"}
    _assert_unharmed(served, pool_id)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"HELLO\r\n\r\n", b"400"),
        (b"POST /IpamDriver.ReleasePool HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n", b"413"),
        (b"POST /IpamDriver.ReleasePool HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"POST / HTTP/1.1\r\n" + b"X-Filler: yes\r\n" * 5000 + b"\r\n", b"431"),
        (b"POST / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", b"400"),
    ],
)
def test_malformed_http_is_answered_and_the_connection_closed(
    state: State, request_bytes: bytes, status: bytes
) -> None:
    served, _, pool_id = state
    reply = _raw(served.socket, request_bytes)
    assert reply.split(b" ")[1] == status
    assert b'{"Err":' in reply
    _assert_unharmed(served, pool_id)


def test_a_chunked_request_is_read_as_any_other(state: State) -> None:
    served, _, pool_id = state
    body = b'{"PoolID":"local/10.0.0.0/24","Address":"10.0.0.1"}'
    reply = _raw(
        served.socket,
        b"POST /IpamDriver.ReleaseAddress HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\n{}\n")
    _client(served).request_address(pool_id, "10.0.0.1")  # it was released
    _assert_unharmed(served, pool_id)


def test_a_client_that_leaves_mid_request_changes_nothing(state: State) -> None:
    served, _, pool_id = state
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(served.socket))
        sock.sendall(
            b"POST /IpamDriver.RequestAddress HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
            b'{"PoolID":"local/10.0.0.0/24",'
        )
    _assert_unharmed(served, pool_id)


def test_an_allocation_whose_reply_cannot_be_sent_is_undone(state: State) -> None:
    served, _, pool_id = state
    body = json.dumps(
        {"PoolID": pool_id, "Address": "10.0.0.9", "Options": {"sleep": "0.3"}}
    ).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(served.socket))
        sock.sendall(
            b"POST /IpamDriver.RequestAddress HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
    # Had the allocation stayed, nobody could ever release it; it must be free again.
    driver = _client(served)
    for _ in range(50):
        try:
            driver.request_address(pool_id, "10.0.0.9")
            break
        except errors.IPAlreadyAllocatedError:
            threading.Event().wait(0.05)
    else:
        pytest.fail("the address of the lost reply was never released")
    driver.release_address(pool_id, "10.0.0.9")
    _assert_unharmed(served, pool_id)


def test_many_concurrent_clients_each_get_their_own_answer(state: State) -> None:
    served, _, pool_id = state
    got: list[IPv4Interface] = []
    failures: list[BaseException] = []

    def work() -> None:
        driver = _client(served)
        try:
            for _ in range(5):
                address = driver.request_address(pool_id).address
                assert isinstance(address, IPv4Interface)
                got.append(address)
        except BaseException as exc:
            failures.append(exc)
        finally:
            driver.close()

    threads = [threading.Thread(target=work) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(set(got)) == len(got) == 200
    driver = _client(served)
    for address in got:
        driver.release_address(pool_id, address)
    _assert_unharmed(served, pool_id)


def test_a_client_survives_a_plugin_restart(serve: Serve, short_dir: Path) -> None:
    served = serve()
    driver = _client(served)
    assert served.stop(signal.SIGTERM) == 0
    restarted = serve()
    assert restarted.socket == served.socket
    assert driver.get_default_address_spaces() == ("local", "global")


def test_the_socket_is_owner_only_unless_group_access_is_asked(serve: Serve) -> None:
    served = serve()
    assert stat.S_IMODE(os.stat(served.socket).st_mode) == 0o600
    grouped = serve("null", "--group-access")
    assert stat.S_IMODE(os.stat(grouped.socket).st_mode) == 0o660


def test_a_path_that_is_not_a_socket_is_refused_and_left_alone(short_dir: Path) -> None:
    path = short_dir / "memory.sock"
    path.write_text("precious")
    with pytest.raises(AssertionError, match="exists and is not a socket"):
        start_serve(["memory", "--socket", str(path)], short_dir / "site", None)
    assert path.read_text() == "precious"


def test_a_stale_socket_is_replaced(serve: Serve, short_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(short_dir / "memory.sock"))
    stale.close()  # the file stays, nobody listens: as after a crash
    served = serve()
    assert _client(served).get_default_address_spaces() == ("local", "global")


def test_a_socket_someone_listens_on_is_refused(serve: Serve, short_dir: Path) -> None:
    served = serve()
    with pytest.raises(AssertionError, match="another server is listening"):
        start_serve(["memory", "--socket", str(served.socket)], short_dir / "site", None)
    assert _client(served).get_default_address_spaces() == ("local", "global")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_shuts_down_cleanly_and_removes_the_socket(
    serve: Serve, signal_number: int
) -> None:
    served = serve()
    idle = _client(served)  # a keep-alive connection must not hold the shutdown up
    idle.get_default_address_spaces()
    assert served.stop(signal_number) == 0
    assert not served.socket.exists()
    assert "Traceback" not in served.log()
    idle.close()


def test_a_call_in_progress_is_answered_before_shutdown(state: State) -> None:
    served, driver, pool_id = state
    answers: list[object] = []

    def slow_call() -> None:
        try:
            answers.append(driver.request_address(pool_id, options={"sleep": "0.5"}).address)
        except errors.IpamError as exc:
            answers.append(exc)

    caller = threading.Thread(target=slow_call)
    caller.start()
    threading.Event().wait(0.2)
    assert served.stop(signal.SIGTERM) == 0
    caller.join()
    assert answers == [IPv4Interface("10.0.0.2/24")]
    assert not served.socket.exists()


def test_loopback_tcp_with_a_spec_file_docker_can_find(short_dir: Path) -> None:
    spec_dir = short_dir / "specs"
    spec_dir.mkdir()
    spec = spec_dir / "tcpmem.spec"
    process = start_serve(
        ["memory", "--listen", "127.0.0.1:0", "--spec-file", str(spec)], short_dir / "site", spec
    )
    served = Served(process, spec)
    try:
        url = spec.read_text().strip()
        assert url.startswith("tcp://127.0.0.1:")
        driver, _ = connect(Endpoint.parse(url), retry=0)
        assert driver.get_default_address_spaces() == ("local", "global")
        driver.close()
    finally:
        assert served.stop(signal.SIGTERM) == 0
    assert not spec.exists()


def test_only_loopback_addresses_are_served(short_dir: Path) -> None:
    with pytest.raises(AssertionError, match="only loopback addresses"):
        start_serve(["memory", "--listen", "0.0.0.0:0"], short_dir / "site", None)


def test_an_unknown_driver_is_an_error(short_dir: Path) -> None:
    with pytest.raises(AssertionError, match="no IPAM driver named 'nope'"):
        start_serve(["nope", "--socket", str(short_dir / "nope.sock")], short_dir / "site", None)


def test_the_default_socket_needs_a_name_docker_can_look_up(short_dir: Path) -> None:
    with pytest.raises(AssertionError, match=r"invalid plugin name '\.\./memory'"):
        start_serve(["../memory"], short_dir / "site", None)


def test_the_default_socket_is_named_after_the_plugin_name(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(serve_command, "SOCKET_DIR", str(short_dir))
    parser = build_parser()
    for argv, socket_name in (
        (["serve", "null", "--as", "ipk"], "ipk.sock"),
        (["serve", "null"], "null.sock"),
    ):
        with serve_command._open(parser.parse_args(argv), Host()) as server:
            assert server.url == f"unix://{short_dir / socket_name}"
    assert [r.getMessage() for r in caplog.records] == [
        "Docker's daemon resolves 'null' to its own built-in driver and never asks a plugin "
        "of that name; serve it under another name with --as"
    ]


def test_a_spec_file_that_cannot_be_written_is_an_error(short_dir: Path) -> None:
    spec = short_dir / "missing-dir" / "x.spec"
    with pytest.raises(AssertionError, match="cannot write the spec file"):
        start_serve(
            ["memory", "--listen", "127.0.0.1:0", "--spec-file", str(spec)],
            short_dir / "site",
            None,
        )
