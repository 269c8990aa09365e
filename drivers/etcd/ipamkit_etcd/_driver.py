"""The ``etcd`` driver: Docker's contract over one address space kept in etcd.

Every rule of the contract is the core's (argument checks, pool IDs, subpool
checks, reserved addresses, predefined lists); what this module adds is where
the state lives and how hosts agree on it:

- etcd decides every grant: an address is taken by creating its key only if
  absent, a pool by a compare-and-swap on its address space's record. Nothing
  is granted from what this process remembers; its caches only choose what to
  ask for.
- Each write carries this host and a fresh nonce, and is guarded so that
  sending it twice is harmless; a write whose answer was lost is re-sent, and
  its outcome read back: the nonce tells whether the first one landed. A write
  whose outcome is still unknown when the retry budget is spent is undone once
  etcd answers again, so it never leaks. Such a write may still be on its way
  (queued in a member, in a connection being torn down) and land after its
  undo: so every write that an undo covers also compares the revision of this
  host's key, which the undo changes first.
- Dynamic addresses come first from blocks of 64 addresses this host claimed
  in the pool, so hosts do not compete for the same keys; when no block is
  left, from a random free address of the pool.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

from ipamkit import (
    Address,
    AddressResult,
    Feature,
    Interface,
    Ipam,
    Network,
    PoolReading,
    PoolResult,
    check_options,
    check_pool_request,
    check_str,
    parse_address,
    parse_pool,
)
from ipamkit.errors import (
    BadPoolError,
    InvalidAddressSpaceError,
    InvalidParameterError,
    InvalidSubPoolError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
    NoMoreSubnetsError,
    PoolOverlapError,
)
from ipamkit.pools import (
    PoolKey,
    check_sub_pool,
    format_pool_id,
    parse_pool_id,
    prefix_text,
    reserved_ordinals,
    unusable_ordinals,
)
from ipamkit.predefined import PoolSpec, predefined_lists
from ipamkit_etcd import _client as etcd
from ipamkit_etcd._layout import (
    BLOCK_BITS,
    MasterRecord,
    Ref,
    SpaceRecord,
    address_value,
    gateway_value,
    read_holder,
)

__all__ = ["GLOBAL_ADDRESS_SPACE", "LOCAL_ADDRESS_SPACE", "EtcdIpam"]

LOCAL_ADDRESS_SPACE = "LocalDefault"
#: What ``LocalDefault`` is: one space for all hosts, or one per host.
LOCAL_SCOPES = ("shared", "host")
GLOBAL_ADDRESS_SPACE = "GlobalDefault"
GATEWAY_OPTION = ("RequestAddressType", "com.docker.network.gateway")

_FEATURES = frozenset(
    {
        Feature.EXPLICIT_POOLS,
        Feature.SUB_POOLS,
        Feature.CHOSEN_POOLS,
        Feature.IPV6,
        Feature.DYNAMIC_ADDRESSES,
        Feature.SPECIFIC_ADDRESSES,
        Feature.THREAD_SAFE,
        Feature.EXACT_ERRORS,
        Feature.PERSISTENT,
        Feature.SHARED,
    }
)
_BLOCK = 1 << BLOCK_BITS
# Blocks a claim tries (each a transaction) before it borrows instead.
_CLAIM_TRIES = 8
# Random draws for a free address in a range too large to list.
_RANDOM_DRAWS = 64
# Ranges up to this many addresses are listed in full when borrowing.
_LISTED_SPAN = 1 << 20


def _nonce() -> str:
    return os.urandom(8).hex()


class _Taken:
    """The masters of an address space as :class:`ipamkit.predefined.Taken` sees them."""

    def __init__(self, spans: Iterable[tuple[int, int]], size: int) -> None:
        self._spans = sorted(spans)
        self._size = size

    def free_run(self, start: int) -> tuple[int, int]:
        for low, high in self._spans:
            if high <= start:
                continue
            if low <= start:
                start = high
                continue
            return start, low
        return start, self._size


@dataclass
class _Master:
    """What this process knows of one master pool: its keys and its own blocks."""

    version: int
    first: int
    prefixlen: int
    cidr: str
    scope: str
    size: int
    width: int
    reserved: frozenset[int]
    #: The ordinals no call accepts (IPv4-mapped IPv6), which are never handed out.
    unusable: range
    make: type[IPv4Interface] | type[IPv6Interface]
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The blocks this host claimed, with the ordinals of each known to be taken
    #: (or being asked for by a thread of this process); None until read.
    blocks: dict[int, set[int]] | None = None
    #: The block tried first: the last one that had room, or last freed in.
    cursor: int = -1
    #: The value this process wrote for each plain address it took: releasing one
    #: is then a delete guarded by that value, without a read first.
    written: dict[int, bytes] = field(default_factory=dict)

    def interface(self, ordinal: int) -> Interface:
        return self.make((self.first + ordinal, self.prefixlen))


@dataclass(frozen=True)
class _Route:
    """A live pool ID: its master, the ordinals dynamic addresses come from, its key."""

    master: _Master
    low: int
    high: int
    fence: str
    #: The create revision of ``fence``: which life of the pool this is.
    revision: int
    child: str | None


class EtcdIpam(Ipam):
    """Pools and addresses in etcd, shared by every instance on the same key prefix.

    ``GlobalDefault`` is one space for every host. ``LocalDefault`` is one too
    unless ``local_scope`` is ``"host"``, which gives each ``host`` its own:
    Docker asks for ``LocalDefault`` for every network outside a swarm (macvlan
    and ipvlan included), so a per-host local space would let two daemons hand
    out one address twice. Pools follow the refcounted reading.
    """

    pool_reading = PoolReading.REFCOUNTED

    def __init__(
        self,
        client: etcd.EtcdClient,
        *,
        prefix: str = "/ipamkit/",
        host: str,
        local_scope: str = "shared",
        local_pools: Iterable[PoolSpec] | None = None,
        global_pools: Iterable[PoolSpec] | None = None,
        local_ipv6_pools: Iterable[PoolSpec] = (),
        global_ipv6_pools: Iterable[PoolSpec] = (),
    ) -> None:
        local, global_ = predefined_lists(
            local_pools, global_pools, local_ipv6_pools, global_ipv6_pools
        )
        self._client = client
        self._prefix = prefix
        #: This host's identity, written into everything it holds.
        self.host = host
        if local_scope not in LOCAL_SCOPES:
            raise InvalidParameterError(
                f"local_scope {local_scope!r} must be one of {', '.join(LOCAL_SCOPES)}"
            )
        # Named apart from every ``local/<host>``, so no range read of one meets the other.
        local_key = f"local/{host}" if local_scope == "host" else "shared-local"
        self._scopes = {LOCAL_ADDRESS_SPACE: local_key, GLOBAL_ADDRESS_SPACE: "global"}
        self._predefined = {LOCAL_ADDRESS_SPACE: local, GLOBAL_ADDRESS_SPACE: global_}
        chosen_v6 = 6 in self._predefined[LOCAL_ADDRESS_SPACE].versions
        self.features = (_FEATURES | {Feature.CHOSEN_IPV6_POOLS}) if chosen_v6 else _FEATURES
        self._lock = threading.Lock()
        self._host_key = f"{prefix}host/{host}"
        #: The revision of ``_host_key`` as last seen (0: it does not exist).
        self._epoch = 0
        self._routes: dict[str, _Route] = {}
        self._masters: dict[tuple[str, str], _Master] = {}
        #: For each write whose outcome was unknown when its call gave up, what
        #: undoes or finishes it once etcd answers again.
        self._doubts: list[Callable[[], None]] = []

    def get_default_address_spaces(self) -> tuple[str, str]:
        return LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE

    def is_builtin(self) -> bool:
        return False

    def close(self) -> None:
        """Undo what can be undone of unknown outcomes, then close the connections."""
        # etcd gone: the doubts stay unresolved, as they would for a crashed host.
        with contextlib.suppress(etcd.EtcdUnavailableError):
            self._settle()
        self._client.close()

    # -- keys ----------------------------------------------------------------------

    def _space_key(self, scope: str) -> str:
        return f"{self._prefix}space/{scope}"

    def _fence_key(self, scope: str, cidr: str, child: str | None = None) -> str:
        tail = cidr if child is None else f"{cidr}/{child}"
        return f"{self._prefix}pool/{scope}/{tail}"

    def _addr_root(self, master: _Master) -> str:
        return f"{self._prefix}addr/{master.scope}/{master.cidr}/"

    def _addr_key(self, master: _Master, ordinal: int) -> str:
        return f"{self._addr_root(master)}{ordinal:0{master.width}x}"

    def _block_root(self, master: _Master) -> str:
        return f"{self._prefix}block/{master.scope}/{master.cidr}/"

    def _block_key(self, master: _Master, block: int) -> str:
        width = max(1, master.width - BLOCK_BITS // 4)
        return f"{self._block_root(master)}{block:0{width}x}"

    # -- pools ---------------------------------------------------------------------

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        check_pool_request(address_space, pool, sub_pool, options, v6)  # options: ignored
        scope = self._scope(address_space)
        network = parse_pool(pool)
        child = parse_pool(sub_pool, what="subpool")
        if network is None:
            if child is not None:
                raise InvalidSubPoolError(f"subpool {sub_pool!r} requested without a pool")
        elif child is not None:
            check_sub_pool(network, child)
        self._settle()
        nonce = _nonce()

        def add(record: SpaceRecord) -> tuple[str, list[dict[str, Any]]]:
            chosen = (
                network
                if network is not None
                else self._choose(address_space, record, 6 if v6 else 4)
            )
            pool_id, fences = self._add(address_space, scope, record, chosen, child, nonce)
            return pool_id, [etcd.put(key, b"") for key in fences]

        def undo() -> None:  # the request may have landed after this call gave up
            self._change_space(scope, _nonce(), lambda record: self._drop_ref(scope, record, nonce))

        pool_id = self._change_space(scope, nonce, add, undo)
        assert pool_id is not None
        return PoolResult(pool_id, parse_pool_id(pool_id).master, {})

    def _change_space(
        self,
        scope: str,
        nonce: str,
        change: Callable[[SpaceRecord], tuple[str, list[dict[str, Any]]] | None],
        settle: Callable[[], None] | None = None,
    ) -> str | None:
        """Apply ``change`` to the space's record, compare-and-swap, until it lands.

        ``change`` edits the record and returns the pool ID to remember with
        ``nonce`` and the other writes of the transaction, or None when there is
        nothing to do. A retry that finds ``nonce`` recorded knows its change
        landed. If etcd stops answering, ``settle`` is kept to run once it does.
        """
        space_key = self._space_key(scope)
        while True:
            record, revision = self._read_space(scope)
            landed = record.done(nonce)
            if landed is not None:
                return landed
            changed = change(record)
            if changed is None:
                return None
            pool_id, operations = changed
            record.record(nonce, pool_id)
            operations.append(etcd.put(space_key, record.encode()))
            try:
                outcome = self._client.txn(
                    [etcd.modified_at(space_key, revision), self._current(self._epoch)], operations
                )
            except etcd.EtcdUnavailableError:
                if settle is not None:
                    self._doubt(settle)
                raise
            if outcome.succeeded:
                return pool_id

    def _scope(self, address_space: str) -> str:
        scope = self._scopes.get(address_space)
        if scope is None:
            if not address_space:
                raise InvalidAddressSpaceError("address space must not be empty")
            raise InvalidAddressSpaceError(
                f"cannot find address space {address_space!r}; this driver has "
                f"{LOCAL_ADDRESS_SPACE} and {GLOBAL_ADDRESS_SPACE}"
            )
        return scope

    def _read_space(self, scope: str) -> tuple[SpaceRecord, int]:
        """The space's record and its revision (and this host's key, as a write needs it)."""
        found, host = self._client.txn(
            [], [etcd.get(self._space_key(scope)), etcd.get(self._host_key)]
        ).ranges
        self._saw(host)
        if not found:
            return SpaceRecord(), 0
        return SpaceRecord.decode(found[0].value), found[0].mod_revision

    def _choose(self, address_space: str, record: SpaceRecord, version: int) -> Network:
        bits = 32 if version == 4 else 128
        spans = []
        for cidr in record.masters:
            network = parse_pool(cidr)
            assert network is not None
            if network.version == version:
                first = int(network.network_address)
                spans.append((first, first + network.num_addresses))
        predefined = self._predefined[address_space]
        found = predefined.choose(version, _Taken(spans, 1 << bits), record.start)
        if found is None:
            raise NoMoreSubnetsError(
                f"could not find an available, non-overlapping IPv{version} address pool "
                f"among the defaults of address space {address_space}"
            )
        first, prefixlen, record.start = found
        return (IPv4Network if version == 4 else IPv6Network)((first, prefixlen))

    def _add(  # noqa: PLR0917
        self,
        address_space: str,
        scope: str,
        record: SpaceRecord,
        network: Network,
        child: Network | None,
        nonce: str,
    ) -> tuple[str, list[str]]:
        """Add one reference to the pool in ``record``; return its ID and the keys to create."""
        cidr = prefix_text(network)
        ref = [self.host, nonce]
        fences = []
        master = record.masters.get(cidr)
        if master is None:
            for other in record.masters:
                taken = parse_pool(other)
                if (
                    taken is not None
                    and taken.version == network.version
                    and taken.overlaps(network)
                ):
                    raise PoolOverlapError(
                        f"pool {cidr} overlaps pool {other} in address space {address_space}"
                    )
            master = record.masters[cidr] = MasterRecord()
            fences.append(self._fence_key(scope, cidr))
        if child is None:
            master.refs.append(ref)
            return format_pool_id(address_space, cidr), fences
        child_cidr = prefix_text(child)
        refs = master.children.setdefault(child_cidr, [])
        if not refs:
            fences.append(self._fence_key(scope, cidr, child_cidr))
        refs.append(ref)
        return format_pool_id(address_space, cidr, child_cidr), fences

    def release_pool(self, pool_id: str) -> None:
        check_str(pool_id, "pool_id")
        key = parse_pool_id(pool_id)
        scope, cidr, child_cidr = self._names(key)
        self._settle()
        nonce = _nonce()

        def release(record: SpaceRecord) -> tuple[str, list[dict[str, Any]]]:
            master = record.masters.get(cidr)
            refs = None
            if master is not None:
                refs = master.refs if child_cidr is None else master.children.get(child_cidr)
            if not refs:
                raise BadPoolError(f"pool id {pool_id!r} names no live pool")
            mine = [ref for ref in refs if ref[0] == self.host]
            return pool_id, self._remove_ref(scope, record, cidr, child_cidr, (mine or refs)[0])

        def finish() -> None:  # Docker takes a failed release as done: so must etcd
            with contextlib.suppress(BadPoolError):
                self._change_space(scope, nonce, release)

        self._change_space(scope, nonce, release, finish)
        with self._lock:
            self._routes.pop(pool_id, None)

    def _drop_ref(
        self, scope: str, record: SpaceRecord, nonce: str
    ) -> tuple[str, list[dict[str, Any]]] | None:
        """Remove the reference this host took with ``nonce``, wherever it is."""
        for cidr, master in record.masters.items():
            for child_cidr, refs in [(None, master.refs), *master.children.items()]:
                for ref in refs:
                    if ref == [self.host, nonce]:
                        operations = self._remove_ref(scope, record, cidr, child_cidr, ref)
                        return format_pool_id("undo", cidr), operations
        return None

    def _remove_ref(
        self, scope: str, record: SpaceRecord, cidr: str, child_cidr: str | None, ref: Ref
    ) -> list[dict[str, Any]]:
        """Remove ``ref`` from the record; return the deletes of whatever dies with it."""
        master = record.masters[cidr]
        refs = master.refs if child_cidr is None else master.children[child_cidr]
        refs.remove(ref)
        operations = []
        if child_cidr is not None and not refs:
            del master.children[child_cidr]
            operations.append(etcd.delete(self._fence_key(scope, cidr, child_cidr)))
        if not master.refs and not master.children:
            del record.masters[cidr]
            operations += self._drop_master(scope, cidr)
        return operations

    def _drop_master(self, scope: str, cidr: str) -> list[dict[str, Any]]:
        """The deletes of a master's keys: its pool IDs, addresses and blocks."""
        fence = self._fence_key(scope, cidr)
        operations = [etcd.delete(fence), etcd.delete(fence + "/", etcd.prefix_end(fence + "/"))]
        for kind in ("addr", "block"):
            root = f"{self._prefix}{kind}/{scope}/{cidr}/"
            operations.append(etcd.delete(root, etcd.prefix_end(root)))
        with self._lock:
            self._masters.pop((scope, cidr), None)
        return operations

    def _names(self, key: PoolKey) -> tuple[str, str, str | None]:
        """The scope, master and subpool texts a parsed pool ID names; BadPoolError (D7)."""
        space, master, child, master_id, pool_id = key
        scope = self._scopes.get(space)
        if scope is None:
            raise BadPoolError(f"pool id names address space {space!r}, which does not exist")
        if master_id is None or pool_id is None:
            raise BadPoolError("pool id names a pool with host bits set")
        return scope, prefix_text(master), None if child is None else prefix_text(child)

    # -- routes --------------------------------------------------------------------

    def _route(self, pool_id: object, stale: _Route | None = None) -> _Route:
        """The live pool ``pool_id`` names, from the cache unless ``stale`` is it."""
        text = check_str(pool_id, "pool_id")
        with self._lock:
            route = self._routes.get(text)
        if route is not None and route is not stale:
            return route
        key = parse_pool_id(text)
        scope, cidr, child_cidr = self._names(key)
        fence = self._fence_key(scope, cidr, child_cidr)
        found, _, _ = self._client.range(fence)
        if not found:
            with self._lock:
                self._routes.pop(text, None)
            raise BadPoolError(f"pool id {text!r} names no live pool")
        master = self._master(scope, key.master)
        low, high = 0, master.size - 1
        if key.child is not None:
            low = int(key.child.network_address) - master.first
            high = low + key.child.num_addresses - 1
        route = _Route(master, low, high, fence, found[0].create_revision, child_cidr)
        with self._lock:
            self._routes[text] = route
        return route

    def _master(self, scope: str, network: Network) -> _Master:
        cidr = prefix_text(network)
        with self._lock:
            master = self._masters.get((scope, cidr))
            if master is None:
                bits = network.max_prefixlen - network.prefixlen
                size = network.num_addresses
                master = self._masters[(scope, cidr)] = _Master(
                    network.version,
                    int(network.network_address),
                    network.prefixlen,
                    cidr,
                    scope,
                    size,
                    max(1, (bits + 3) // 4),
                    frozenset(reserved_ordinals(network.version, size)),
                    unusable_ordinals(network.version, int(network.network_address), size),
                    IPv4Interface if network.version == 4 else IPv6Interface,
                )
            return master

    # -- addresses -----------------------------------------------------------------

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        check_str(pool_id, "pool_id")
        gateway = check_options(options).get(GATEWAY_OPTION[0]) == GATEWAY_OPTION[1]
        value = None if address is None else parse_address(address)
        self._settle()
        route = self._route(pool_id)
        if value is None and gateway:
            # Each host's Docker asks for a gateway: without --gateway, the
            # pool's gateway, if another host that joined the pool holds one.
            shared = self._pool_gateway(route)
            if shared is not None and self._join_gateway(route, shared):
                return AddressResult(route.master.interface(shared), {})
        if value is None:
            return AddressResult(self._take_dynamic(pool_id, route, gateway), {})
        ordinal = _ordinal(route.master, value)
        self._take_specific(pool_id, route, ordinal, gateway)
        return AddressResult(route.master.interface(ordinal), {})

    def _take_dynamic(self, pool_id: str, route: _Route, gateway: bool) -> Interface:
        while True:
            master = route.master
            ordinal = self._from_own_blocks(route)
            if ordinal is None and self._claim_block(route):
                continue
            if ordinal is None:
                ordinal = self._borrow(pool_id, route)
            landed, route = self._create(pool_id, route, ordinal, gateway)
            if landed:
                return master.interface(ordinal)

    def _take_specific(self, pool_id: str, route: _Route, ordinal: int, gateway: bool) -> None:
        master = route.master
        if ordinal in master.reserved:
            raise IPAlreadyAllocatedError(
                f"address {master.interface(ordinal).ip} is reserved in pool {master.cidr}"
            )
        self._mark(master, ordinal)
        landed, route = self._create(pool_id, route, ordinal, gateway)
        if not landed and not (gateway and self._join_gateway(route, ordinal)):
            raise IPAlreadyAllocatedError(
                f"address {master.interface(ordinal).ip} is already allocated in pool {master.cidr}"
            )

    def _create(
        self, pool_id: str, route: _Route, ordinal: int, gateway: bool
    ) -> tuple[bool, _Route]:
        """Create the address's key if absent; tell whether it is now this call's."""
        master = route.master
        key = self._addr_key(master, ordinal)
        text = str(master.interface(ordinal).ip)
        nonce = _nonce()
        value = (
            gateway_value(text, [[self.host, nonce]])
            if gateway
            else address_value(text, self.host, nonce)
        )
        writes = [etcd.put(key, value)]
        if gateway:  # the pool's gateway now, for hosts that ask for one without an address
            pointer = json.dumps({"gateway": ordinal}).encode()
            writes.append(etcd.put(self._fence_key(master.scope, master.cidr), pointer))
        while True:
            try:
                # No failure branch: every operation sent costs etcd's JSON
                # gateway CPU on every call, and on the hot path (this host's
                # own blocks) the compare almost never fails; a read tells why.
                epoch = self._epoch
                compare = [
                    etcd.created_at(route.fence, route.revision),
                    self._current(epoch),
                    etcd.absent(key),
                ]
                if self._client.txn(compare, writes).succeeded:
                    return self._wrote(master, ordinal, value, gateway), route
                fence, held, host = self._client.txn(
                    [], [etcd.get(route.fence), etcd.get(key), etcd.get(self._host_key)]
                ).ranges
            except etcd.EtcdUnavailableError:
                # It may land yet, acknowledged to no one: undo it when etcd is back.
                self._doubt(self._guarded(etcd.holds(key, value), etcd.delete(key)))
                raise
            if held and held[0].value == value:  # the first sending landed; its answer was lost
                return self._wrote(master, ordinal, value, gateway), route
            if self._saw(host) != epoch:
                continue  # this host's key changed (an undo): send it again
            if fence and fence[0].create_revision == route.revision:
                return False, route
            # The pool was released (and perhaps requested again) meanwhile:
            # what this host knew of its blocks is void.
            master.blocks = None
            route = self._route(pool_id, stale=route)  # BadPoolError if it is gone

    def _wrote(self, master: _Master, ordinal: int, value: bytes, gateway: bool) -> bool:
        """Remember the value of an address this process now holds; return True."""
        if not gateway:  # other hosts change a gateway's value as they join it
            with master.lock:
                master.written[ordinal] = value
        return True

    def _pool_gateway(self, route: _Route) -> int | None:
        """The ordinal of the pool's latest gateway, as its master's key records it."""
        master = route.master
        found, _, _ = self._client.range(self._fence_key(master.scope, master.cidr))
        if not found or not found[0].value:
            return None
        ordinal = json.loads(found[0].value).get("gateway")
        return ordinal if isinstance(ordinal, int) else None

    def _join_gateway(self, route: _Route, ordinal: int) -> bool:
        """Add this host to the holders of a gateway another host holds, if it may."""
        master = route.master
        key = self._addr_key(master, ordinal)
        nonce = _nonce()
        while True:
            found, _, _ = self._client.range(key)
            if not found:
                return False  # released meanwhile: the caller's create was refused earlier
            holder = read_holder(found[0].value)
            holders = holder.get("g")
            if holders is None or any(ref[0] == self.host for ref in holders):
                return any(ref[1] == nonce for ref in holders or ())
            record, _ = self._read_space(master.scope)
            pool = record.masters.get(master.cidr)
            if pool is None or self.host not in pool.holders():
                return False  # only a host that joined the pool shares its gateway
            value = gateway_value(holder["a"], [*holders, [self.host, nonce]])
            try:
                outcome = self._client.txn(
                    [
                        etcd.created_at(route.fence, route.revision),
                        etcd.modified_at(key, found[0].mod_revision),
                        self._current(self._epoch),
                    ],
                    [etcd.put(key, value)],
                )
            except etcd.EtcdUnavailableError:
                self._doubt(lambda: self._leave_gateway(key, nonce))
                raise
            if outcome.succeeded:
                return True

    def _leave_gateway(self, key: str, nonce: str) -> None:
        """Take back this host's hold on a gateway, taken with ``nonce``, if it landed."""
        while True:
            found, _, _ = self._client.range(key)
            holders = read_holder(found[0].value).get("g") if found else None
            if not holders or [self.host, nonce] not in holders:
                return
            rest = [ref for ref in holders if ref != [self.host, nonce]]
            address = read_holder(found[0].value)["a"]
            change = etcd.put(key, gateway_value(address, rest)) if rest else etcd.delete(key)
            if self._client.txn([etcd.modified_at(key, found[0].mod_revision)], [change]).succeeded:
                return

    def release_address(self, pool_id: str, address: Address | str) -> None:
        check_str(pool_id, "pool_id")
        value = parse_address(address)
        self._settle()
        route = self._route(pool_id)
        master = route.master
        ordinal = _ordinal(master, value)
        if ordinal in master.reserved:
            return  # releasing a reserved address changes nothing (D5)
        key = self._addr_key(master, ordinal)
        with master.lock:
            mine = master.written.pop(ordinal, None)
        if mine is not None:  # as this process wrote it, unless someone changed it since
            alive = etcd.created_at(route.fence, route.revision)
            try:
                deleted = self._client.txn([alive, etcd.holds(key, mine)], [etcd.delete(key)])
            except etcd.EtcdUnavailableError:
                self._doubt(self._guarded(etcd.holds(key, mine), etcd.delete(key)))
                raise
            if deleted.succeeded:
                self._unmark(master, ordinal)
                return
        while True:
            outcome = self._client.txn(
                [etcd.created_at(route.fence, route.revision)], [etcd.get(key)]
            )
            if not outcome.succeeded:
                route = self._route(pool_id, stale=route)
                continue
            held = outcome.ranges[0]
            if not held:
                break  # free already: nothing to do (D5)
            holder = read_holder(held[0].value)
            holders = holder.get("g")
            freed = True
            change = etcd.delete(key)
            if holders is not None:
                rest = [ref for ref in holders if ref[0] != self.host]
                if rest and len(rest) == len(holders):
                    return  # a gateway only other hosts hold: not this host's to free
                if rest:
                    freed = False
                    change = etcd.put(key, gateway_value(holder["a"], rest))
            try:
                outcome = self._client.txn(
                    [
                        etcd.created_at(route.fence, route.revision),
                        etcd.modified_at(key, held[0].mod_revision),
                    ],
                    [change],
                )
            except etcd.EtcdUnavailableError:
                # Docker takes a failed release as done: finish it when etcd is back.
                self._doubt(self._guarded(etcd.holds(key, held[0].value), change))
                raise
            if outcome.succeeded:
                if freed:
                    self._unmark(master, ordinal)
                break

    # -- inspection --------------------------------------------------------------------

    def holdings(self, pool_id: str) -> dict[str, tuple[str, ...]]:
        """Every address held in the pool's master, with the hosts holding it, from etcd."""
        master = self._route(pool_id).master
        root = self._addr_root(master)
        held = {}
        for item in self._client.range_all(root, etcd.prefix_end(root)):
            holder = read_holder(item.value)
            hosts = [ref[0] for ref in holder["g"]] if "g" in holder else [holder["h"]]
            held[holder["a"]] = tuple(sorted(hosts))
        return held

    # -- where dynamic addresses come from -------------------------------------------

    def _blocks(self, master: _Master) -> dict[int, set[int]]:
        """This host's blocks of ``master`` (read from etcd the first time)."""
        if master.blocks is not None:
            return master.blocks
        root = self._block_root(master)
        claimed = self._client.range_all(root, etcd.prefix_end(root))
        mine = {}
        for item in claimed:
            if read_holder(item.value).get("h") == self.host:
                block = int(item.key[len(root) :], 16)
                mine[block] = self._taken_in(master, block)
        with master.lock:
            if master.blocks is None:
                master.blocks = mine
            return master.blocks

    def _taken_in(self, master: _Master, block: int) -> set[int]:
        return self._ordinals(
            master, block, self._client.range_all(*self._span(master, block), keys_only=True)
        )

    def _span(self, master: _Master, block: int) -> tuple[str, str]:
        """The range of the address keys of ``block``."""
        start = block << BLOCK_BITS
        stop = start + _BLOCK
        end = (
            self._addr_key(master, stop)
            if stop < master.size
            else etcd.prefix_end(self._addr_root(master))
        )
        return self._addr_key(master, start), end

    def _ordinals(self, master: _Master, block: int, found: list[etcd.KeyValue]) -> set[int]:
        """The ordinals of ``block`` that are taken: the keys ``found`` in it, and the reserved."""
        start = block << BLOCK_BITS
        skip = len(self._addr_root(master))
        return {int(item.key[skip:], 16) for item in found} | (
            master.reserved & set(range(start, min(start + _BLOCK, master.size)))
        )

    def _from_own_blocks(self, route: _Route) -> int | None:
        """Mark and return a free ordinal of this host's blocks in the route.

        The cursor's block first; then any block with room (a full one is
        skipped by its count), so a call costs the same however many blocks.
        """
        master = route.master
        blocks = self._blocks(master)
        with master.lock:
            for block in (master.cursor, *blocks):
                taken = blocks.get(block)
                start = block << BLOCK_BITS
                if taken is None or len(taken) >= min(_BLOCK, master.size - start):
                    continue
                for ordinal in range(max(start, route.low), min(start + _BLOCK, route.high + 1)):
                    if ordinal not in taken:
                        taken.add(ordinal)
                        master.cursor = block
                        return ordinal
        return None

    def _claim_block(self, route: _Route) -> bool:
        """Claim a free block of the route for this host; tell whether one was claimed.

        Addresses other hosts freed in this host's full blocks are not looked
        for here: when no block is left, borrowing reads the whole pool afresh.
        """
        master = route.master
        blocks = self._blocks(master)
        first, last = route.low >> BLOCK_BITS, route.high >> BLOCK_BITS
        root = self._block_root(master)
        claimed = {
            int(item.key[len(root) :], 16)
            for item in self._client.range_all(root, etcd.prefix_end(root), keys_only=True)
        }
        # The lowest free blocks first, so a pool fills from its start; hosts
        # race for a block only once per 64 addresses, and a loser takes the next.
        free = []
        unusable = range(master.unusable.start >> BLOCK_BITS, master.unusable.stop >> BLOCK_BITS)
        for block in _outside(range(first, last + 1), unusable):
            if block not in claimed:
                free.append(block)
                if len(free) == _CLAIM_TRIES:
                    break
        value = json.dumps({"h": self.host}).encode()
        for block in free:
            key = self._block_key(master, block)
            # The claim reads the block's addresses too: one request a block.
            outcome = self._client.txn(
                [etcd.created_at(route.fence, route.revision), etcd.absent(key)],
                [etcd.put(key, value), etcd.get(*self._span(master, block), keys_only=True)],
                [etcd.get(key)],
            )
            if outcome.succeeded:
                taken = self._ordinals(master, block, outcome.ranges[1])
            elif outcome.ranges[0] and outcome.ranges[0][0].value == value:
                taken = self._taken_in(master, block)  # an earlier sending of this claim landed
            else:
                continue
            with master.lock:
                blocks[block] = taken
            return True
        return False

    def _borrow(self, pool_id: str, route: _Route) -> int:
        """Mark and return a random free ordinal of the route, read fresh from etcd."""
        master = route.master
        root = self._addr_root(master)
        stop = route.high + 1
        found = self._client.range_all(
            self._addr_key(master, route.low),
            self._addr_key(master, stop) if stop < master.size else etcd.prefix_end(root),
            keys_only=True,
        )
        taken = {int(item.key[len(root) :], 16) for item in found} | master.reserved
        if stop - route.low > _LISTED_SPAN:
            # Far more addresses than keys: a few draws find a free one.
            for _ in range(_RANDOM_DRAWS):
                ordinal = random.randint(route.low, route.high)
                if ordinal not in taken and ordinal not in master.unusable:
                    return ordinal
        free = [o for o in _outside(range(route.low, stop), master.unusable) if o not in taken]
        if not free:
            raise NoAvailableIPsError(f"no available addresses on pool {pool_id}")
        return random.choice(free)

    def _mark(self, master: _Master, ordinal: int) -> None:
        if master.blocks is not None:
            with master.lock:
                taken = master.blocks.get(ordinal >> BLOCK_BITS)
                if taken is not None:
                    taken.add(ordinal)

    def _unmark(self, master: _Master, ordinal: int) -> None:
        if master.blocks is not None:
            with master.lock:
                taken = master.blocks.get(ordinal >> BLOCK_BITS)
                if taken is not None:
                    taken.discard(ordinal)
                    master.cursor = ordinal >> BLOCK_BITS

    # -- unknown outcomes -------------------------------------------------------------

    def _guarded(self, compare: dict[str, Any], operation: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            self._client.txn([compare], [operation])

        return run

    def _doubt(self, settle: Callable[[], None]) -> None:
        with self._lock:
            self._doubts.append(settle)

    def _current(self, epoch: int) -> dict[str, Any]:
        """The comparison every undoable write makes: this host's key is at ``epoch``,
        its revision as last seen."""
        return etcd.modified_at(self._host_key, epoch)

    def _saw(self, found: list[etcd.KeyValue]) -> int:
        """Remember the revision of this host's key as ``found`` in a read; return it."""
        self._epoch = found[0].mod_revision if found else 0
        return self._epoch

    def _settle(self) -> None:
        """Settle the writes of calls that gave up (undo or finish them), oldest first.

        This host's key changes first: a write that compared its old revision
        cannot land any more, so what an undo finds absent stays absent.
        Raises :class:`EtcdUnavailableError` while etcd still does not answer;
        what is left stays for the next call.
        """
        if not self._doubts:
            return
        with self._lock:
            doubts, self._doubts = self._doubts, []
        try:
            mark = json.dumps({"h": self.host, "n": _nonce()}).encode()
            self._epoch = self._client.txn([], [etcd.put(self._host_key, mark)]).revision
            while doubts:
                doubts[0]()
                doubts.pop(0)
        finally:
            with self._lock:
                self._doubts[:0] = doubts


def _ordinal(master: _Master, value: Address) -> int:
    ordinal = int(value) - master.first
    if value.version != master.version or not 0 <= ordinal < master.size:
        raise IPOutOfRangeError(f"address {value} is not in pool {master.cidr}")
    return ordinal


def _outside(ordinals: range, unusable: range) -> Iterable[int]:
    """The members of ``ordinals`` (a range of step 1) not in ``unusable``, in order."""
    # An empty ``unusable`` is range(0): the first part is empty, the second all.
    return itertools.chain(
        range(ordinals.start, min(ordinals.stop, unusable.start)),
        range(max(ordinals.start, unusable.stop), ordinals.stop),
    )
