"""The rules of ipamkit.pools that drivers share."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from hypothesis import given
from hypothesis import strategies as st

from ipamkit.pools import unusable_ordinals

_MAPPED_FIRST = 0xFFFF << 32
# Values anywhere, and values near ::ffff:0:0/96, where the pools that cover it start.
VALUES = st.integers(0, 2**128 - 1) | st.integers(_MAPPED_FIRST - 2**40, _MAPPED_FIRST + 2**40)


@given(VALUES, st.integers(0, 128), st.integers(0, 2**128 - 1))
def test_unusable_ordinals_are_the_ipv4_mapped_addresses(value: int, length: int, n: int) -> None:
    network = IPv6Network((value, length), strict=False)
    first, size = int(network.network_address), network.num_addresses
    unusable = unusable_ordinals(6, first, size)
    probes = {0, size - 1, n % size}
    probes |= {o for o in (unusable.start - 1, unusable.stop) if 0 <= o < size}
    if unusable:
        probes |= {unusable.start, unusable.stop - 1}
    for ordinal in probes:
        mapped = IPv6Address(first + ordinal).ipv4_mapped is not None
        assert (ordinal in unusable) == mapped, (network, ordinal)


def test_an_ipv4_pool_has_no_unusable_ordinals() -> None:
    # 0.0.255.255/16's value is ::ffff:0:0's top 96 bits as an IPv4 pool would read them.
    assert not unusable_ordinals(4, 0, 1 << 32)
    assert not unusable_ordinals(4, 0xFFFF << 16, 1 << 16)
