"""The allocator's state: address spaces holding master pools holding addresses."""

from __future__ import annotations

from ipamkit._contract import Network
from ipamkit.drivers.default._bitmap import AddressSet, RunSet
from ipamkit.drivers.default._predefined import PredefinedPools

__all__ = ["AddressSpace", "Master", "reserved_ordinals"]


def reserved_ordinals(network: Network) -> tuple[int, ...]:
    """Return the ordinals of ``network`` that are never handed out.

    IPv4 reserves the network and broadcast addresses, except in /31 and /32
    (RFC 3021); IPv6 reserves only the subnet-router anycast address.
    """
    size = network.num_addresses
    if network.version == 6:
        return (0,)
    return (0, size - 1) if size > 2 else ()


class Master:
    """A master pool: its addresses, its live subpools, and whether it outlives them."""

    __slots__ = ("addresses", "auto_release", "children", "network")

    def __init__(self, network: Network, auto_release: bool) -> None:
        self.network = network
        self.addresses = AddressSet(network.num_addresses, reserved_ordinals(network))
        self.children: set[Network] = set()
        #: Released (or created by a subpool request): goes once its last subpool goes.
        self.auto_release = auto_release


class AddressSpace:
    """One address space: master pools that never overlap, and a predefined list."""

    __slots__ = ("_taken", "masters", "name", "predefined", "start")

    def __init__(self, name: str, predefined: PredefinedPools) -> None:
        self.name = name
        self.predefined = predefined
        #: Docker's ``predefinedStartIndex``: where the next predefined walk begins.
        self.start = 0
        self.masters: dict[Network, Master] = {}
        # Every address covered by a master, per IP version: an overlap test is
        # one bisect however many masters there are (Docker compares against
        # each master in turn).
        self._taken = {4: RunSet(1 << 32), 6: RunSet(1 << 128)}

    def overlaps(self, network: Network) -> bool:
        """Tell whether ``network`` shares an address with any master of this space."""
        first = int(network.network_address)
        member = self._taken[network.version].first_member(first)
        return member < first + network.num_addresses

    def add(self, network: Network, auto_release: bool) -> Master:
        """Create a master for ``network``, which the caller checked overlaps nothing."""
        master = Master(network, auto_release)
        self.masters[network] = master
        first = int(network.network_address)
        self._taken[network.version].add_range(first, first + network.num_addresses)
        return master

    def remove(self, master: Master) -> None:
        """Forget ``master`` and everything allocated in it."""
        network = master.network
        del self.masters[network]
        first = int(network.network_address)
        self._taken[network.version].discard_range(first, first + network.num_addresses)

    def choose(self, version: int) -> Network | None:
        """Return the next predefined pool of IP ``version`` that overlaps no master.

        Advances the start index past it; Docker resets the index to 0 rather
        than wrapping it when it runs off the end.
        """
        found = self.predefined.find(version, self._taken[version], self.start)
        if found is None:
            return None
        position, network = found
        self.start += position + 1
        if self.start >= len(self.predefined):
            self.start = 0
        return network
