"""Address spaces and ipam_pools: C01-C13."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network

import pytest
from ipamkit import Feature, Network
from ipamkit.errors import (
    BadPoolError,
    InvalidAddressSpaceError,
    InvalidPoolError,
    InvalidSubPoolError,
    IpamError,
    PoolOverlapError,
    UnavailableError,
)

from ipamkit_conformance._helpers import Checker, Pools, clause, needs
from ipamkit_conformance._networks import MALFORMED_POOLS
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target


def _still_live(ipam: Recorder, space: str, network: Network) -> bool:
    """Probe a pool's liveness: a different pool inside it is refused only while it lives."""
    inner = next(network.subnets()) if network.prefixlen < network.max_prefixlen else network
    try:
        pool_id = ipam.request_pool(space, str(inner)).pool_id
    except PoolOverlapError:
        return True
    ipam.release_pool(pool_id)
    return False


@clause("C01")
def test_default_address_spaces(ipam: Recorder, ipam_check: Checker) -> None:
    first = ipam.get_default_address_spaces()
    ipam_check.that(
        isinstance(first, tuple)
        and len(first) == 2
        and all(isinstance(s, str) and s for s in first),
        f"expected two non-empty strings, got {first!r}",
    )
    ipam_check.that(ipam.get_default_address_spaces() == first, "the answer changed between calls")


@clause("C02")
@pytest.mark.parametrize("space", ["", "no-such-address-space"], ids=["empty", "unknown"])
def test_invalid_address_space(ipam: Recorder, ipam_expect: Checker, space: str) -> None:
    ipam_expect.error(InvalidAddressSpaceError, ipam.request_pool, space)


@clause("C03")
def test_address_spaces_independent(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker
) -> None:
    local, global_ = ipam_target.local_space, ipam_target.global_space
    if local == global_:
        pytest.skip(f"the driver has a single address space ({local!r})")
    network = ipam_pools.network(24)
    in_local = ipam.request_pool(local, str(network))
    in_global = ipam.request_pool(global_, str(network))
    ipam_check.that(in_local.pool_id != in_global.pool_id, "both spaces gave the same pool ID")
    ipam.release_pool(in_local.pool_id)
    # Both succeed only if the local pool went and the global one stayed.
    ipam.request_pool(local, str(network))
    ipam.release_pool(in_global.pool_id)


@clause("C03")
@pytest.mark.parametrize(
    "how",
    [
        pytest.param("specific", marks=needs(Feature.SPECIFIC_ADDRESSES)),
        pytest.param("dynamic", marks=needs(Feature.DYNAMIC_ADDRESSES)),
    ],
)
def test_address_spaces_hold_addresses_apart(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker, how: str
) -> None:
    local, global_ = ipam_target.local_space, ipam_target.global_space
    if local == global_:
        pytest.skip(f"the driver has a single address space ({local!r})")
    network = ipam_pools.network(29)
    pools = [ipam.request_pool(space, str(network)).pool_id for space in (local, global_)]
    if how == "specific":
        address = str(network.network_address + 3)
        for pool_id, space in zip(pools, (local, global_), strict=True):
            try:
                ipam.request_address(pool_id, address)
            except IpamError as error:
                ipam_check.that(
                    False,
                    f"{address} of {network} is held only in the other address space, yet "
                    f"request_address in {space!r} failed with {type(error).__name__}: {error}",
                )
        return
    counts = [len(list(ipam_pools.exhaust(pool_id, 16))) for pool_id in pools]
    ipam_check.that(
        counts[0] == counts[1],
        f"{network} gave {counts[0]} addresses in {local!r}, then {counts[1]} in {global_!r}",
    )


@clause("C04")
@pytest.mark.parametrize(
    "v6", [pytest.param(False, id="ipv4"), pytest.param(True, id="ipv6", marks=needs(Feature.IPV6))]
)
def test_explicit_pool(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker, v6: bool
) -> None:
    first = ipam_pools.network(24 if not v6 else 64, v6)
    second = ipam_pools.network(24 if not v6 else 64, v6)
    a = ipam.request_pool(ipam_target.local_space, str(first), v6=v6)
    b = ipam.request_pool(ipam_target.local_space, str(second), v6=v6)
    ipam_check.that(a.pool == first, f"asked for {first}, got {a.pool}")
    ipam_check.that(
        isinstance(a.pool_id, str) and a.pool_id != "", f"pool ID {a.pool_id!r} is not a string"
    )
    ipam_check.that(a.pool_id != b.pool_id, f"two pools share the ID {a.pool_id!r}")


@clause("C05")
@pytest.mark.parametrize("pool", MALFORMED_POOLS)
def test_invalid_pool(ipam_target: Target, ipam: Recorder, ipam_expect: Checker, pool: str) -> None:
    ipam_expect.error(InvalidPoolError, ipam.request_pool, ipam_target.local_space, pool)


def _quarter(base: Network, index: int, prefixlen: int) -> str:
    return str(ip_network((int(base.network_address) + index * 256, prefixlen)))


