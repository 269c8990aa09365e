"""Predefined pools of the default driver (reference §2.4, §3) and their configuration."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import pytest

from ipamkit import Feature, errors
from ipamkit.drivers.default import DefaultIpam, driver_from_options
from ipamkit.predefined import (
    DOCKER_GLOBAL_POOLS,
    PredefinedPools,
    check_pool_specs,
)

L = "LocalDefault"
G = "GlobalDefault"

DOCKER_LOCAL_SEQUENCE = [f"172.{i}.0.0/16" for i in range(17, 32)] + [
    f"192.168.{16 * i}.0/20" for i in range(16)
]


def drain_pools(ipam: DefaultIpam, space: str = L, v6: bool = False) -> list[str]:
    got = []
    while True:
        try:
            got.append(str(ipam.request_pool(space, v6=v6).pool))
        except errors.NoMoreSubnetsError as exc:
            message = str(exc)
            break
    assert f"IPv{6 if v6 else 4}" in message
    return got


def test_local_sequence_to_its_end(ipam: DefaultIpam) -> None:
    assert ipam.request_pool(L) == (f"{L}/172.17.0.0/16", IPv4Network("172.17.0.0/16"), {})
    assert ["172.17.0.0/16", *drain_pools(ipam)] == DOCKER_LOCAL_SEQUENCE
    assert len(DOCKER_LOCAL_SEQUENCE) == 31


def test_d8_no_predefined_pool_left(ipam: DefaultIpam) -> None:
    drain_pools(ipam)
    before = ipam.snapshot()
    with pytest.raises(errors.NoMoreSubnetsError, match="IPv4 address pool") as info:
        ipam.request_pool(L)
    assert isinstance(info.value, errors.UnavailableError)
    assert ipam.snapshot() == before


def test_d8_no_ipv6_defaults(ipam: DefaultIpam) -> None:
    for space in (L, G):
        with pytest.raises(errors.NoMoreSubnetsError, match="IPv6"):
            ipam.request_pool(space, v6=True)
    assert Feature.CHOSEN_IPV6_POOLS not in ipam.features


def test_explicit_pool_is_skipped(ipam: DefaultIpam) -> None:
    ipam.request_pool(L, "172.18.0.0/16")
    expected = [p for p in DOCKER_LOCAL_SEQUENCE if p != "172.18.0.0/16"]
    assert drain_pools(ipam) == expected
    assert len(expected) == 30


def test_covering_pool_is_skipped(ipam: DefaultIpam) -> None:
    ipam.request_pool(L, "172.16.0.0/12")
    assert str(ipam.request_pool(L).pool) == "192.168.0.0/20"


def test_pool_inside_a_predefined_one_blocks_it(ipam: DefaultIpam) -> None:
    ipam.request_pool(L, "172.17.5.0/24", "172.17.5.0/25")
    assert str(ipam.request_pool(L).pool) == "172.18.0.0/16"


def test_round_robin_reuse(ipam: DefaultIpam) -> None:
    got = []
    for _ in range(3):
        result = ipam.request_pool(L)
        got.append(str(result.pool))
        ipam.release_pool(result.pool_id)
    assert got == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"]


def test_released_pool_waits_for_its_turn(ipam: DefaultIpam) -> None:
    first = ipam.request_pool(L)
    ipam.request_pool(L)
    ipam.release_pool(first.pool_id)
    assert str(ipam.request_pool(L).pool) == "172.19.0.0/16"


def test_start_index_resets_to_zero_instead_of_wrapping() -> None:
    ipam = DefaultIpam(local_pools=[("10.0.0.0/22", 24)])  # 10.0.0-3.0/24
    ids = [ipam.request_pool(L).pool_id for _ in range(3)]  # start index now 3
    ipam.request_pool(L, "10.0.3.0/24")
    ipam.release_pool(ids[1])
    # The walk from 3 wraps round to 10.0.1.0, position 2: 3 + 2 + 1 passes the end.
    assert str(ipam.request_pool(L).pool) == "10.0.1.0/24"
    ipam.release_pool(ids[0])
    ipam.release_pool(ids[2])
    # Reset to 0, so 10.0.0.0 comes next (wrapping modulo 4 would give 10.0.2.0).
    assert str(ipam.request_pool(L).pool) == "10.0.0.0/24"


def test_global_sample(ipam: DefaultIpam) -> None:
    assert [str(ipam.request_pool(G).pool) for _ in range(3)] == [
        "10.0.0.0/24",
        "10.0.1.0/24",
        "10.0.2.0/24",
    ]
    # Local and global lists and start indexes are independent.
    assert str(ipam.request_pool(L).pool) == "172.17.0.0/16"
    pools = PredefinedPools(check_pool_specs(DOCKER_GLOBAL_POOLS, "global"))
    assert len(pools) == 65_536
    assert (str(pools[256]), str(pools[65_535])) == ("10.1.0.0/24", "10.255.255.0/24")


def test_global_jumps_over_a_blocking_master(ipam: DefaultIpam) -> None:
    ipam.request_pool(G, "10.0.0.0/12")
    assert str(ipam.request_pool(G).pool) == "10.16.0.0/24"
    ipam.request_pool(G, "10.16.1.0/26")
    assert str(ipam.request_pool(G).pool) == "10.16.2.0/24"


def test_whole_global_list() -> None:
    ipam = DefaultIpam(global_pools=[("10.0.0.0/16", 24)])
    ipam.request_pool(G, "10.0.7.0/24")
    got = drain_pools(ipam, G)
    assert len(got) == 255
    assert "10.0.7.0/24" not in got
    assert got[-1] == "10.0.255.0/24"


# -- configuration ----------------------------------------------------------------


def test_ipv6_lists() -> None:
    ipam = DefaultIpam(local_ipv6_pools=[("fd00:1::/48", 64)], global_pools=[("fd00::/8", 64)])
    assert Feature.CHOSEN_IPV6_POOLS in ipam.features
    assert ipam.request_pool(L, v6=True) == (
        f"{L}/fd00:1::/64",
        IPv6Network("fd00:1::/64"),
        {},
    )
    assert str(ipam.request_pool(L, v6=True).pool) == "fd00:1:0:1::/64"
    assert str(ipam.request_pool(L).pool) == "172.17.0.0/16"  # the IPv4 list is kept
    # 2^56 pools, never enumerated: a blocking /16 is jumped over in one step.
    ipam.request_pool(G, "fd00::/16")
    assert str(ipam.request_pool(G, v6=True).pool) == "fd01::/64"
    with pytest.raises(errors.NoMoreSubnetsError, match="IPv4"):
        ipam.request_pool(G)
    # Declared for IPv6 lists in the local space only: that is where callers ask.
    assert (
        Feature.CHOSEN_IPV6_POOLS not in DefaultIpam(global_ipv6_pools=[("fd00::/8", 64)]).features
    )


def test_options_replace_and_extend_the_lists() -> None:
    ipam = driver_from_options(
        {
            "local_pools": "10.10.0.0/16:24,2001:db8:7::/48:64",
            "global_pools": "10.20.0.0/30:32",
            "local_ipv6_pools": "fd00:2::/48:56",
            "global_ipv6_pools": "fd00:3::/64:64",
        }
    )
    assert str(ipam.request_pool(L).pool) == "10.10.0.0/24"
    assert str(ipam.request_pool(L, v6=True).pool) == "2001:db8:7::/64"
    assert drain_pools(ipam, G) == [f"10.20.0.{i}/32" for i in range(4)]
    assert drain_pools(ipam, G, v6=True) == ["fd00:3::/64"]
    assert Feature.CHOSEN_IPV6_POOLS in ipam.features


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"local_pool": "10.0.0.0/8:16"}, "unknown option"),
        ({"local_pools": ""}, "not of the form"),
        ({"local_pools": "10.0.0.0/8"}, "not of the form"),
        ({"local_pools": "10.0.0.0/8:"}, "not of the form"),
        ({"local_pools": "10.0.0.0/8:16,"}, "not of the form"),
        ({"local_pools": "10.0.0.0/8:x"}, "not of the form"),
        ({"local_pools": "10.0.0.0/8:1000"}, "not of the form"),
        ({"local_pools": "10.0.0.0/8:4"}, "between 8 and 32"),
        ({"local_pools": "10.0.0.0/8:33"}, "between 8 and 32"),
        ({"local_pools": "10.0.0.1/8:16"}, "network address"),
        ({"local_pools": "bogus:16"}, "bogus"),
        ({"global_pools": "10.0.0.0/33:33"}, "10.0.0.0/33"),
        ({"local_ipv6_pools": "10.0.0.0/8:16"}, "not IPv6"),
        ({"global_ipv6_pools": "fd00::/8:129"}, "between 8 and 128"),
        ({"global_ipv6_pools": "FD00::/8:64"}, "network address"),
    ],
)
def test_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(errors.InvalidParameterError, match=message):
        driver_from_options(options)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_pools": "172.17.0.0/16:16"},
        {"local_pools": [("172.17.0.0/16",)]},
        {"local_pools": [(IPv4Network("172.17.0.0/16"), "16")]},
        {"global_pools": [(17, 16)]},
        {"local_ipv6_pools": [("fd00::/8", True)]},
    ],
)
def test_bad_constructor_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        DefaultIpam(**kwargs)  # type: ignore[arg-type]


def test_constructor_takes_networks() -> None:
    ipam = DefaultIpam(local_pools=[(IPv4Network("10.9.0.0/16"), 17)])
    assert drain_pools(ipam) == ["10.9.0.0/17", "10.9.128.0/17"]


def test_mixed_families_share_one_walk() -> None:
    # Entries of the other family are skipped but still count in the start
    # index, as in Docker's walk over one list.
    ipam = DefaultIpam(local_pools=[("10.0.0.0/23", 24), ("fd00::/63", 64), ("10.1.0.0/23", 24)])
    got = [str(ipam.request_pool(L, v6=v6).pool) for v6 in (False, False, False, True, False, True)]
    assert got == [
        "10.0.0.0/24",
        "10.0.1.0/24",
        "10.1.0.0/24",
        "fd00::/64",
        "10.1.1.0/24",
        "fd00:0:0:1::/64",
    ]
    with pytest.raises(errors.NoMoreSubnetsError, match="IPv6"):
        ipam.request_pool(L, v6=True)
