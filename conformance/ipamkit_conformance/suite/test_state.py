"""State: C24 (failing calls change nothing) and C25 (concurrent callers)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

import pytest
from ipamkit import Address, Feature, Network, PoolReading
from ipamkit.errors import IpamError

from ipamkit_conformance._helpers import Checker, Pools, clause, needs
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target


def _takes(ipam: Recorder, space: str, network: Network) -> bool:
    """Tell whether ``network`` can be requested now (giving it back at once)."""
    try:
        pool_id = ipam.request_pool(space, str(network)).pool_id
    except IpamError:
        return False
    ipam.release_pool(pool_id)
    return True


def _other(network: Network, held: Address) -> Address:
    """An address of ``network`` other than ``held``, and neither of its IPv4 reserved ones."""
    return network[2] if network[2] != held else network[3]


@dataclass
class _Scene:
    """The state a bad call meets: a small pool with one address held, a fresh network."""

    ipam: Recorder
    space: str
    pool_id: str
    network: Network
    held: Address
    fresh: Network


_BAD_CALLS: dict[str, tuple[Feature | None, Callable[[_Scene], Any]]] = {
    "request-held-address": (
        Feature.SPECIFIC_ADDRESSES,
        lambda s: s.ipam.request_address(s.pool_id, str(s.held)),
    ),
    "request-out-of-range": (
        Feature.SPECIFIC_ADDRESSES,
        lambda s: s.ipam.request_address(s.pool_id, str(s.network.broadcast_address + 1)),
    ),
    "release-out-of-range": (
        None,
        lambda s: s.ipam.release_address(s.pool_id, str(s.network.broadcast_address + 1)),
    ),
    "malformed-address": (None, lambda s: s.ipam.request_address(s.pool_id, "bogus")),
    # The IPv4 addresses they map: one held, one free (the scene's pool is IPv4).
    "release-ipv4-mapped": (None, lambda s: s.ipam.release_address(s.pool_id, f"::ffff:{s.held}")),
    "request-ipv4-mapped": (
        None,
        lambda s: s.ipam.request_address(s.pool_id, f"::ffff:{_other(s.network, s.held)}"),
    ),
    "overlapping-pool": (None, lambda s: s.ipam.request_pool(s.space, str(s.network.supernet()))),
    "bad-subpool": (
        Feature.SUB_POOLS,
        lambda s: s.ipam.request_pool(
            s.space, str(s.fresh), str(ip_network((int(s.fresh.broadcast_address) + 1, 30)))
        ),
    ),
    "unknown-address-space": (
        None,
        lambda s: s.ipam.request_pool("no-such-address-space", str(s.fresh)),
    ),
    "release-unknown-pool": (None, lambda s: s.ipam.release_pool("no-such-pool-id")),
}


@clause("C24")
@pytest.mark.parametrize(
    "case",
    [pytest.param(k, marks=needs(f)) if f else k for k, (f, _) in sorted(_BAD_CALLS.items())],
)
def test_failing_call_changes_nothing(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker, case: str
) -> None:
    space = ipam_target.local_space
    # A twin pool that sees the same calls but the bad one tells what "unchanged" is,
    # whatever addresses the driver keeps back; nothing here relies on a release.
    watched, twin = ipam_pools.explicit(29), ipam_pools.explicit(29)
    held = next(ipam_pools.exhaust(watched.pool_id, 1)).ip
    next(ipam_pools.exhaust(twin.pool_id, 1))
    scene = _Scene(ipam, space, watched.pool_id, watched.pool, held, ipam_pools.network(24))
    try:
        _BAD_CALLS[case][1](scene)
    except IpamError:
        pass
    else:
        pytest.skip(f"the bad call ({case}) succeeded: that breaks its own clause, not this one")
    after = [i.ip for i in ipam_pools.exhaust(watched.pool_id, 16)]
    expected = len(list(ipam_pools.exhaust(twin.pool_id, 16)))
    ipam_check.that(
        len(after) == expected,
        f"after the failing call {len(after)} addresses were free, the untouched twin pool "
        f"had {expected}",
    )
    ipam_check.that(held not in after, f"{held} was held, the failing call freed it")
    ipam_check.that(_takes(ipam, space, scene.fresh), f"{scene.fresh} can no longer be requested")


_THREADS = 4


def _in_threads(work: Callable[[int], list[Any]]) -> list[Any]:
    barrier = threading.Barrier(_THREADS)
    results: list[list[Any]] = [[] for _ in range(_THREADS)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for result in results for r in result]


@clause("C25")
@needs(Feature.DYNAMIC_ADDRESSES)
def test_concurrent_addresses(ipam: Recorder, ipam_pools: Pools, ipam_check: Checker) -> None:
    pool = ipam_pools.any()
    got = _in_threads(lambda _: [str(i.ip) for i in ipam_pools.exhaust(pool.pool_id, 60)])
    duplicates = sorted({a for a in got if got.count(a) > 1})
    ipam_check.that(not duplicates, f"handed out to two threads: {duplicates}")


@clause("C25")
@needs(Feature.CHOSEN_POOLS)
def test_concurrent_chosen_pools(ipam_target: Target, ipam: Recorder, ipam_check: Checker) -> None:
    space = ipam_target.local_space
    chosen = _in_threads(lambda _: [ipam.request_pool(space).pool for _ in range(3)])
    clashes = [(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1 :] if a.overlaps(b)]
    ipam_check.that(not clashes, f"chosen pools overlap: {clashes}")


@clause("C25")
@needs(Feature.EXPLICIT_POOLS)
def test_concurrent_explicit_pools(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker
) -> None:
    space = ipam_target.local_space
    networks = [ipam_pools.network(26) for _ in range(8)]

    def race(_: int) -> list[tuple[str, str]]:
        won = []
        for network in networks:
            with contextlib.suppress(IpamError):
                won.append((str(network), ipam.request_pool(space, str(network)).pool_id))
        return won

    won = _in_threads(race)
    grants = {str(n): [pool_id for w, pool_id in won if w == str(n)] for n in networks}
    # One ID granted to every thread is the reference-counted reading, and one grant
    # alone the exclusive one, whatever the declaration: a reading the driver does
    # not follow is C10's and C11's to report. Only two pools made of one request
    # (different IDs), or a count of references lost on the way, are a race.
    refcounted = [n for n, ids in grants.items() if len(ids) == _THREADS and len(set(ids)) == 1]
    exclusive = [n for n, ids in grants.items() if len(ids) == 1]
    declared = ipam_target.pool_reading
    followed = refcounted if declared is PoolReading.REFCOUNTED else exclusive
    if len(followed) < len(networks) and len(refcounted) + len(exclusive) == len(networks):
        other = "exclusive" if declared is PoolReading.REFCOUNTED else "refcounted"
        pytest.skip(
            f"the driver answered as the {other} reading, not the declared "
            f"{declared.value} one: that breaks "
            f"{'C11' if declared is PoolReading.REFCOUNTED else 'C10'}, not this clause"
        )
    for network, ids in grants.items():
        if declared is PoolReading.EXCLUSIVE:
            ipam_check.that(len(ids) == 1, f"{network} was granted {len(ids)} times at once")
        else:
            ipam_check.that(len(ids) == _THREADS and len(set(ids)) == 1, f"{network} got IDs {ids}")