# Each case gets a fresh /22 and returns (pool, subpool).
_SUBPOOLS: dict[str, Callable[[Network], tuple[str, str]]] = {
    "without-pool": lambda b: ("", _quarter(b, 0, 25)),
    "malformed": lambda b: (_quarter(b, 0, 24), "bogus"),
    "other-family": lambda b: (_quarter(b, 0, 24), "2001:db8::/64"),
    "outside": lambda b: (_quarter(b, 0, 24), _quarter(b, 1, 25)),
    "larger": lambda b: (_quarter(b, 0, 24), _quarter(b, 0, 23)),
}


@clause("C06")
@pytest.mark.parametrize("case", sorted(_SUBPOOLS))
def test_invalid_subpool(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_expect: Checker, case: str
) -> None:
    pool, sub_pool = _SUBPOOLS[case](ipam_pools.network(22))
    ipam_expect.error(
        InvalidSubPoolError, ipam.request_pool, ipam_target.local_space, pool, sub_pool
    )


@clause("C06")
def test_subpool_equal_to_pool(ipam_target: Target, ipam_pools: Pools, ipam_check: Checker) -> None:
    result = ipam_pools.explicit(24, sub=str)
    ipam_check.that(result.pool.prefixlen == 24, f"got {result.pool}")


def _held_by(ipam_target: Target, ipam: Recorder, ipam_pools: Pools, how: str) -> Network:
    if how == "chosen":
        return ipam.request_pool(ipam_target.local_space).pool
    if how == "subpool":
        return ipam_pools.explicit(24, sub=lambda n: str(next(n.subnets(new_prefix=26)))).pool
    return ipam_pools.explicit(24).pool


@clause("C07")
@pytest.mark.parametrize(
    "how",
    [
        "explicit",
        pytest.param("subpool", marks=needs(Feature.SUB_POOLS)),
        pytest.param("chosen", marks=needs(Feature.CHOSEN_POOLS)),
    ],
)
@pytest.mark.parametrize("shape", ["supernet", "subnet"])
def test_pools_never_overlap(
    ipam_target: Target,
    ipam: Recorder,
    ipam_pools: Pools,
    ipam_expect: Checker,
    how: str,
    shape: str,
) -> None:
    live = _held_by(ipam_target, ipam, ipam_pools, how)
    other = live.supernet() if shape == "supernet" else next(live.subnets())
    ipam_expect.error(PoolOverlapError, ipam.request_pool, ipam_target.local_space, str(other))


def _clashes(chosen: list[Network]) -> list[tuple[Network, Network]]:
    return [(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1 :] if a.overlaps(b)]


@clause("C08")
def test_chosen_pools_never_overlap_each_other(
    ipam_target: Target, ipam: Recorder, ipam_check: Checker
) -> None:
    for space in {ipam_target.local_space, ipam_target.global_space}:
        chosen = [ipam.request_pool(space).pool for _ in range(6)]
        ipam_check.that(
            not _clashes(chosen), f"chosen pools overlap in {space!r}: {_clashes(chosen)}"
        )


@clause("C08")
@needs(Feature.EXPLICIT_POOLS)
def test_chosen_pools_avoid_explicit_ones(
    ipam_target: Target, ipam: Recorder, ipam_check: Checker
) -> None:
    space = ipam_target.local_space
    # Learn where the driver chooses from, then take those places explicitly.
    first = [ipam.request_pool(space) for _ in range(3)]
    for result in first:
        ipam.release_pool(result.pool_id)
    explicit = [ipam.request_pool(space, str(next(r.pool.subnets()))).pool for r in first]
    for _ in range(3):
        chosen = ipam.request_pool(space).pool
        clash = [e for e in explicit if e.overlaps(chosen)]
        ipam_check.that(not clash, f"chose {chosen}, which overlaps explicit pool {clash}")


@clause("C08")
def test_chosen_pools_after_a_release(
    ipam_target: Target, ipam: Recorder, ipam_check: Checker
) -> None:
    # A rotation or a table of used places that release_pool updates wrongly chooses
    # a place that is still live.
    space = ipam_target.local_space
    first = ipam.request_pool(space)
    live = [ipam.request_pool(space).pool for _ in range(3)]
    ipam.release_pool(first.pool_id)
    for _ in range(4):
        chosen = ipam.request_pool(space).pool
        clash = [str(n) for n in live if n.overlaps(chosen)]
        ipam_check.that(
            not clash, f"after a release_pool, chose {chosen}, which overlaps live {clash}"
        )
        live.append(chosen)


@clause("C08")
def test_no_more_pools_is_unavailable(
    ipam_target: Target, ipam: Recorder, ipam_check: Checker
) -> None:
    # Bounded: a driver with a large supply simply never says it has run out.
    for _ in range(64):
        try:
            ipam.request_pool(ipam_target.local_space)
        except IpamError as error:
            ipam_check.that(
                not ipam_check.exact or isinstance(error, UnavailableError),
                f"running out of pools must be UnavailableError, "
                f"got {type(error).__name__}: {error}",
            )
            return


