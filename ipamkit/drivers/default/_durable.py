"""The durable ``default`` driver: the in-memory allocator, written through to SQLite.

The hot path stays in memory: every call runs the in-memory allocator
(:class:`~ipamkit.drivers.default.DefaultIpam`, whose rules exist once), and
then, still inside the driver's lock and before the call returns, this layer
records what the allocator did in one SQLite transaction (``_store``). A
transaction that fails undoes the in-memory change, so memory and file stay as
they were and the call raises :class:`~ipamkit.drivers.default.StateWriteError`.
At start the layer rebuilds the allocator's state from the file: the same
masters, subpools, flags, addresses, serial cursors and rotation indexes, so a
new driver on the file behaves exactly as the old one would have.

Calls that change nothing (a failing request, a release of a free address,
``get_default_address_spaces``) write nothing.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Iterable, Mapping

from ipamkit._arguments import parse_pool, parse_prefix
from ipamkit._contract import Address, AddressResult, Feature, PoolResult
from ipamkit._interfaces import address_value, network_maker
from ipamkit.drivers.default._allocator import (
    DefaultIpam,
    _Route,
)
from ipamkit.drivers.default._store import SavedMaster, StateFileError, Store
from ipamkit.drivers.default._structures import Master
from ipamkit.errors import IpamError
from ipamkit.pools import (
    cidr_text,
    format_pool_id,
    parse_pool_id,
    prefix_text,
)
from ipamkit.predefined import PoolSpec

__all__ = ["DurableDefaultIpam"]


class DurableDefaultIpam(DefaultIpam):
    """The ``default`` driver with its whole state in the SQLite file ``state``.

    ``durability`` is ``"full"`` (every change is on disk before the call
    returns) or ``"relaxed"`` (survives a crash of the process; a power loss may
    lose the last changes). The file is owned until :meth:`close`.
    """

    def __init__(
        self,
        state: str | os.PathLike[str],
        *,
        durability: str = "full",
        local_pools: Iterable[PoolSpec] | None = None,
        global_pools: Iterable[PoolSpec] | None = None,
        local_ipv6_pools: Iterable[PoolSpec] = (),
        global_ipv6_pools: Iterable[PoolSpec] = (),
    ) -> None:
        super().__init__(
            local_pools=local_pools,
            global_pools=global_pools,
            local_ipv6_pools=local_ipv6_pools,
            global_ipv6_pools=global_ipv6_pools,
        )
        self.features = frozenset({*self.features, Feature.PERSISTENT})
        # Reentrant: each call holds it around the allocator's own acquisition
        # and the write that follows.
        self._lock = threading.RLock()  # type: ignore[assignment]
        # The file row of each live master.
        self._rows: dict[Master, int] = {}
        self._store = Store(os.fspath(state), durability)
        try:
            self._restore()
        except BaseException:
            self._store.close()
            raise

    def close(self) -> None:
        """Close the state file and give up its ownership; later changes fail."""
        with self._lock:
            self._store.close()

    # -- start-up -----------------------------------------------------------------

    def _restore(self) -> None:
        store = self._store
        saved, masters = store.load()
        with store.transaction():  # writes only what a fresh file or a new list lacks
            for name, space in self._spaces.items():
                start, predefined = saved.get(name, (0, ""))
                if predefined == space.predefined.text and 0 <= start < len(space.predefined):
                    space.start = start
                else:  # another list: its rotation begins again (the pools stay)
                    store.set_space(name, 0, space.predefined.text)
        for master in masters:
            try:
                self._restore_master(master)
            except (IpamError, ValueError) as exc:
                raise StateFileError(
                    f"state file {store.path} is inconsistent: pool {master.cidr} of "
                    f"address space {master.space}: {exc}"
                ) from None

    def _restore_master(self, saved: SavedMaster) -> None:
        space = self._space(saved.space)
        version, first, prefixlen, _ = parse_prefix(saved.cidr)
        if cidr_text(version, first, prefixlen) != saved.cidr:
            raise ValueError("not a canonical prefix")
        master = Master(version, first, prefixlen, saved.cidr, saved.auto_release)
        self._add_master(space, master, format_pool_id(space.name, master.cidr))
        network = network_maker(version)(first, prefixlen)
        for prefix in saved.subpools:
            child = parse_pool(prefix, "subpool")
            if child is None or prefix_text(child) != prefix or not child.subnet_of(network):  # type: ignore[arg-type]
                raise ValueError(f"subpool {prefix} is not a prefix inside it")
            self._add_child(space, master, child)
        if saved.ordinals or saved.cursor:
            if saved.ordinals and not 0 <= saved.ordinals[0] <= saved.ordinals[-1] < master.size:
                raise ValueError("an address lies outside it")
            addresses = master.open()[0]
            bounds = addresses.bounds  # the reserved and unusable ordinals
            taken = zip(bounds[::2], bounds[1::2], strict=True)
            held = ((ordinal, ordinal + 1) for ordinal in saved.ordinals)
            addresses.fill(heapq.merge(taken, held))
            addresses.cursor = saved.cursor
        self._rows[master] = saved.row

    # -- changes --------------------------------------------------------------------

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        with self._lock:
            starts = {name: space.start for name, space in self._spaces.items()}
            result = super().request_pool(address_space, pool, sub_pool, options, v6)
            master, _, _, child, space = self._routes[result.pool_id]
            row = self._rows.get(master)
            store = self._store
            try:
                with store.transaction():
                    if row is None:
                        row = store.add_master(space.name, master.cidr, master.auto_release)
                    if child is not None:
                        store.add_subpool(row, prefix_text(child))
                    if space.start != starts[space.name]:
                        store.set_start(space.name, space.start)
            except BaseException:
                DefaultIpam.release_pool(self, result.pool_id)
                space.start = starts[space.name]
                raise
            self._rows[master] = row
            return result

    def release_pool(self, pool_id: str) -> None:
        with self._lock:
            route = self._route(pool_id)
            auto_release = route is not None and route[0].auto_release
            super().release_pool(pool_id)
            assert route is not None  # the release succeeded: the ID names a pool
            master, _, _, child, space = route
            master_id = format_pool_id(space.name, master.cidr)
            gone = master_id not in self._routes
            row = self._rows[master]
            store = self._store
            try:
                with store.transaction():
                    if gone:
                        store.drop_master(row)
                    elif child is not None:
                        store.remove_subpool(row, prefix_text(child))
                    else:  # a master with live subpools: it goes with the last of them
                        store.set_auto_release(row)
            except BaseException:
                master.auto_release = auto_release
                if gone:
                    self._add_master(space, master, master_id)
                if child is not None:
                    self._add_child(space, master, child)
                raise
            if gone:
                del self._rows[master]

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        with self._lock:
            route = self._route(pool_id)
            opened = route is not None and route[0].addressing
            cursor = opened[0].cursor if opened else 0
            result = super().request_address(pool_id, address, options)
            assert route is not None  # the request succeeded: the ID names a pool
            master = route[0]
            addresses = master.addressing[0]  # type: ignore[index]  # opened by the request
            assert result.address is not None  # this allocator always hands one out
            ordinal = address_value(result.address) - master.first
            try:
                with self._store.transaction():
                    moved = addresses.cursor if addresses.cursor != cursor else None
                    self._store.add_address(self._rows[master], ordinal, moved)
            except BaseException:
                addresses.release(ordinal)
                addresses.cursor = cursor
                raise
            return result

    def _released(self, master: Master, ordinal: int) -> None:
        # The allocator calls this under the lock, only for a release that
        # freed something: a no-op release costs what it does in memory.
        try:
            with self._store.transaction():
                self._store.remove_address(self._rows[master], ordinal)
        except BaseException:
            master.addressing[0].add(ordinal)  # type: ignore[index]  # it was just freed
            raise

    def _route(self, pool_id: object) -> _Route | None:
        """The route ``pool_id`` names, however spelt; None where the call will fail."""
        if type(pool_id) is str:
            route = self._routes.get(pool_id)
            if route is not None:
                return route
        elif not isinstance(pool_id, str):
            return None
        try:
            key = parse_pool_id(pool_id)
        except IpamError:
            return None
        return None if key.pool_id is None else self._routes.get(key.pool_id)
