"""The fast makers and readers of _interfaces agree with ipaddress, int() and str()."""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamkit._interfaces import address_text, address_value, interface_text, network_maker


@given(st.data())
@pytest.mark.parametrize(("version", "bits"), [(4, 32), (6, 128)])
def test_same_as_the_constructor(version: int, bits: int, data: st.DataObject) -> None:
    prefixlen = data.draw(st.integers(0, bits))
    value = data.draw(st.integers(0, (1 << bits) - 1)) >> (bits - prefixlen) << (bits - prefixlen)
    expected = (IPv6Network if version == 6 else IPv4Network)((value, prefixlen))
    made = network_maker(version)(value, prefixlen)
    assert type(made) is type(expected)
    assert vars(made) == vars(expected) or prefixlen >= bits - 1
    assert (made, hash(made), str(made), repr(made)) == (
        expected,
        hash(expected),
        str(expected),
        repr(expected),
    )
    assert made.broadcast_address == expected.broadcast_address
    assert made.hostmask == expected.hostmask
    if made.num_addresses <= 4:
        assert list(made.hosts()) == list(expected.hosts())


def test_rejects_other_versions() -> None:
    with pytest.raises(ValueError, match="version"):
        network_maker(5)


@given(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 128) - 1))
def test_address_value_is_int(value4: int, value6: int) -> None:
    for address in (
        IPv4Address(value4),
        IPv4Interface((value4, 32)),
        IPv6Address(value6),
        IPv6Interface((value6, 64)),
    ):
        assert address_value(address) == int(address)


@given(st.integers(0, (1 << 32) - 1), st.integers(0, 32), st.integers(0, (1 << 128) - 1))
def test_texts_are_str(value4: int, prefixlen: int, value6: int) -> None:
    for address in (IPv4Address(value4), IPv6Address(value6)):
        assert address_text(address) == str(address)
    for interface in (IPv4Interface((value4, prefixlen)), IPv6Interface((value6, prefixlen))):
        assert interface_text(interface) == str(interface)