@clause("C09")
@pytest.mark.parametrize(
    "v6",
    [
        pytest.param(False, id="ipv4"),
        pytest.param(True, id="ipv6", marks=needs(Feature.CHOSEN_IPV6_POOLS)),
    ],
)
def test_v6_flag(ipam_target: Target, ipam: Recorder, ipam_check: Checker, v6: bool) -> None:
    pool = ipam.request_pool(ipam_target.local_space, v6=v6).pool
    ipam_check.that(pool.version == (6 if v6 else 4), f"asked for v6={v6}, got {pool}")


@clause("C09")
def test_v6_flag_never_gives_ipv4(ipam_target: Target, ipam: Recorder, ipam_check: Checker) -> None:
    try:
        pool = ipam.request_pool(ipam_target.local_space, v6=True).pool
    except IpamError:
        ipam_check.that(
            not ipam_target.has(Feature.CHOSEN_IPV6_POOLS),
            "declares chosen_ipv6_pools, yet refused to choose an IPv6 pool",
        )
        return
    ipam_check.that(pool.version == 6, f"asked for an IPv6 pool, got {pool}")


@clause("C10")
@pytest.mark.parametrize(
    "sub",
    [
        pytest.param(False, id="pool"),
        pytest.param(True, id="with-subpool", marks=needs(Feature.SUB_POOLS)),
    ],
)
def test_exclusive_reading(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_expect: Checker, sub: bool
) -> None:
    space = ipam_target.local_space
    network = ipam_pools.network(24)
    sub_pool = str(next(network.subnets(new_prefix=26))) if sub else ""
    first = ipam.request_pool(space, str(network), sub_pool)
    ipam_expect.error(PoolOverlapError, ipam.request_pool, space, str(network), sub_pool)
    ipam.release_pool(first.pool_id)
    again = ipam.request_pool(space, str(network), sub_pool)
    ipam_expect.that(
        again.pool == network, f"after one release, asked for {network}, got {again.pool}"
    )


@clause("C11")
@pytest.mark.parametrize("count", [2, 3])
def test_refcounted_reading(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_expect: Checker, count: int
) -> None:
    space = ipam_target.local_space
    network = ipam_pools.network(24)
    results = [ipam.request_pool(space, str(network)) for _ in range(count)]
    ids = {r.pool_id for r in results}
    ipam_expect.that(
        len(ids) == 1, f"{count} identical requests gave different pool IDs: {sorted(ids)}"
    )
    ipam_expect.that(all(r.pool == network for r in results), f"asked for {network}, got {results}")
    for left in range(count - 1, 0, -1):
        ipam.release_pool(results[0].pool_id)
        ipam_expect.that(
            _still_live(ipam, space, network), f"the pool died with {left} reference(s) left"
        )
    ipam.release_pool(results[0].pool_id)
    ipam_expect.that(
        not _still_live(ipam, space, network), f"the pool outlived its {count} releases"
    )
    ipam_expect.error(BadPoolError, ipam.release_pool, results[0].pool_id)


@clause("C12")
@pytest.mark.parametrize(
    "how",
    [
        pytest.param("dynamic", marks=needs(Feature.DYNAMIC_ADDRESSES)),
        pytest.param("specific", marks=needs(Feature.SPECIFIC_ADDRESSES)),
    ],
)
def test_released_pool_comes_back_empty(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker, how: str
) -> None:
    first = ipam_pools.explicit(29)
    network = first.pool
    if how == "dynamic":
        before = [i.ip for i in ipam_pools.exhaust(first.pool_id, 16)]
    else:
        before = [network.network_address + i for i in (1, 2, 3)]
        for address in before:
            ipam.request_address(first.pool_id, str(address))
    ipam.release_pool(first.pool_id)
    again = ipam.request_pool(ipam_target.local_space, str(network))
    if how == "dynamic":
        after = [i.ip for i in ipam_pools.exhaust(again.pool_id, 16)]
        ipam_check.that(sorted(after) == sorted(before), f"before release {before}, after {after}")
    else:
        for address in before:
            ipam.request_address(again.pool_id, str(address))


_POOL_ID_CALLS = {
    "release_pool": lambda ipam, pool_id: ipam.release_pool(pool_id),
    "request_address": lambda ipam, pool_id: ipam.request_address(pool_id),
    "release_address": lambda ipam, pool_id: ipam.release_address(pool_id, "10.208.0.1"),
}


@clause("C13")
@pytest.mark.parametrize("call", sorted(_POOL_ID_CALLS))
def test_unknown_pool_id(ipam: Recorder, ipam_expect: Checker, call: str) -> None:
    ipam_expect.error(
        (BadPoolError, InvalidPoolError), _POOL_ID_CALLS[call], ipam, "no-such-pool-id"
    )


@clause("C13")
@pytest.mark.parametrize("call", sorted(_POOL_ID_CALLS))
def test_released_pool_id(
    ipam: Recorder, ipam_pools: Pools, ipam_expect: Checker, call: str
) -> None:
    pool_id = ipam_pools.any().pool_id
    ipam.release_pool(pool_id)
    ipam_expect.error(BadPoolError, _POOL_ID_CALLS[call], ipam, pool_id)
