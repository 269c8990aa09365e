"""The contract as numbered clauses: data for the suite, the reports and the docs.

This module imports nothing but the standard library and :mod:`ipamkit`'s enums,
because the pytest plugin reads it in every run that names a driver.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipamkit import Feature, PoolReading

__all__ = ["CLAUSES", "Clause", "find_clause"]


@dataclass(frozen=True)
class Clause:
    """One checkable statement of the contract."""

    #: Stable identifier, ``C<number>-<slug>``; never renumbered once released.
    id: str
    title: str
    #: The statement itself, in the words the documentation shows.
    text: str
    #: Features a driver must declare for the clause to apply at all. Some tests of a
    #: clause need more (an IPv6 case needs :attr:`ipamkit.Feature.IPV6`); they skip alone.
    needs: frozenset[Feature] = frozenset()
    #: The pool reading the clause is about; None when it holds under both.
    reading: PoolReading | None = None

    @property
    def number(self) -> str:
        """The ``C<number>`` part of the id."""
        return self.id.split("-", 1)[0]


def _clause(
    id: str,
    title: str,
    text: str,
    needs: tuple[Feature, ...] = (),
    reading: PoolReading | None = None,
) -> Clause:
    return Clause(id, title, " ".join(text.split()), frozenset(needs), reading)


F = Feature

#: Every clause, in the order the documentation lists them.
CLAUSES: tuple[Clause, ...] = (
    _clause(
        "C01-default-address-spaces",
        "Default address spaces",
        """``get_default_address_spaces()`` returns two non-empty strings, the local and
        the global address space, and the same two on every call.""",
    ),
    _clause(
        "C02-invalid-address-space",
        "Unknown address spaces are refused",
        """``request_pool`` in an empty address space, or in one the driver does not
        have, raises ``InvalidAddressSpaceError``.""",
    ),
    _clause(
        "C03-address-spaces-independent",
        "Address spaces are independent",
        """The same pool can be live in the local and in the global address space at
        once, under different pool IDs, and releasing it in one leaves the other
        untouched.""",
        (F.EXPLICIT_POOLS,),
    ),
    _clause(
        "C04-explicit-pool",
        "An explicit pool is granted as asked",
        """``request_pool`` of a pool that overlaps no live pool of its address space
        succeeds and returns that pool, under a pool ID that names no other live
        pool.""",
        (F.EXPLICIT_POOLS,),
    ),
    _clause(
        "C05-invalid-pool",
        "Malformed pools are refused",
        """``request_pool`` with a pool that is not an ``address/length`` prefix raises
        ``InvalidPoolError``.""",
        (F.EXPLICIT_POOLS,),
    ),
    _clause(
        "C06-invalid-subpool",
        "Malformed subpools are refused",
        """``request_pool`` raises ``InvalidSubPoolError`` for a subpool without a pool,
        a subpool that is not a prefix, one of the other address family, and one that
        does not lie inside its pool (a subpool equal to its pool is allowed).""",
        (F.SUB_POOLS,),
    ),
    _clause(
        "C07-pools-never-overlap",
        "Pools of one address space never overlap",
        """A request for a pool that overlaps a different live pool of the same address
        space (a subnet or supernet of it), whether that pool was requested
        explicitly, with a subpool, or chosen by the driver, raises
        ``PoolOverlapError``. This holds under both pool readings.""",
        (F.EXPLICIT_POOLS,),
    ),
    _clause(
        "C08-chosen-pools-never-overlap",
        "Pools the driver chooses never overlap",
        """A pool the driver chooses (``request_pool`` without a pool) overlaps no live
        pool of its address space, explicit or chosen. When nothing is left to choose
        from, the call raises ``UnavailableError`` (``NoMoreSubnetsError``).""",
        (F.CHOSEN_POOLS,),
    ),
    _clause(
        "C09-v6-flag",
        "The v6 flag is honoured",
        """A pool the driver chooses is IPv6 exactly when ``v6=True`` was asked for.""",
        (F.CHOSEN_POOLS,),
    ),
    _clause(
        "C10-exclusive-reading",
        "Exclusive pools",
        """Under the exclusive reading (Docker's built-in allocator) a second request
        identical to a live one raises ``PoolOverlapError`` and one release frees the
        pool.""",
        (F.EXPLICIT_POOLS,),
        PoolReading.EXCLUSIVE,
    ),
    _clause(
        "C11-refcounted-reading",
        "Reference-counted pools",
        """Under the reference-counted reading (Docker's documentation for remote
        drivers) a request identical to a live one returns the same pool ID and pool;
        N identical requests need N releases before the pool is gone.""",
        (F.EXPLICIT_POOLS,),
        PoolReading.REFCOUNTED,
    ),
    _clause(
        "C12-released-pool-comes-back-empty",
        "A released pool comes back empty",
        """Once released, a pool can be requested again, and none of the addresses
        allocated from it before is still allocated.""",
        (F.EXPLICIT_POOLS,),
    ),
    _clause(
        "C13-bad-pool-id",
        "Unknown and released pool IDs",
        """``release_pool``, ``request_address`` and ``release_address`` with the ID of a
        released pool raise ``BadPoolError`` (so releasing a pool twice does), and with
        an ID the driver never issued raise ``BadPoolError`` or, when the ID is
        malformed, ``InvalidPoolError``.""",
    ),
    _clause(
        "C14-address-in-pool",
        "Every address lies in its pool",
        """Every address ``request_address`` returns lies inside the pool it was
        requested from.""",
        (F.DYNAMIC_ADDRESSES,),
    ),
    _clause(
        "C15-dynamic-address-in-subpool",
        "Dynamic addresses lie in the subpool",
        """An address the driver chooses from a pool requested with a subpool lies
        inside the subpool.""",
        (F.SUB_POOLS, F.DYNAMIC_ADDRESSES),
    ),
    _clause(
        "C16-prefix-length",
        "Addresses carry the pool's prefix length",
        """The interface ``request_address`` returns carries the pool's prefix length,
        also when the pool has a subpool.""",
        (F.DYNAMIC_ADDRESSES,),
    ),
    _clause(
        "C17-no-duplicate-addresses",
        "No address is handed out twice",
        """An address is never handed out again while it is held, dynamically or for a
        specific request.""",
        (F.DYNAMIC_ADDRESSES,),
    ),
    _clause(
        "C18-specific-address",
        "A specific free address is granted",
        """``request_address`` with a free address of the pool returns exactly that
        address, anywhere in the pool (including the last address of a large IPv6
        pool, but no IPv4-mapped one: see C22). A driver may refuse the pool's network
        address and its IPv4 broadcast address as reserved; it imposes no other
        reservation.""",
        (F.SPECIFIC_ADDRESSES,),
    ),
    _clause(
        "C19-address-already-allocated",
        "A held address is refused",
        """``request_address`` for an address that is held raises
        ``IPAlreadyAllocatedError``, also when the pool is full.""",
        (F.SPECIFIC_ADDRESSES,),
    ),
    _clause(
        "C20-address-out-of-range",
        "Addresses outside the pool are refused",
        """``request_address`` and ``release_address`` with an address outside the pool
        (including one of the other address family) raise ``IPOutOfRangeError``.""",
    ),
    _clause(
        "C21-exhaustion",
        "Exhaustion and release",
        """When no address of a pool (or of its subpool) is free, ``request_address``
        without an address raises ``NoAvailableIPsError``; a driver may keep back at
        most two addresses of a range. Releasing an address makes room again.""",
        (F.DYNAMIC_ADDRESSES,),
    ),
    _clause(
        "C22-invalid-address",
        "Malformed addresses are refused",
        """``request_address`` and ``release_address`` with a string that is not an IP
        address, or with an IPv4-mapped IPv6 address (in ``::ffff:0:0/96``: it would
        silently change family), raise ``InvalidParameterError``, in a pool of either
        family. So no IPv4-mapped address is ever handed out, also from a pool or
        subpool that covers them (a /95 or wider): an address handed out can be
        released.""",
    ),
    _clause(
        "C23-argument-types",
        "Wrong argument types",
        """Every method raises ``TypeError`` for an argument of the wrong Python type
        (a number for a string, a string for ``v6``).""",
    ),
    _clause(
        "C24-errors-change-nothing",
        "A failing call changes nothing",
        """A call that raises leaves the driver's state exactly as it was: the pools it
        has, and the addresses that are free in each.""",
        (F.EXPLICIT_POOLS, F.DYNAMIC_ADDRESSES),
    ),
    _clause(
        "C25-thread-safety",
        "Concurrent callers never collide",
        """A driver that declares itself thread-safe, called from several threads at
        once, never hands out one address twice nor chooses overlapping pools.""",
        (F.THREAD_SAFE,),
    ),
    _clause(
        "C26-random-sequences",
        "Random call sequences agree with the contract",
        """Random sequences of all six calls, valid and invalid, agree step by step with
        a model of the clauses above; a failure names the clause it breaks and shows
        the shortest sequence of driver calls found that breaks it.""",
    ),
    _clause(
        "C27-restart-keeps-state",
        "A restart keeps every live pool and address",
        """A new instance of a persistent driver, built with the same options once the
        old one is closed, has every pool that was live: under the same pool ID, with
        its pool, its subpool (dynamic addresses still come from it) and, under the
        refcounted reading, its references. Every address that was held is still held:
        a request for it raises ``IPAlreadyAllocatedError`` and no dynamic request
        returns it.""",
        (F.PERSISTENT,),
    ),
    _clause(
        "C28-restart-keeps-releases",
        "A restart brings nothing released back",
        """After a restart nothing released before it comes back: the ID of a released
        pool raises ``BadPoolError``, the released pool can be requested again and has
        no address allocated, and a released address is free: it can be requested
        again, and a dynamic request finds it when it is the last one free.""",
        (F.PERSISTENT,),
    ),
    _clause(
        "C29-random-restarts",
        "Random sequences with restarts agree with the contract",
        """Random sequences of calls, as in C26, with restarts at random points between
        them, agree step by step with the same model, which a restart does not change:
        pools, pool IDs, references, held and released addresses are after a restart
        what they were before it.""",
        (F.PERSISTENT,),
    ),
    _clause(
        "C30-shared-pools",
        "Instances of a shared driver see each other's pools",
        """Instances of a shared driver, built with the same options or with the
        peer's (such as another host identity) and used at once, from threads of one
        process and from separate processes, see each other's pools in the global
        address space. A pool ID one of them issued names the same pool in all. A
        request in one for a pool that overlaps a pool live in another raises
        ``PoolOverlapError``; under the refcounted reading, a request identical to the
        live pool's joins it instead, with the same pool ID, and the pool lives until
        every reference, from every instance, is released. A pool one of them chooses
        overlaps no pool live in another.""",
        (F.SHARED, F.EXPLICIT_POOLS),
    ),
    _clause(
        "C31-shared-addresses",
        "Instances of a shared driver never hand out one address twice",
        """Instances of a shared driver used at once, from threads and from separate
        processes, never hand out an address that another holds: not dynamically, and
        a specific request for it raises ``IPAlreadyAllocatedError``. One address is
        the exception, under the refcounted reading only: an address an instance holds
        as the pool's gateway (requested with the option
        ``RequestAddressType=com.docker.network.gateway``) may be granted again to
        another instance that joined the same pool and asks for that address with that
        option. The same instance asking for it twice, a request without the option,
        and a request with the option for an address held as no gateway all raise
        ``IPAlreadyAllocatedError``. A shared gateway stays held until every instance
        that holds it has released it.""",
        (F.SHARED, F.DYNAMIC_ADDRESSES),
    ),
    _clause(
        "C32-shared-releases",
        "A release by one instance frees for all",
        """An address or a pool that one instance of a shared driver released is free
        for every instance: another can request the address, and, once the pool's
        last reference is released, the pool, which then has no address allocated.""",
        (F.SHARED, F.EXPLICIT_POOLS),
    ),
)

_BY_KEY = {key: c for c in CLAUSES for key in (c.id, c.number)}


def find_clause(name: str) -> Clause | None:
    """Return the clause named by its full id (``C07-pools-never-overlap``) or number (``C07``)."""
    return _BY_KEY.get(name)
