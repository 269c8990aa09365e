"""The allocator's state: address spaces holding master pools holding addresses."""

from __future__ import annotations

from collections.abc import Callable

from ipamkit._contract import Interface, Network
from ipamkit._interfaces import interface_maker, network_maker
from ipamkit.drivers.default._bitmap import AddressSet, RunSet
from ipamkit.pools import reserved_ordinals, unusable_ordinals
from ipamkit.predefined import PredefinedPools

__all__ = ["AddressSpace", "Master", "new_address_set"]


def new_address_set(version: int, first: int, size: int) -> AddressSet:
    """Return the address set of a fresh pool: its reserved and unusable ordinals taken."""
    return AddressSet(
        size, reserved_ordinals(version, size), unusable_ordinals(version, first, size)
    )


class Master:
    """A master pool: its addresses, its live subpools, and whether it outlives them.

    Kept to one object of plain values until addresses are asked for, with no
    containers until they are needed: the garbage collector visits every
    object a live pool holds, again and again (an ``ipaddress`` network alone is
    three), and many pools never hand out an address.
    """

    __slots__ = (
        "addressing",
        "auto_release",
        "children",
        "cidr",
        "first",
        "prefixlen",
        "size",
        "version",
    )

    def __init__(
        self, version: int, first: int, prefixlen: int, cidr: str, auto_release: bool
    ) -> None:
        #: 4 or 6.
        self.version = version
        #: The integer value of the master's first address.
        self.first = first
        self.prefixlen = prefixlen
        self.size = 1 << ((128 if version == 6 else 32) - prefixlen)
        #: The prefix as text, the key of the master in its space and part of its pool ID.
        self.cidr = cidr
        #: The live subpools; None while there are none.
        self.children: set[Network] | None = None
        #: Released (or created by a subpool request): goes once its last subpool goes.
        self.auto_release = auto_release
        #: The allocated addresses and the builder of the interfaces handed out;
        #: None until the first address request (see :meth:`open`).
        self.addressing: tuple[AddressSet, Callable[[int], Interface]] | None = None

    def open(self) -> tuple[AddressSet, Callable[[int], Interface]]:
        """Make the address set and interface builder of a master that has none yet."""
        network = network_maker(self.version)(self.first, self.prefixlen)
        addresses = new_address_set(self.version, self.first, self.size)
        self.addressing = addressing = (addresses, interface_maker(network))
        return addressing

    def has_child(self, child: Network) -> bool:
        """Tell whether ``child`` is a live subpool of this master."""
        return self.children is not None and child in self.children

    def add_child(self, child: Network) -> None:
        """Record the subpool ``child``."""
        if self.children is None:
            self.children = set()
        self.children.add(child)

    def discard_child(self, child: Network) -> None:
        """Forget the subpool ``child``."""
        if self.children is not None:
            self.children.discard(child)
            if not self.children:
                self.children = None


class AddressSpace:
    """One address space: the addresses its master pools cover, and a predefined list.

    The masters themselves are found through the driver's routes, by pool ID.
    """

    __slots__ = ("_taken", "name", "predefined", "start")

    def __init__(self, name: str, predefined: PredefinedPools) -> None:
        self.name = name
        self.predefined = predefined
        #: Docker's ``predefinedStartIndex``: where the next predefined walk begins.
        self.start = 0
        # Every address covered by a master, per IP version: an overlap test is
        # one bisect however many masters there are (Docker compares against
        # each master in turn).
        self._taken = {4: RunSet(1 << 32), 6: RunSet(1 << 128)}

    def add(self, master: Master) -> bool:
        """Add ``master`` unless it shares an address with a master of this space.

        Tells whether it did.
        """
        return self._taken[master.version].claim(master.first, master.first + master.size)

    def remove(self, master: Master) -> None:
        """Forget ``master``'s addresses."""
        self._taken[master.version].discard_range(master.first, master.first + master.size)

    def choose(self, version: int) -> tuple[int, int] | None:
        """Return the next predefined pool of IP ``version`` that overlaps no master.

        The pool comes as its first address and prefix length; the start index
        moves on as :meth:`PredefinedPools.choose` says.
        """
        found = self.predefined.choose(version, self._taken[version], self.start)
        if found is None:
            return None
        first, prefixlen, self.start = found
        return first, prefixlen
