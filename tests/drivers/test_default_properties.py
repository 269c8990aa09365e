"""Property tests: the default driver against a plain set-based model of the reference."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from ipamkit import ALLOC_SERIAL_PREFIX, Network, errors, parse_address
from ipamkit.drivers.default import DefaultIpam
from ipamkit.drivers.default._bitmap import RunSet

L, G = "LocalDefault", "GlobalDefault"
LOCAL_LIST = [("10.0.0.0/26", 28)]
GLOBAL_LIST = [("10.0.0.0/27", 29), ("2001:db8::/123", 125)]

POOLS = [
    "10.0.0.0/26",
    "10.0.0.0/28",
    "10.0.0.16/28",
    "10.0.0.0/30",
    "10.0.0.4/30",
    "10.0.0.8/31",
    "10.0.0.12/32",
    "10.0.0.32/27",
    "2001:db8::/123",
    "2001:db8::/126",
    "2001:db8::10/124",
    "2001:db8::/128",
]
HOST_BITS = ["10.0.0.5/28", "2001:db8::3/126"]
GARBAGE = ["bogus", "10.0.0.0/33", "::ffff:10.0.0.0/120", "10.0.0.0"]
ADDRESSES = (
    [f"10.0.0.{i}" for i in range(72)]
    + [f"2001:db8::{i:x}" for i in range(40)]
    + ["bogus", "10.0.0.1/24", "::ffff:10.0.0.1", "fe80::1%eth0"]
)

Outcome = tuple[str, Any]


class ModelError(Exception):
    def __init__(self, cls: type[Exception]) -> None:
        self.cls = cls


def _parse_prefix(text: str, error: type[Exception]) -> Network:
    if not re.fullmatch(r"[0-9a-f.:]+/[0-9]+", text):
        raise ModelError(error)
    try:
        network = ip_network(text, strict=False)
    except ValueError:
        raise ModelError(error) from None
    if network.version == 6 and network.network_address.ipv4_mapped is not None:
        raise ModelError(error)
    return network


def _has_host_bits(text: str) -> bool:
    address = ip_address(text.split("/", maxsplit=1)[0])
    return address != ip_network(text, strict=False).network_address


@dataclass
class MMaster:
    network: Network
    auto: bool
    taken: set[int] = field(default_factory=set)
    reserved: set[int] = field(default_factory=set)
    children: set[Network] = field(default_factory=set)
    cursor: int = 0

    def __post_init__(self) -> None:
        size = self.network.num_addresses
        if self.network.version == 6:
            self.reserved = {0}
        elif size > 2:
            self.reserved = {0, size - 1}
        self.taken = set(self.reserved)


@dataclass
class MSpace:
    pools: list[Network]
    masters: dict[Network, MMaster] = field(default_factory=dict)
    start: int = 0


class Model:
    """The reference rules, written the obvious way: sets and linear scans."""

    def __init__(self) -> None:
        def expand(groups: list[tuple[str, int]]) -> list[Network]:
            return [n for base, size in groups for n in ip_network(base).subnets(new_prefix=size)]

        self.spaces = {L: MSpace(expand(LOCAL_LIST)), G: MSpace(expand(GLOBAL_LIST))}

    def request_pool(self, space_name: str, pool: str, sub_pool: str, v6: bool) -> Outcome:
        space = self.spaces.get(space_name)
        if space is None:
            raise ModelError(errors.InvalidAddressSpaceError)
        if not pool:
            if sub_pool:
                raise ModelError(errors.InvalidSubPoolError)
            return self._predefined(space_name, space, 6 if v6 else 4)
        network = _parse_prefix(pool, errors.InvalidPoolError)
        child = _parse_prefix(sub_pool, errors.InvalidSubPoolError) if sub_pool else None
        if child is not None and (
            child.version != network.version or not child.subnet_of(network)  # type: ignore[arg-type]
        ):
            raise ModelError(errors.InvalidSubPoolError)
        master = space.masters.get(network)
        if master is None:
            if any(network.overlaps(m) for m in space.masters):  # type: ignore[arg-type]
                raise ModelError(errors.PoolOverlapError)
            master = space.masters[network] = MMaster(network, auto=child is not None)
        elif child is None or child in master.children:
            raise ModelError(errors.PoolOverlapError)
        if child is None:
            return "ok", (f"{space_name}/{network}", str(network))
        master.children.add(child)
        return "ok", (f"{space_name}/{network}/{child}", str(network))

    def _predefined(self, name: str, space: MSpace, version: int) -> Outcome:
        n = len(space.pools)
        for position in range(n):
            candidate = space.pools[(space.start + position) % n]
            if candidate.version != version or any(
                candidate.overlaps(m)  # type: ignore[arg-type]
                for m in space.masters
            ):
                continue
            space.start += position + 1
            if space.start >= n:
                space.start = 0
            space.masters[candidate] = MMaster(candidate, auto=False)
            return "ok", (f"{name}/{candidate}", str(candidate))
        raise ModelError(errors.NoMoreSubnetsError)

    def _lookup(self, pool_id: str) -> tuple[str, str, str | None]:
        parts = pool_id.split("/")
        if len(parts) not in (3, 5):
            raise ModelError(errors.InvalidPoolError)
        prefixes = ["/".join(parts[1:3])] + (["/".join(parts[3:5])] if len(parts) == 5 else [])
        for prefix in prefixes:
            _parse_prefix(prefix, errors.InvalidPoolError)
        return parts[0], prefixes[0], prefixes[1] if len(prefixes) == 2 else None

    def _master(self, space_name: str, master_text: str) -> MMaster:
        space = self.spaces.get(space_name)
        if space is None or _has_host_bits(master_text):
            raise ModelError(errors.BadPoolError)
        master = space.masters.get(ip_network(master_text))
        if master is None:
            raise ModelError(errors.BadPoolError)
        return master

    @staticmethod
    def _child(master: MMaster, child_text: str | None) -> Network | None:
        if child_text is None:
            return None
        if _has_host_bits(child_text) or ip_network(child_text) not in master.children:
            raise ModelError(errors.BadPoolError)
        return ip_network(child_text)

    @staticmethod
    def _address(address: object) -> IPv4Address | IPv6Address:
        if isinstance(address, (IPv4Address, IPv6Address)):
            return address
        try:
            value = ip_address(address)  # type: ignore[arg-type]
        except ValueError:
            raise ModelError(errors.InvalidParameterError) from None
        if isinstance(value, IPv6Address) and (value.ipv4_mapped or value.scope_id):
            raise ModelError(errors.InvalidParameterError)
        return value

    @staticmethod
    def _ordinal(master: MMaster, value: IPv4Address | IPv6Address) -> int:
        if value not in master.network:
            raise ModelError(errors.IPOutOfRangeError)
        return int(value) - int(master.network.network_address)

    def release_pool(self, pool_id: str) -> Outcome:
        space_name, master_text, child_text = self._lookup(pool_id)
        master = self._master(space_name, master_text)
        child = self._child(master, child_text)
        if child is None:
            master.auto = True
        else:
            master.children.discard(child)
        if master.auto and not master.children:
            del self.spaces[space_name].masters[master.network]
        return "ok", None

    def request_address(self, pool_id: str, address: object, serial: bool) -> Outcome:
        space_name, master_text, child_text = self._lookup(pool_id)
        value = None if address is None else self._address(address)
        master = self._master(space_name, master_text)
        ordinal = None if value is None else self._ordinal(master, value)
        child = self._child(master, child_text)
        if ordinal is not None:
            if ordinal in master.taken:
                raise ModelError(errors.IPAlreadyAllocatedError)
        else:
            base = int(master.network.network_address)
            area = child or master.network
            low = int(area.network_address) - base
            high = low + area.num_addresses - 1
            free = [o for o in range(low, high + 1) if o not in master.taken]
            if not free:
                raise ModelError(errors.NoAvailableIPsError)
            after = [o for o in free if o >= master.cursor]
            ordinal = after[0] if serial and master.cursor > low and after else free[0]
            master.cursor = ordinal + 1
        master.taken.add(ordinal)
        address_value = master.network.network_address + ordinal
        return "ok", f"{address_value}/{master.network.prefixlen}"

    def release_address(self, pool_id: str, address: object) -> Outcome:
        space_name, master_text, child_text = self._lookup(pool_id)
        value = self._address(address)
        master = self._master(space_name, master_text)
        self._child(master, child_text)
        ordinal = self._ordinal(master, value)
        if ordinal not in master.reserved:
            master.taken.discard(ordinal)
        return "ok", None


prefixes = st.sampled_from(POOLS + HOST_BITS + GARBAGE)
# An int picks one of the pool IDs handed out so far, so most calls hit live pools.
live_ids = st.integers(0, 30)
pool_ids = (
    live_ids
    | live_ids
    | live_ids
    | st.builds(
        lambda space, master, child: f"{space}/{master}" + (f"/{child}" if child else ""),
        st.sampled_from([L, G, "Foo"]),
        st.sampled_from(POOLS + HOST_BITS),
        st.none() | st.sampled_from(POOLS + HOST_BITS),
    )
    | st.sampled_from(["", "bogus", "LocalDefault/10.0.0.0", "LocalDefault/bogus/8"])
)
# Mostly addresses of the setup pools, so that allocated ones are hit again.
near = st.sampled_from([f"10.0.0.{i}" for i in range(24)] + [f"2001:db8::{i}" for i in range(4)])
addresses = (
    near
    | near.map(ip_address)
    | st.sampled_from(ADDRESSES)
    | st.sampled_from(ADDRESSES[:-4]).map(ip_address)
)

calls = st.one_of(
    st.tuples(st.just("request_address"), live_ids, st.none(), st.booleans()),
    st.tuples(st.just("release_address"), live_ids, near),
    st.tuples(
        st.just("request_pool"),
        st.sampled_from([L, G, L, G, L, G, "", "Foo"]),
        st.just("") | prefixes,
        st.just("") | st.just("") | prefixes,
        st.booleans(),
    ),
    st.tuples(st.just("release_pool"), pool_ids),
    st.tuples(
        st.just("request_address"), pool_ids, st.none() | st.none() | addresses, st.booleans()
    ),
    st.tuples(st.just("release_address"), pool_ids, addresses),
)


def call_driver(ipam: DefaultIpam, call: tuple[Any, ...]) -> Outcome:
    name, *arguments = call
    try:
        if name == "request_pool":
            space, pool, sub_pool, v6 = arguments
            result = ipam.request_pool(space, pool, sub_pool, v6=v6)
            return "ok", (result.pool_id, str(result.pool))
        if name == "request_address":
            pool_id, address, serial = arguments
            options = {ALLOC_SERIAL_PREFIX: "true"} if serial else None
            return "ok", str(ipam.request_address(pool_id, address, options).address)
        getattr(ipam, name)(*arguments)
        return "ok", None
    except errors.IpamError as exc:
        return "error", type(exc)


def call_model(model: Model, call: tuple[Any, ...]) -> Outcome:
    name, *arguments = call
    try:
        if name == "request_pool":
            return model.request_pool(*arguments)
        return getattr(model, name)(*arguments)  # type: ignore[no-any-return]
    except ModelError as exc:
        return "error", exc.cls


def new_driver() -> DefaultIpam:
    return DefaultIpam(local_pools=LOCAL_LIST, global_pools=GLOBAL_LIST)


# Live pools from the start, so that short sequences reach addresses too.
SETUP = [
    ("request_pool", L, "10.0.0.16/28", "10.0.0.20/30", False),
    ("request_pool", G, "2001:db8::/126", "", False),
    ("request_pool", L, "10.0.0.0/30", "", False),
]


def resolve(call: tuple[Any, ...], handed_out: list[str]) -> tuple[Any, ...]:
    """Replace an int pool ID by one of the IDs handed out so far."""
    if call[0] != "request_pool" and isinstance(call[1], int):
        pool_id = handed_out[call[1] % len(handed_out)] if handed_out else f"{L}/10.0.0.0/26"
        return (call[0], pool_id, *call[2:])
    return call


def run(sequence: list[tuple[Any, ...]], model: Model | None) -> None:
    ipam = new_driver()
    handed_out: list[str] = []
    for call in [*SETUP, *sequence]:
        call = resolve(call, handed_out)  # noqa: PLW2901
        before = ipam.snapshot()
        outcome = call_driver(ipam, call)
        if model is not None:
            assert outcome == call_model(model, call), call
        if outcome[0] == "error":
            assert ipam.snapshot() == before, call
        elif call[0] == "request_pool":
            handed_out.append(outcome[1][0])


@settings(max_examples=300, deadline=None)
@given(st.lists(calls, max_size=60))
def test_driver_agrees_with_the_model(sequence: list[tuple[Any, ...]]) -> None:
    run(sequence, Model())


@settings(max_examples=300, deadline=None)
@given(st.lists(calls, max_size=60))
def test_a_call_that_raises_changes_nothing(sequence: list[tuple[Any, ...]]) -> None:
    run(sequence, None)


@settings(max_examples=300, deadline=None)
@given(st.lists(calls, max_size=60))
def test_driver_agrees_with_the_model_across_chunks(sequence: list[tuple[Any, ...]]) -> None:
    # Chunks of two runs: every pool of the model spans several, and the fast
    # path meets the chunk boundaries it must leave to the full code.
    with patch.object(RunSet, "chunk_limit", 4):
        run(sequence, Model())


@settings(max_examples=2000, deadline=None)
@given(
    st.text(alphabet="0123456789abcdefABCDEF.:%/ x", max_size=45),
    st.sampled_from(["0.0.0.0/0", "::/0"]),
)
def test_fast_path_reads_addresses_as_the_full_checks_do(text: str, pool: str) -> None:
    # request_address parses plain strings with inet_pton on its fast path; it
    # must accept and reject exactly what parse_address does.
    ipam = DefaultIpam()
    pool_id = ipam.request_pool(L, pool).pool_id
    try:
        expected: object = parse_address(text)
    except errors.InvalidParameterError:
        expected = errors.InvalidParameterError
    try:
        got: object = ipam.request_address(pool_id, text).address.ip  # type: ignore[union-attr]
    except (errors.InvalidParameterError, errors.IPAlreadyAllocatedError) as exc:
        got = type(exc)
    if got is errors.IPOutOfRangeError or got is errors.IPAlreadyAllocatedError:
        return  # the other family, or the reserved address: parsed alike either way
    assert got == expected
