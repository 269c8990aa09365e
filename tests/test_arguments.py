"""The shared argument checks every driver applies at its edge."""

from __future__ import annotations

import pickle
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

import pytest

import ipamkit
from ipamkit._interfaces import interface_maker
from ipamkit.errors import InvalidParameterError, InvalidPoolError, InvalidSubPoolError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3/16", IPv4Network("10.1.0.0/16")),
        ("0.0.0.0/0", IPv4Network("0.0.0.0/0")),
        ("2001:DB8::1/64", IPv6Network("2001:db8::/64")),
        ("", None),
    ],
)
def test_parse_pool_masks_host_bits(text: str, expected: object) -> None:
    assert ipamkit.parse_pool(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "bogus",
        "10.0.0.1",
        "10.0.0.0/33",
        "2001:db8::/129",
        "10.0.0.0/255.0.0.0",
        "10.0.0.0/08",
        " 10.0.0.0/8",
        "fe80::%eth0/64",
        "::ffff:10.0.0.0/104",
        "10.0.0.0/8/8",
        "10.0.0.0/99999999999999999999",
    ],
)
def test_parse_pool_rejects_with_the_right_class(text: str) -> None:
    with pytest.raises(InvalidPoolError, match="invalid address pool"):
        ipamkit.parse_pool(text)
    with pytest.raises(InvalidSubPoolError, match="invalid address subpool"):
        ipamkit.parse_pool(text, "subpool")


def test_parse_pool_wrong_type() -> None:
    with pytest.raises(TypeError, match="pool must be a str, not IPv4Network"):
        ipamkit.parse_pool(IPv4Network("10.0.0.0/8"))
    with pytest.raises(TypeError, match="sub_pool must be a str, not NoneType"):
        ipamkit.parse_pool(None, "subpool")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", IPv4Address("10.0.0.1")),
        (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.1")),
        (IPv4Interface("10.0.0.1/24"), IPv4Address("10.0.0.1")),
        (IPv6Interface("2001:db8::1/64"), IPv6Address("2001:db8::1")),
        ("2001:DB8::1", IPv6Address("2001:db8::1")),
    ],
)
def test_parse_address(value: object, expected: object) -> None:
    assert ipamkit.parse_address(value) == expected
    assert type(ipamkit.parse_address(value)) is type(expected)


@pytest.mark.parametrize(
    "value",
    ["", "bogus", "10.0.0.1/32", "fe80::1%eth0", "::ffff:10.0.0.1", " 10.0.0.1", "010.0.0.1"],
)
def test_parse_address_rejects_bad_values(value: str) -> None:
    with pytest.raises(InvalidParameterError, match="invalid address"):
        ipamkit.parse_address(value)


@pytest.mark.parametrize("value", [None, 167772161, b"10.0.0.1", IPv4Network("10.0.0.0/8")])
def test_parse_address_wrong_type(value: object) -> None:
    with pytest.raises(TypeError, match="address must be"):
        ipamkit.parse_address(value)


def test_check_options() -> None:
    assert ipamkit.check_options(None) == {}
    assert ipamkit.check_options({"a": "b"}) == {"a": "b"}
    with pytest.raises(TypeError):
        ipamkit.check_options([("a", "b")])
    with pytest.raises(TypeError, match="'a': 1"):
        ipamkit.check_options({"a": 1})


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ((None, "", "", None, False), "address_space must be a str, not NoneType"),
        (("s", 1, "", None, False), "pool must be a str, not int"),
        (("s", "", b"", None, False), "sub_pool must be a str, not bytes"),
        (("s", "", "", ["a"], False), "options must be a mapping"),
        (("s", "", "", None, "yes"), "v6 must be a bool, not str"),
    ],
)
def test_check_pool_request_names_the_wrong_argument(
    arguments: tuple[object, ...], complaint: str
) -> None:
    with pytest.raises(TypeError, match=complaint):
        ipamkit.check_pool_request(*arguments)


def test_check_pool_request_returns_the_options() -> None:
    assert ipamkit.check_pool_request("s", "10.0.0.0/8", "", {"k": "v"}, True) == {"k": "v"}
    assert ipamkit.check_pool_request("s", "", "", None, False) == {}


def test_check_bool_is_strict() -> None:
    assert ipamkit.check_bool(True, "v6") is True
    with pytest.raises(TypeError, match="v6 must be a bool, not int"):
        ipamkit.check_bool(1, "v6")


@pytest.mark.parametrize("text", ["10.1.2.3/16", "192.168.0.7/31", "2001:db8::ffff/64", "::1/128"])
def test_fast_interfaces_equal_the_public_constructor(text: str) -> None:
    expected = IPv6Interface(text) if ":" in text else IPv4Interface(text)
    made = interface_maker(expected.network)(int(expected.ip))
    assert type(made) is type(expected)
    assert (made, str(made), repr(made), hash(made)) == (
        expected,
        str(expected),
        repr(expected),
        hash(expected),
    )
    assert (made.ip, made.network, made.netmask, made.hostmask) == (
        expected.ip,
        expected.network,
        expected.netmask,
        expected.hostmask,
    )
    assert pickle.loads(pickle.dumps(made)) == expected
