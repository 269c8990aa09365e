"""Drivers whose state outlives an instance: a correct one, and broken ones with one bug each.

``FileIpam`` is the reference driver of :mod:`refdrivers` keeping its state in a
JSON file (option ``state``), read and written under a lock for every call:
persistent, and shared by every instance (in any process) on the same file. The
local address space belongs to the instance's ``host``; under the refcounted
reading, hosts that joined a pool share its gateway. The tests install it as
``refdrivers`` are installed and run the conformance suite against it.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import os
import threading
from collections.abc import Iterator, Mapping
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from refdrivers import SPACES, Pool, RefIpam

import ipamkit
from ipamkit import (
    GATEWAY,
    REQUEST_ADDRESS_TYPE,
    Address,
    AddressResult,
    Feature,
    Network,
    PoolReading,
    PoolResult,
    Registerer,
)
from ipamkit.errors import DriverNotConfiguredError, InvalidParameterError

#: A pool as the file keeps it.
Record = dict[str, Any]


class FileIpam(RefIpam):
    """Correct: every call loads the file, works on it as the reference driver, writes it."""

    features = frozenset(Feature)

    def __init__(self, reading: str = "exclusive", state: str = "", host: str = "a") -> None:
        super().__init__(reading)
        if not state:
            raise DriverNotConfiguredError("option state=PATH is required")
        self.path = Path(state)
        self.host = host
        self._records: dict[str, Record] = {}
        self._next = 1
        self._gateway_request = False
        # Threads of one instance share the file descriptor, whose flock does not
        # exclude them: the reference driver's lock does.
        self._thread_lock = threading.RLock()

    # -- the file -----------------------------------------------------------------

    @contextlib.contextmanager
    def _synced(self) -> Iterator[None]:
        """Hold the file's lock, load it, run the call; write it back if the call succeeded."""
        with self._thread_lock, open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load()
            yield
            self._save()

    def _load(self) -> None:
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._next = data.get("next", 1)
        self._records = data.get("pools", {})
        self._pools = {
            pool_id: self._view(pool_id, record)
            for pool_id, record in self._records.items()
            if self._visible(record)
        }

    def _visible(self, record: Record) -> bool:
        return record["space"] != SPACES[0] or record["host"] == self.host

    def _view(self, pool_id: str, record: Record) -> Pool:
        sub = ip_network(record["sub"]) if record["sub"] else None
        return Pool(
            pool_id,
            record["space"],
            ip_network(record["network"]),
            sub,
            refs=sum(record["refs"].values()),
            held={ip_address(a) for a in record["held"]},
        )

    def _save(self) -> None:
        for pool_id, pool in self._pools.items():
            self._count_refs(self._records[pool_id]["refs"], pool.refs)
        data = {"next": self._next, "pools": self._records}
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data))
        os.replace(scratch, self.path)

    def _count_refs(self, refs: dict[str, int], total: int) -> None:
        """Put the one reference a call took or gave back on this host's count."""
        change = total - sum(refs.values())
        if change > 0:
            refs[self.host] = refs.get(self.host, 0) + change
        elif change < 0:
            owner = self.host if refs.get(self.host) else next(iter(refs))
            refs[owner] -= 1
            if not refs[owner]:
                del refs[owner]

    # -- the reference driver's steps, kept in the file --------------------------

    def _create(self, space: str, network: Network, sub: Network | None) -> PoolResult:
        pool_id = f"{space}:{self._next}"
        self._next += 1
        self._pools[pool_id] = Pool(pool_id, space, network, sub)
        self._records[pool_id] = {
            "space": space,
            "network": str(network),
            "sub": str(sub) if sub else "",
            "host": self.host,
            "refs": {self.host: 1},
            "held": {},
        }
        return PoolResult(pool_id, network, {})

    def _drop(self, pool: Pool) -> None:
        super()._drop(pool)
        del self._records[pool.pool_id]

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        super()._take(pool, address, dynamic)
        held = self._records[pool.pool_id]["held"]
        held[str(address)] = {"gateway": self._gateway_request, "hosts": [self.host]}

    def _untake(self, pool: Pool, address: Address) -> None:
        held = self._records[pool.pool_id]["held"]
        holders = held.get(str(address), {}).get("hosts", [])
        if self.host in holders and len(holders) > 1:
            holders.remove(self.host)  # a shared gateway: the others still hold it
            return
        super()._untake(pool, address)
        held.pop(str(address), None)

    def _shared_gateway(self, pool_id: str, address: Address) -> AddressResult | None:
        """Grant a gateway another host holds to a host that joined its pool."""
        if pool_id not in self._pools or self.pool_reading is not PoolReading.REFCOUNTED:
            return None
        held = self._records[pool_id]["held"].get(str(address))
        if held is None or not held["gateway"] or self.host in held["hosts"]:
            return None
        if not self._records[pool_id]["refs"].get(self.host):
            return None
        held["hosts"].append(self.host)
        return AddressResult(self._interface(self._pools[pool_id], address), {})

    # -- the calls ----------------------------------------------------------------

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        with self._synced():
            return super().request_pool(address_space, pool, sub_pool, options, v6)

    def release_pool(self, pool_id: str) -> None:
        with self._synced():
            super().release_pool(pool_id)

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        ipamkit.check_options(options)
        with self._synced():
            self._gateway_request = (options or {}).get(REQUEST_ADDRESS_TYPE) == GATEWAY
            if address is not None and self._gateway_request:
                ipamkit.check_str(pool_id, "pool_id")
                shared = self._shared_gateway(pool_id, ipamkit.parse_address(address))
                if shared is not None:
                    return shared
            return super().request_address(pool_id, address, options)

    def release_address(self, pool_id: str, address: Address | str) -> None:
        with self._synced():
            super().release_address(pool_id, address)


