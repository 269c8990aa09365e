"""parse_pool reads prefixes exactly as ipaddress does, however it gets there."""

from __future__ import annotations

import re
from ipaddress import IPv6Network, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from ipamkit import errors, parse_pool


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


@settings(max_examples=3000)
@given(
    st.text(alphabet="0123456789abcdefABCDEF.:", min_size=1, max_size=40),
    st.integers(0, 140).map(str) | st.sampled_from(["", "08", "-1", "1e1"]),
)
def test_parse_pool_agrees_with_ipaddress(address: str, length: str) -> None:
    text = f"{address}/{length}"
    assert parsed(text) == reference(text)


@given(st.ip_addresses(), st.integers(0, 128))
def test_parse_pool_on_real_prefixes(address: object, length: int) -> None:
    text = f"{address}/{length}"
    assert parsed(text) == reference(text)
