"""parse_pool and parse_prefix read prefixes exactly as ipaddress does, however they get there."""

from __future__ import annotations

import re
from ipaddress import IPv6Network, ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from ipamkit import errors, parse_pool
from ipamkit._arguments import parse_prefix


def reference(text: str) -> object:
    """The plain reading: shape check, ``ip_network(strict=False)``, no IPv4-mapped IPv6."""
    if not re.fullmatch(r"[0-9A-Fa-f.:]+/(0|[1-9][0-9]{0,2})", text):
        return errors.InvalidPoolError
    try:
        network = ip_network(text, strict=False)
    except ValueError:
        return errors.InvalidPoolError
    if isinstance(network, IPv6Network) and network.network_address.ipv4_mapped is not None:
        return errors.InvalidPoolError
    return network


def parsed(text: str) -> object:
    try:
        return parse_pool(text)
    except errors.InvalidPoolError:
        return errors.InvalidPoolError


# Zones, blanks and stray slashes too: the fast path never looks at the shape.
ADDRESSES = st.text(alphabet="0123456789abcdefABCDEF.:% /", min_size=1, max_size=40)
LENGTHS = st.integers(0, 140).map(str) | st.sampled_from(["", "08", "-1", "1e1", " 8", "٨"])


@settings(max_examples=3000)
@given(ADDRESSES, LENGTHS)
def test_parse_pool_agrees_with_ipaddress(address: str, length: str) -> None:
    text = f"{address}/{length}"
    assert parsed(text) == reference(text)


@settings(max_examples=3000)
@given(ADDRESSES, LENGTHS)
def test_parse_prefix_agrees_with_ipaddress(address: str, length: str) -> None:
    text = f"{address}/{length}"
    expected = reference(text)
    try:
        version, first, prefixlen, exact = parse_prefix(text)
    except errors.InvalidPoolError:
        assert expected is errors.InvalidPoolError
        return
    assert not isinstance(expected, type)
    assert (version, first, prefixlen) == (
        expected.version,
        int(expected.network_address),
        expected.prefixlen,
    )
    assert exact == (int(ip_address(address)) == first)


@given(st.ip_addresses(), st.integers(0, 128))
def test_parse_pool_on_real_prefixes(address: object, length: int) -> None:
    text = f"{address}/{length}"
    assert parsed(text) == reference(text)
