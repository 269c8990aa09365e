"""A durable driver, reopened at random points, is the in-memory driver call for call."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ipamkit import ALLOC_SERIAL_PREFIX, errors
from ipamkit.drivers.default import DefaultIpam, DurableDefaultIpam

L, G = "LocalDefault", "GlobalDefault"
LISTS: dict[str, Any] = {
    "local_pools": [("10.0.0.0/22", 24)],
    "global_pools": [("10.8.0.0/21", 24)],
}
POOLS = ["10.0.1.0/24", "10.0.0.0/22", "10.20.0.0/29", "2001:db8::/126"]
SUBPOOLS = {"10.0.0.0/22": ["10.0.2.0/30", "10.0.3.0/31"], "10.20.0.0/29": ["10.20.0.4/30"]}
SERIAL = {ALLOC_SERIAL_PREFIX: "true"}

calls = st.one_of(
    st.tuples(st.just("predefined"), st.sampled_from([L, G])),
    st.tuples(st.just("pool"), st.sampled_from(POOLS)),
    st.tuples(
        st.just("subpool"),
        st.sampled_from([(pool, sub) for pool, subs in SUBPOOLS.items() for sub in subs]),
    ),
    st.tuples(st.just("address"), st.integers(0, 15), st.sampled_from([None, "serial", 1, 5])),
    st.tuples(st.just("release_address"), st.integers(0, 15), st.integers(0, 40)),
    st.tuples(st.just("release_pool"), st.integers(0, 15)),
    st.tuples(st.just("reopen"), st.none()),
)


def apply(ipam: DefaultIpam, pool_ids: list[str], held: list[tuple[str, Any]], call: Any) -> object:
    """Make one call; return its result or its error, for comparison."""
    kind, what = call[0], call[1]
    action: Callable[[], Any]
    if kind == "predefined":
        action = lambda: ipam.request_pool(what)  # noqa: E731
    elif kind == "pool":
        action = lambda: ipam.request_pool(L, what)  # noqa: E731
    elif kind == "subpool":
        action = lambda: ipam.request_pool(L, *what)  # noqa: E731
    elif kind == "address" and pool_ids:
        pool_id, how = pool_ids[what % len(pool_ids)], call[2]
        if how is None or how == "serial":
            action = lambda: ipam.request_address(pool_id, None, SERIAL if how else None)  # noqa: E731
        else:
            action = lambda: ipam.request_address(pool_id, _nth(pool_id, how))  # noqa: E731
    elif kind == "release_address" and held:
        pool_id, address = held[call[2] % len(held)]
        action = lambda: ipam.release_address(pool_id, address)  # noqa: E731
    elif kind == "release_pool" and pool_ids:
        action = lambda: ipam.release_pool(pool_ids[what % len(pool_ids)])  # noqa: E731
    else:
        return None
    try:
        result = action()
    except errors.IpamError as exc:
        return type(exc), str(exc)
    if kind in ("predefined", "pool", "subpool"):
        pool_ids.append(result.pool_id)
    elif kind == "address":
        held.append((pool_id, result.address))
    return result


def _nth(pool_id: str, n: int) -> str:
    """The address ``n`` past the start of the master ``pool_id`` names (maybe outside it)."""
    _, address, length, *_ = pool_id.split("/")
    return str(ip_network(f"{address}/{length}").network_address + n)


@settings(max_examples=40, deadline=None)
@given(st.lists(calls, max_size=60))
def test_durable_equals_in_memory_across_reopenings(sequence: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.db"
        memory = DefaultIpam(**LISTS)
        durable = DurableDefaultIpam(path, durability="relaxed", **LISTS)
        try:
            ids: tuple[list[str], list[str]] = ([], [])
            helds: tuple[list[tuple[str, Any]], list[tuple[str, Any]]] = ([], [])
            for call in sequence:
                if call[0] == "reopen":
                    durable.close()
                    durable = DurableDefaultIpam(path, durability="relaxed", **LISTS)
                    assert durable.snapshot() == memory.snapshot()
                    continue
                expected = apply(memory, ids[0], helds[0], call)
                assert apply(durable, ids[1], helds[1], call) == expected
            assert durable.snapshot() == memory.snapshot()
        finally:
            durable.close()
        with DurableDefaultIpam(path, **LISTS) as resumed:
            assert resumed.snapshot() == memory.snapshot()
