"""What ``ipamkit serve`` logs: every call, every refusal, one line each, text or JSON."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable

import pytest

from ipamkit.protocol import wire
from tests.protocol.conftest import Served
from tests.protocol.server_helpers import Raw, wait_for

Serve = Callable[..., Served]
POOL = {"AddressSpace": "local", "Pool": "10.0.0.0/24", "SubPool": "", "Options": {}, "V6": False}
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _calls(served: Served) -> None:
    """A pool, an address, and the same address again (an error)."""
    connection = Raw(served.socket)
    assert connection.call(wire.REQUEST_POOL.path, POOL)[0] == 200
    address = {"PoolID": "local/10.0.0.0/24", "Address": "10.0.0.7", "Options": None}
    assert connection.call(wire.REQUEST_ADDRESS.path, address)[0] == 200
    assert "Error" in connection.call(wire.REQUEST_ADDRESS.path, address)[1]
    connection.close()


def _lines(served: Served, marker: str, count: int) -> list[str]:
    # Lines, not occurrences: a JSON entry names its method twice (method and message).
    def found() -> list[str]:
        return [line for line in served.log().splitlines() if marker in line]

    wait_for(lambda: len(found()) >= count, f"{count} log lines with {marker!r}")
    return found()


def test_each_call_is_a_text_line_with_time_fields_result_and_duration(serve: Serve) -> None:
    served = serve()
    _calls(served)
    ok, refused = _lines(served, "IpamDriver.RequestAddress", 2)
    prefix = rf"{TIME} INFO ipamkit\.protocol\.server: IpamDriver\.RequestAddress "
    assert re.fullmatch(
        prefix + r"pool_id=local/10\.0\.0\.0/24 address=10\.0\.0\.7/24 -> ok \(\d+\.\d{3} ms\)", ok
    ), ok
    assert re.fullmatch(
        prefix + r"pool_id=local/10\.0\.0\.0/24 address=10\.0\.0\.7 -> "
        r"IPAlreadyAllocatedError: Address already in use \(\d+\.\d{3} ms\)",
        refused,
    ), refused


def test_each_call_is_a_json_object_with_its_fields(serve: Serve) -> None:
    served = serve("memory", "--log-format", "json")
    _calls(served)
    _lines(served, "IpamDriver.RequestAddress", 2)
    entries = [json.loads(line) for line in served.log().splitlines()]  # every line is JSON
    calls = [e for e in entries if e.get("method", "").startswith("IpamDriver.Req")]
    assert len(calls) == 3, entries
    pool, ok, refused = calls
    assert pool["pool_id"] == "local/10.0.0.0/24"
    assert pool["pool"] == "10.0.0.0/24"
    assert (ok["result"], ok["address"], ok["level"]) == ("ok", "10.0.0.7/24", "info")
    assert (refused["result"], refused["error"]) == (
        "IPAlreadyAllocatedError",
        "Address already in use",
    )
    for entry in (pool, ok, refused):
        assert re.fullmatch(TIME, entry["time"])
        assert isinstance(entry["duration_ms"], float)


def test_a_higher_log_level_leaves_calls_out_but_not_refusals(serve: Serve) -> None:
    served = serve("memory", "--log-level", "warning")
    _calls(served)
    connection = Raw(served.socket)
    assert connection.call(wire.RELEASE_POOL.path, {"PoolID": 7})[0] == 400
    connection.close()
    (line,) = _lines(served, "refused", 1)
    assert re.fullmatch(
        rf"{TIME} WARNING ipamkit\.protocol\.server: IpamDriver\.ReleasePool: refused \(400\): "
        r"field 'PoolID' must be a string, not a number",
        line,
    ), line
    assert "IpamDriver.RequestAddress" not in served.log()


def _send(served: Served, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(served.socket))
        sock.sendall(data)
        return sock.recv(65536)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b"POST /IpamDriver.RequestPool HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"[" * 2000,
            "IpamDriver.RequestPool: refused (400): malformed JSON: nested too deeply",
        ),
        (
            b"POST /IpamDriver.ReleasePool HTTP/1.1\r\nContent-Length: "
            + b"0" * 5000
            + b"2\r\n\r\n{}",
            "refused (400): malformed Content-Length of 5001 characters",
        ),
    ],
)
def test_deep_or_huge_input_is_a_400_and_one_log_line(
    serve: Serve, data: bytes, reason: str
) -> None:
    served = serve()
    reply = _send(served, data)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
    assert b'{"Err":"%s"}' % reason.partition("refused (400): ")[2].encode() in reply
    (line,) = _lines(served, reason, 1)
    assert line.endswith(reason)
    assert "Traceback" not in served.log()
    assert served.alive()
