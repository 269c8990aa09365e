"""Sharing: C30 (pools), C31 (addresses) and C32 (releases) across instances of a shared driver.

The instances are the driver under test and its peer (built with the peer's
options), in threads of this process and in child processes. Everything happens
in the global address space, the one a shared driver shares across hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import pytest
from ipamkit import GATEWAY, REQUEST_ADDRESS_TYPE, Feature, PoolReading, PoolResult
from ipamkit.errors import IPAlreadyAllocatedError, IpamError, PoolOverlapError

from ipamkit_conformance._helpers import Checker, Pools, clause, needs
from ipamkit_conformance._instances import Children, in_threads, join_pool, race_pools
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target

_AS_GATEWAY = {REQUEST_ADDRESS_TYPE: GATEWAY}


def _shared_pool(target: Target, ipam: Recorder, pools: Pools, prefixlen: int) -> PoolResult:
    return ipam.request_pool(target.global_space, str(pools.network(prefixlen)))


def _addresses(pools: Pools, pool_id: str, limit: int = 64) -> Callable[[], list[Any]]:
    return lambda: [str(i.ip) for i in pools.exhaust(pool_id, limit)]


def _duplicates(addresses: list[str]) -> list[str]:
    return sorted({a for a in addresses if addresses.count(a) > 1})


def _granted_once_or_joined(
    check: Checker, network: str, outcomes: list[tuple[bool, str]], instances: int
) -> None:
    """``outcomes``: per instance, whether it got ``network``, and the pool ID or error."""
    ids = [text for granted, text in outcomes if granted]
    errors = [t for granted, t in outcomes if not granted and t != PoolOverlapError.__name__]
    check.that(not errors, f"requests for {network} failed with {errors}")
    if check.target.pool_reading is PoolReading.EXCLUSIVE:
        check.that(
            len(ids) == 1,
            f"{instances} instances asked for {network} at once; it was granted {len(ids)} "
            f"times ({ids})",
        )
    else:
        check.that(
            len(ids) == instances and len(set(ids)) == 1,
            f"{instances} instances asked for {network} at once and got pool IDs {outcomes}",
        )


# -- C30: pools -----------------------------------------------------------------


@clause("C30")
def test_peer_sees_pools(
    ipam_target: Target,
    ipam: Recorder,
    ipam_peer: Recorder,
    ipam_pools: Pools,
    ipam_peer_check: Checker,
) -> None:
    check, space = ipam_peer_check, ipam_target.global_space
    pool_id, network, _ = _shared_pool(ipam_target, ipam, ipam_pools, 26)
    if ipam_target.pool_reading is PoolReading.EXCLUSIVE:
        check.error(PoolOverlapError, ipam_peer.request_pool, space, str(network))
    else:
        joined = ipam_peer.request_pool(space, str(network)).pool_id
        check.that(
            joined == pool_id,
            f"the peer's identical request for {network} gave {joined!r}, not {pool_id!r}",
        )
    check.error(PoolOverlapError, ipam_peer.request_pool, space, str(network.supernet()))
    half = next(network.subnets())
    check.error(PoolOverlapError, ipam_peer.request_pool, space, str(half))
    if ipam_target.has(Feature.DYNAMIC_ADDRESSES):
        try:
            interface, _ = ipam_peer.request_address(pool_id)
        except IpamError as error:
            raise check.violation(
                f"pool ID {pool_id!r} names no pool in the peer: {type(error).__name__}: {error}"
            ) from None
        check.that(
            interface is not None and interface.ip in network,
            f"the peer's address {interface} from {pool_id!r} is not in {network}",
        )


@clause("C30")
@needs(Feature.CHOSEN_POOLS)
def test_peer_chooses_no_pool_of_the_other(
    ipam_target: Target, ipam: Recorder, ipam_peer: Recorder, ipam_peer_check: Checker
) -> None:
    space = ipam_target.global_space
    mine = [ipam.request_pool(space) for _ in range(3)]
    theirs = [ipam_peer.request_pool(space) for _ in range(3)]
    clashes = [
        (str(a.pool), str(b.pool))
        for a in mine
        for b in theirs
        if a.pool.overlaps(b.pool) and (a != b or ipam_target.pool_reading is PoolReading.EXCLUSIVE)
    ]
    ipam_peer_check.that(not clashes, f"the two instances chose overlapping pools: {clashes}")


@clause("C30")
def test_pools_from_threads(
    ipam_target: Target,
    ipam: Recorder,
    ipam_peer: Recorder,
    ipam_pools: Pools,
    ipam_peer_check: Checker,
) -> None:
    space = ipam_target.global_space
    networks = [str(ipam_pools.network(26)) for _ in range(6)]
    got = in_threads(
        [lambda: race_pools(ipam, space, networks), lambda: race_pools(ipam_peer, space, networks)]
    )
    for index, network in enumerate(networks):
        _granted_once_or_joined(ipam_peer_check, network, [g[index] for g in got], 2)


@clause("C30")
def test_pools_from_processes(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker
) -> None:
    space = ipam_target.global_space
    networks = [str(ipam_pools.network(26)) for _ in range(6)]
    jobs = [(peer, "race_pools", (space, networks)) for peer in (False, True)]
    with Children(ipam_target, jobs) as children:
        children.go()
        mine = race_pools(ipam, space, networks)
        theirs = children.results()
        for index, network in enumerate(networks):
            outcomes = [mine[index], *(tuple(t[index]) for t in theirs)]
            _granted_once_or_joined(ipam_check, network, outcomes, 3)


# -- C31: addresses -------------------------------------------------------------


@clause("C31")
@needs(Feature.EXPLICIT_POOLS)
def test_addresses_from_threads(
    ipam_target: Target,
    ipam: Recorder,
    ipam_peer: Recorder,
    ipam_pools: Pools,
    ipam_peer_check: Checker,
) -> None:
    pool_id, network, _ = _shared_pool(ipam_target, ipam, ipam_pools, 26)
    peer_id = join_pool(ipam_target, ipam_peer, ipam_target.global_space, str(network), pool_id)
    peer_pools = Pools(ipam_target, ipam_peer)
    works = [_addresses(ipam_pools, pool_id), _addresses(peer_pools, peer_id)]
    if ipam_target.has(Feature.THREAD_SAFE):
        works *= 2
    got = in_threads(works)
    every = [a for addresses in got for a in addresses]
    ipam_peer_check.that(
        not _duplicates(every), f"handed out by both instances: {_duplicates(every)}"
    )
    if ipam_target.has(Feature.SPECIFIC_ADDRESSES) and got[0] and got[1]:
        ipam_peer_check.error(IPAlreadyAllocatedError, ipam.request_address, pool_id, got[1][0])
        ipam_peer_check.error(
            IPAlreadyAllocatedError, ipam_peer.request_address, peer_id, got[0][0]
        )


@clause("C31")
@needs(Feature.EXPLICIT_POOLS)
def test_addresses_from_processes(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker
) -> None:
    space = ipam_target.global_space
    pool_id, network, _ = _shared_pool(ipam_target, ipam, ipam_pools, 26)
    jobs = [(peer, "allocate", (space, str(network), pool_id, 64)) for peer in (False, True)]
    with Children(ipam_target, jobs) as children:
        children.go()
        mine = _addresses(ipam_pools, pool_id)()
        theirs = children.results()
        every = mine + [a for addresses in theirs for a in addresses]
        ipam_check.that(
            not _duplicates(every),
            f"handed out in two processes: {_duplicates(every)} (this one took {mine}, the "
            f"child processes {theirs})",
        )
        outside = [a for a in every if ip_address(a) not in network]
        ipam_check.that(not outside, f"addresses outside {network}: {outside}")
        if ipam_target.has(Feature.SPECIFIC_ADDRESSES):
            for addresses in theirs:
                if addresses:
                    ipam_check.error(
                        IPAlreadyAllocatedError, ipam.request_address, pool_id, addresses[0]
                    )


@clause("C31")
@needs(Feature.EXPLICIT_POOLS, Feature.SPECIFIC_ADDRESSES)
def test_a_gateway_is_shared_only_as_the_gateway(
    ipam_target: Target,
    ipam: Recorder,
    ipam_peer: Recorder,
    ipam_pools: Pools,
    ipam_peer_check: Checker,
) -> None:
    if ipam_target.pool_reading is not PoolReading.REFCOUNTED:
        pytest.skip("a shared gateway: applies to the refcounted pool reading")
    check = ipam_peer_check
    pool_id, network, _ = _shared_pool(ipam_target, ipam, ipam_pools, 29)
    gateway, other = str(network[1]), str(network[2])
    ipam.request_address(pool_id, gateway, _AS_GATEWAY)
    ipam.request_address(pool_id, other)
    check.error(IPAlreadyAllocatedError, ipam.request_address, pool_id, gateway, _AS_GATEWAY)
    joined = join_pool(ipam_target, ipam_peer, ipam_target.global_space, str(network), pool_id)
    check.error(IPAlreadyAllocatedError, ipam_peer.request_address, joined, gateway)
    check.error(IPAlreadyAllocatedError, ipam_peer.request_address, joined, other, _AS_GATEWAY)
    try:
        ipam_peer.request_address(joined, gateway, _AS_GATEWAY)
    except IpamError as error:
        check.that(
            not check.exact or isinstance(error, IPAlreadyAllocatedError),
            f"a gateway held by the other instance may be shared or refused with "
            f"IPAlreadyAllocatedError; got {type(error).__name__}: {error}",
        )
        return
    check.error(IPAlreadyAllocatedError, ipam_peer.request_address, joined, gateway, _AS_GATEWAY)
    ipam.release_address(pool_id, gateway)
    check.error(IPAlreadyAllocatedError, ipam.request_address, pool_id, gateway)
    later = _addresses(ipam_pools, pool_id)()
    check.that(
        gateway not in later,
        f"the gateway {gateway} is still the peer's, yet a dynamic request returned it",
    )


# -- C32: releases --------------------------------------------------------------


@clause("C32")
@needs(Feature.DYNAMIC_ADDRESSES)
def test_an_address_released_is_free_for_the_peer(
    ipam_target: Target,
    ipam: Recorder,
    ipam_peer: Recorder,
    ipam_pools: Pools,
    ipam_peer_check: Checker,
) -> None:
    check = ipam_peer_check
    pool_id, network, _ = _shared_pool(ipam_target, ipam, ipam_pools, 29)
    taken = _addresses(ipam_pools, pool_id, 8)()
    check.that(len(taken) >= 2, f"{network} gave only {taken}")
    joined = join_pool(ipam_target, ipam_peer, ipam_target.global_space, str(network), pool_id)
    peer_pools = Pools(ipam_target, ipam_peer)
    before = _addresses(peer_pools, joined, 8)()
    check.that(not before, f"every address of {network} was held, yet the peer got {before}")
    released = taken[:2]
    for address in released:
        ipam.release_address(pool_id, address)
    if ipam_target.has(Feature.SPECIFIC_ADDRESSES):
        try:
            ipam_peer.request_address(joined, released[0])
        except IpamError as error:
            raise check.violation(
                f"{released[0]} was released by the other instance, yet the peer's request "
                f"for it failed: {type(error).__name__}: {error}"
            ) from None
        released = released[1:]
    found = _addresses(peer_pools, joined, 8)()
    missing = [a for a in released if a not in found]
    check.that(
        not missing,
        f"{missing} released by the other instance, not found free by the peer's dynamic "
        f"requests (they found {found})",
    )


@clause("C32")
@needs(Feature.DYNAMIC_ADDRESSES)
def test_a_pool_released_is_free_for_the_peer(
    ipam_target: Target,
    ipam: Recorder,
    ipam_peer: Recorder,
    ipam_pools: Pools,
    ipam_peer_check: Checker,
) -> None:
    check, space = ipam_peer_check, ipam_target.global_space
    gone = _shared_pool(ipam_target, ipam, ipam_pools, 29)
    twin = _shared_pool(ipam_target, ipam, ipam_pools, 29)
    list(ipam_pools.exhaust(gone.pool_id, 2))
    if ipam_target.pool_reading is PoolReading.REFCOUNTED:
        joined = join_pool(ipam_target, ipam_peer, space, str(gone.pool), gone.pool_id)
        ipam.release_pool(gone.pool_id)
        try:
            ipam_peer.request_address(joined)
        except IpamError as error:
            raise check.violation(
                f"the peer still holds a reference to {gone.pool}, yet after the other "
                f"released its own the pool gives no address: {type(error).__name__}: {error}"
            ) from None
        ipam_peer.release_pool(joined)
    else:
        ipam.release_pool(gone.pool_id)
    try:
        back = ipam_peer.request_pool(space, str(gone.pool))
    except IpamError as error:
        raise check.violation(
            f"{gone.pool} was released, yet the peer's request for it failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    count = len(_addresses(Pools(ipam_target, ipam_peer), back.pool_id, 8)())
    expected = len(_addresses(ipam_pools, twin.pool_id, 8)())
    check.that(
        count == expected,
        f"{gone.pool}, released and requested again by the peer, gave {count} addresses; "
        f"an empty pool of its size gives {expected}",
    )