# -- the bugs -------------------------------------------------------------------

_NOT_SHARED = frozenset(Feature) - {Feature.SHARED}
_NOT_PERSISTENT = frozenset(Feature) - {Feature.PERSISTENT}


class AddressesInMemory(FileIpam):
    """Writes pools to the file but keeps addresses in the instance's memory only."""

    features = _NOT_SHARED

    def __init__(self, reading: str = "exclusive", state: str = "", host: str = "a") -> None:
        super().__init__(reading, state, host)
        self._memory: dict[str, dict[str, Any]] = {}

    def _load(self) -> None:
        super()._load()
        for pool_id, record in self._records.items():
            record["held"] = self._memory.setdefault(pool_id, {})
            if pool_id in self._pools:
                self._pools[pool_id].held = {ip_address(a) for a in record["held"]}

    def _save(self) -> None:
        for record in self._records.values():
            record["held"] = {}
        super()._save()


class ReleaseNotWritten(FileIpam):
    """Writes a released address to the file only when its pool is released: it is
    remembered as released in memory, and comes back held after a restart."""

    features = _NOT_SHARED

    def __init__(self, reading: str = "exclusive", state: str = "", host: str = "a") -> None:
        super().__init__(reading, state, host)
        self._released: dict[str, dict[str, Any]] = {}

    def _load(self) -> None:
        super()._load()
        for pool_id, pool in self._pools.items():
            for text in self._released.get(pool_id, {}):
                self._records[pool_id]["held"].pop(text, None)
                pool.held.discard(ip_address(text))

    def _untake(self, pool: Pool, address: Address) -> None:
        record = self._records[pool.pool_id]["held"].get(str(address))
        if record is not None:
            self._released.setdefault(pool.pool_id, {})[str(address)] = record
        super()._untake(pool, address)

    def _take(self, pool: Pool, address: Address, dynamic: bool) -> None:
        self._released.get(pool.pool_id, {}).pop(str(address), None)
        super()._take(pool, address, dynamic)

    def _save(self) -> None:
        for pool_id, released in self._released.items():
            if pool_id in self._records:
                self._records[pool_id]["held"].update(released)
        super()._save()


class AddressesCached(FileIpam):
    """Reads a pool's addresses once per instance and writes its copy back on each call,
    so two instances hand out the same address."""

    features = _NOT_PERSISTENT

    def __init__(self, reading: str = "exclusive", state: str = "", host: str = "a") -> None:
        super().__init__(reading, state, host)
        self._cache: dict[str, dict[str, Any]] = {}

    def _load(self) -> None:
        super()._load()
        for pool_id, record in self._records.items():
            record["held"] = self._cache.setdefault(pool_id, record["held"])
            if pool_id in self._pools:
                self._pools[pool_id].held = {ip_address(a) for a in record["held"]}


class OverlapSeesOwnPools(FileIpam):
    """Checks overlap against the pools this host created only."""

    features = _NOT_PERSISTENT

    def _overlaps(self, space: str, network: Network, chosen: bool) -> bool:
        return any(
            p.space == space
            and p.network.version == network.version
            and p.network.overlaps(network)
            and self._records[p.pool_id]["host"] == self.host
            for p in self._pools.values()
        )


#: Driver name to class; the broken ones are named after their bug.
DRIVERS: dict[str, type[FileIpam]] = {
    "reference-file": FileIpam,
    "broken-restart-loses-addresses": AddressesInMemory,
    "broken-restart-resurrects-released": ReleaseNotWritten,
    "broken-shared-addresses-cached": AddressesCached,
    "broken-shared-overlap-own-pools": OverlapSeesOwnPools,
}


@ipamkit.hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register the declared drivers, with options ``reading``, ``state`` and ``host``."""
    for name, values in options.items():
        unknown = set(values) - set(inspect.signature(FileIpam).parameters)
        if unknown:
            raise InvalidParameterError(f"unknown options for {name}: {sorted(unknown)}")
        registerer.register_ipam_driver(name, DRIVERS[name](**values))
