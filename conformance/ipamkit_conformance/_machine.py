"""The heart of the suite: random call sequences checked step by step against a model."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network, ip_network
from typing import Any, ClassVar, NamedTuple, TypeVar

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from ipamkit import Address, Feature, Network, PoolReading
from ipamkit.errors import (
    BadPoolError,
    InvalidAddressSpaceError,
    InvalidParameterError,
    InvalidPoolError,
    InvalidSubPoolError,
    IPAlreadyAllocatedError,
    IpamError,
    IPOutOfRangeError,
    NoAvailableIPsError,
    PoolOverlapError,
    UnavailableError,
)

from ipamkit_conformance._checks import clause_id, describe, error_matches, violation
from ipamkit_conformance._networks import (
    MALFORMED_ADDRESSES,
    MALFORMED_POOLS,
    RESERVED_ERRORS,
    UNIVERSE_V4,
    UNIVERSE_V6,
    address_at,
    edges,
    free_count,
    high_half_edges,
    may_be_reserved,
    other_family,
    outside,
    pick_free,
    within,
)
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target

__all__ = ["PoolRequest", "expected_break", "machine_for"]

C01, C02, C03, C04 = (clause_id(n) for n in ("C01", "C02", "C03", "C04"))
C05, C06, C07, C08 = (clause_id(n) for n in ("C05", "C06", "C07", "C08"))
C09, C10, C11, C12 = (clause_id(n) for n in ("C09", "C10", "C11", "C12"))
C13, C14, C15, C16 = (clause_id(n) for n in ("C13", "C14", "C15", "C16"))
C17, C18, C19, C20 = (clause_id(n) for n in ("C17", "C18", "C19", "C20"))
C21, C22, C24 = (clause_id(n) for n in ("C21", "C22", "C24"))

#: IDs no driver issues; the malformed one may be InvalidPoolError instead of BadPoolError.
MADE_UP_IDS = ("no-such-pool-id", "")
#: What a pool request that granted nothing puts in the bundle; every rule skips
#: it. Pushing something every time keeps the shape of what hypothesis draws
#: independent of the driver's answers, which a shared driver (a served one,
#: whose round-robin cursor outlives each example) does not repeat exactly from
#: one example to the next.
NO_POOL = "<no pool granted>"

_POOL_ID_CALLS = ("release_pool", "request_address", "release_address")
#: What a pool must have for a pick of an address rule to meet its situation.
_PICK_NEEDS: dict[str, Callable[[_Pool], object]] = {
    "held": lambda p: p.held,
    "released": lambda p: p.released,
    "outside-subpool": lambda p: p.sub is not None and p.sub != p.network,
    "high-half": lambda p: high_half_edges(p.network),
    "release-held": lambda p: p.held,
    "fill": lambda p: p.scope.num_addresses <= 64,
    "chosen": lambda p: p.chosen,
}
#: Which live pool an address rule turns to when the ID drawn from the bundle names
#: none (None keeps the ID, for the answers on released IDs). Most IDs in the
#: bundle name no live pool (failed and released requests): without this the
#: address rules would mostly meet dead IDs and seldom a pool with history.
_LIVE = st.sampled_from((None, 0, 1, 2, 3, 4, 5, 6, 7))

ErrorClasses = type[IpamError] | tuple[type[IpamError], ...]


def expected_break(clause: str) -> str:
    """The tally's name for a break of ``clause``, which the run expects (``--ipam-xfail``)."""
    return f"breaks {clause}, as expected"


class _ExpectedBreak(Exception):
    """The driver broke a clause the run expects to fail: noted, not reported."""


_Step = TypeVar("_Step", bound=Callable[..., Any])


def _step(result: Any = None) -> Callable[[_Step], _Step]:
    """Make a rule or invariant go on after an expected break, doing nothing.

    The model no longer knows the driver's state after a break, so the rest of
    that example is skipped (answering ``result``), and the search goes on for
    breaks of the other clauses.
    """

    def wrap(method: _Step) -> _Step:
        @functools.wraps(method)
        def run(self: _Machine, *args: Any, **kwargs: Any) -> Any:
            if self.broken:
                return result
            try:
                return method(self, *args, **kwargs)
            except _ExpectedBreak:
                self.broken = True
                return result

        return run  # type: ignore[return-value]

    return wrap


class PoolRequest(NamedTuple):
    """The arguments of one ``request_pool`` call."""

    address_space: str
    pool: str = ""
    sub_pool: str = ""
    v6: bool = False


@dataclass
class _Pool:
    """What the model knows of one live pool."""

    pool_id: str
    request: PoolRequest
    network: Network
    sub: Network | None
    chosen: bool
    refs: int = 1
    releases: int = 0
    held: set[Address] = field(default_factory=set)
    #: The driver said the range is exhausted and nothing was released since.
    exhausted: bool = False
    #: Addresses of the range released since the driver last said it was exhausted
    #: and not handed out again: known to be free, so never reserved.
    freed: set[Address] = field(default_factory=set)
    #: Addresses released in this pool and not handed out again.
    released: set[Address] = field(default_factory=set)
    #: Held addresses that were requested by name after their release.
    renamed: set[Address] = field(default_factory=set)
    #: The driver said the range was exhausted at some time.
    filled: bool = False
    #: Dynamic requests since the last release of an address (None: no release yet).
    since_release: int | None = None
    #: A pool was released at this place before this one was granted.
    again: bool = False

    @property
    def space(self) -> str:
        return self.request.address_space

    @property
    def scope(self) -> Network:
        """Where dynamic addresses come from."""
        return self.sub or self.network


def _parse(text: str) -> Network | None:
    if not text or text in MALFORMED_POOLS:
        return None
    return ip_network(text)


# -- strategies -----------------------------------------------------------------


@st.composite
def _random_network(draw: st.DrawFn, v6: bool) -> str:
    if v6 and draw(st.booleans()):
        base: Network = IPv6Network("fd00::/8")
        prefix = draw(st.sampled_from((32, 48, 56, 64, 96, 120, 125, 126, 127, 128)))
    else:
        base = draw(
            st.sampled_from([ip_network(n) for n in UNIVERSE_V4 if n.endswith(("/8", "/12"))])
        )
        base = draw(st.sampled_from((base, IPv4Network("192.168.0.0/16"))))
        prefix = draw(st.integers(base.prefixlen, 32))
    index = draw(st.integers(0, 2 ** (prefix - base.prefixlen) - 1))
    shift = base.max_prefixlen - prefix
    return str(ip_network((int(base.network_address) + (index << shift), prefix)))


@st.composite
def _sub_pool_request(
    draw: st.DrawFn, spaces: list[str], nets: st.SearchStrategy[str]
) -> PoolRequest:
    space = draw(st.sampled_from(spaces))
    pool = ip_network(draw(nets))
    kind = draw(
        st.sampled_from(
            ("inside", "inside", "inside", "equal", "outside", "family", "malformed", "alone")
        )
    )
    # Mostly subpools small enough to fill within one rule, inside pools of any size.
    room = pool.max_prefixlen - pool.prefixlen
    size = draw(st.integers(0, min(6, room)) | st.integers(0, room))
    extra = room - size
    index = draw(st.integers(0, 2**extra - 1))
    shift = pool.max_prefixlen - pool.prefixlen - extra
    inside = ip_network((int(pool.network_address) + (index << shift), pool.prefixlen + extra))
    if kind == "equal":
        sub = str(pool)
    elif kind == "outside":
        halves = list(pool.supernet().subnets())
        sub = str(halves[1] if halves[0] == pool else halves[0])
    elif kind == "family":
        sub = "2001:db8::/64" if pool.version == 4 else "10.0.0.0/24"
    elif kind == "malformed":
        sub = draw(st.sampled_from(MALFORMED_POOLS))
    else:
        sub = str(inside)
    return PoolRequest(space, "" if kind == "alone" else str(pool), sub, False)


_NO = st.just(False)
_WIDE_V6 = st.integers(0, 2**16 - 1).map(
    lambda i: str(IPv6Network((int(IPv6Network("fd00::/8").network_address) + (i << 80), 48)))
)


def _requests(
    space: st.SearchStrategy[str],
    pool: st.SearchStrategy[str],
    v6: st.SearchStrategy[bool] = _NO,
) -> st.SearchStrategy[PoolRequest]:
    # Every field given: builds() would otherwise invent the defaulted ones.
    return st.builds(PoolRequest, space, pool, st.just(""), v6)


def _networks(target: Target) -> st.SearchStrategy[str]:
    ipv6 = target.has(Feature.IPV6)
    return st.one_of(
        st.sampled_from(UNIVERSE_V4 + (UNIVERSE_V6 if ipv6 else ())),
        _random_network(ipv6),
    )


def _pool_requests(target: Target) -> st.SearchStrategy[PoolRequest]:
    nets = _networks(target)
    space = st.sampled_from([target.local_space, target.global_space])
    choices = [_requests(st.sampled_from(("", "no-such-address-space")), st.just("") | nets)]
    if target.has(Feature.EXPLICIT_POOLS):
        choices += [_requests(space, nets)] * 4
        choices.append(_requests(space, st.sampled_from(MALFORMED_POOLS)))
        if target.has(Feature.IPV6):
            # Pools wider than /64 that seldom overlap: where 64-bit offsets alias.
            choices.append(_requests(space, _WIDE_V6, v6=st.just(True)))
    if target.has(Feature.CHOSEN_POOLS):
        choices += [_requests(space, st.just(""), v6=st.booleans())] * 2
    return st.one_of(choices)


def _address_picks(target: Target, *, release: bool) -> st.SearchStrategy[str]:
    kinds = ["held", "free", "edge", "outside", "other-family", "malformed"]
    if release:
        # Releases of held addresses are what the rules after them need.
        kinds += ["held"] * 3
    elif target.has(Feature.SPECIFIC_ADDRESSES):
        kinds += ["outside-subpool", "edge", "high-half", "released", "released", "released"]
    else:
        kinds = ["malformed"]
    return st.sampled_from(kinds)


# -- the machine ----------------------------------------------------------------


class _Machine(RuleBasedStateMachine):
    """Drives one fresh driver; every step is checked against the model."""

    target: Target
    #: How often each situation met a call, over all examples of a run: what the
    #: coverage test reads. ``event()`` reports the same to hypothesis' statistics.
    tally: ClassVar[Counter[str]]

    def __init__(self) -> None:
        super().__init__()
        self.ipam = Recorder.for_target(self.target)
        self.spaces = (self.target.local_space, self.target.global_space)
        self.live: dict[str, _Pool] = {}
        self.released: set[tuple[str, Network]] = set()
        self.foreign: list[tuple[str, Network]] = []
        #: Pools of requests that failed, which must have left nothing behind.
        self.failed: list[tuple[str, Network]] = []
        #: Every pool ever granted, live or released: where the driver chooses from.
        self.known: dict[str, tuple[str, Network]] = {}
        #: Per pool (space and network), each address handed out and the pool that
        #: held it last: an address once handed out is no reserved one. Pools, not
        #: IDs: a driver may give a pool requested again its released ID.
        self.handed: dict[tuple[str, Network], dict[Address, _Pool]] = {}
        self.steps = 0
        #: The driver broke a clause the run expects to fail, earlier in this example.
        self.broken = False

    def teardown(self) -> None:
        self.ipam.cleanup()
        # Each example's driver, so a remote plugin's connections do not pile up.
        self.target.close_drivers()

    # -- helpers ----------------------------------------------------------------

    def _seen(self, labels: list[str]) -> None:
        self.tally.update(labels)
        for label in labels:
            event(label)

    def _dynamic_situations(self, pool: _Pool) -> list[str]:
        labels = ["dynamic"]
        if any(a in pool.scope for a in pool.released):
            labels.append("dynamic: a released address of the pool is free")
        if pool.since_release is not None and pool.since_release < 3:
            labels.append(f"dynamic: request #{pool.since_release + 1} after a release")
        if pool.filled and pool.freed:
            labels.append("dynamic: the pool was full, then had an address released")
        if pool.exhausted:
            labels.append("dynamic: the pool is full")
        if pool.renamed:
            labels.append("dynamic: an address released, then requested by name, is held")
        if pool.again:
            labels.append("dynamic: the pool was released and requested again")
        if (
            pool.sub is not None
            and pool.sub != pool.network
            and free_count(pool.sub, pool.held) <= 2
        ):
            labels.append("dynamic: the subpool is full, the pool has room")
        return labels

    def _specific_situations(self, pool: _Pool, address: Address) -> list[str]:
        network = pool.network
        if address.version != network.version:
            return ["specific: other family"]
        if address not in network:
            return ["specific: outside the pool"]
        if address in pool.held:
            labels = ["specific: held"]
        elif address in pool.released:
            labels = ["specific: released in this pool"]
        elif address in self._handed(pool):
            labels = ["specific: held by a released pool at the same place"]
        else:
            labels = ["specific: never handed out"]
        if address in edges(network):
            labels.append("specific: an edge of the pool")
        if pool.sub is not None and pool.sub != network:
            if address not in pool.sub:
                labels.append("specific: outside the subpool")
            elif address in edges(pool.sub):
                labels.append("specific: an edge of the subpool")
        if address in high_half_edges(network):
            labels.append("specific: across 2**64 in a pool wider than /64")
        if network.num_addresses <= 2:
            labels.append("specific: in a /31, /32, /127 or /128 pool")
        return labels

    def _turn(self, pool_id: str, live: int | None, pick: str | None = None) -> str:
        """Return the pool a rule acts on: ``pool_id``, or with ``live`` given, a live pool.

        With ``live`` given, a dead ``pool_id``, or one that lacks what ``pick`` needs
        (a released address, say), turns into a live pool that has it, if any.
        """
        if live is None:
            return pool_id
        fits = _PICK_NEEDS.get(pick or "", bool)
        pool = self.live.get(pool_id)
        if pool is not None and fits(pool):
            return pool_id
        ids = [i for i, p in self.live.items() if fits(p)] or ([] if pool else list(self.live))
        return ids[live % len(ids)] if ids else pool_id

    def _fail(self, clause: str, message: str) -> Exception:
        if clause in self.target.xfail:
            self._seen([expected_break(clause)])
            return _ExpectedBreak(clause)
        return violation(clause, message, self.ipam)

    def _expect_error(
        self, clause: str, expected: ErrorClasses, error: Exception | None, result: object = None
    ) -> None:
        if error is None or not error_matches(self.target, error, expected):
            exact = self.target.has(Feature.EXACT_ERRORS)
            self.ipam.expect_last(
                (expected if isinstance(expected, tuple) else (expected,))
                if exact
                else (IpamError,)
            )
        if error is None:
            raise self._fail(
                clause, f"expected {describe(expected)}, but the call returned {result!r}"
            )
        if not error_matches(self.target, error, expected):
            raise self._fail(
                clause, f"expected {describe(expected)}, got {type(error).__name__}: {error}"
            )

    def _exact(self, error: Exception, expected: ErrorClasses) -> bool:
        return error_matches(self.target, error, expected)

    def _overlapping(self, space: str, network: Network) -> list[_Pool]:
        return [
            p
            for p in self.live.values()
            if p.space == space
            and p.network.version == network.version
            and p.network.overlaps(network)
        ]

    def _ambiguous(self, pool_id: str) -> bool:
        """Tell whether no answer about ``pool_id`` could be judged, so it is not used.

        That is :data:`NO_POOL`, or a released ID that may name a live pool again:
        drivers that derive IDs from the pool (Docker's ``space/pool[/subpool]``)
        give the master of a pool requested with a subpool the ID a plain request
        of it had: once released, that ID is live again while the subpool lives.
        """
        if pool_id == NO_POOL:
            return True
        known = self.known.get(pool_id)
        return (
            pool_id not in self.live
            and known is not None
            and any(p.space == known[0] and p.network == known[1] for p in self.live.values())
        )

    def _vanished(self, pool: _Pool, error: Exception) -> Exception:
        clause = C11 if pool.releases else C24
        return self._fail(
            clause,
            f"pool {pool.pool_id!r} ({pool.network}) is live, with {pool.refs} reference(s) "
            f"left, but the driver answered {type(error).__name__}: {error}",
        )

    # -- request_pool -----------------------------------------------------------

    def _judge(self, request: PoolRequest) -> tuple[str, str, ErrorClasses]:
        """Return what the contract says of ``request``: (kind, clause, error)."""
        space, pool, sub_pool, _ = request
        if space not in self.spaces:
            return "error", C02, InvalidAddressSpaceError
        if not pool:
            if sub_pool:
                return "error", C06, InvalidSubPoolError
            return "chosen", C08, UnavailableError
        network = _parse(pool)
        if network is None:
            return "error", C05, InvalidPoolError
        if sub_pool:
            sub = _parse(sub_pool)
            if sub is None or sub.version != network.version or not within(sub, network):
                return "error", C06, InvalidSubPoolError
        same = [p for p in self._overlapping(space, network) if p.network == network]
        if same:
            if any(p.request == request for p in same):
                if self.target.pool_reading is PoolReading.EXCLUSIVE:
                    return "error", C10, PoolOverlapError
                return "again", C11, PoolOverlapError
            # Another subpool of a live master: drivers differ (Docker adds it), so skip.
            return "skip", C04, PoolOverlapError
        if self._overlapping(space, network):
            return "error", C07, PoolOverlapError
        if any(s == space and n.overlaps(network) for s, n in self.foreign):
            return "skip", C04, PoolOverlapError
        if (space, network) in self.released:
            return "explicit", C12, PoolOverlapError
        other = [p for p in self.live.values() if p.network == network]
        return "explicit", C03 if other else C04, PoolOverlapError

    def _request_pool(self, request: PoolRequest) -> Any:
        kind, clause, expected = self._judge(request)
        if kind == "skip":
            return NO_POOL
        space, pool, sub_pool, v6 = request
        try:
            result = self.ipam.request_pool(space, pool, sub_pool, None, v6)
        except Exception as error:
            if kind == "error":
                self._expect_error(clause, expected, error)
                network = _parse(pool)
                if expected is not PoolOverlapError and space in self.spaces and network:
                    self.failed.append((space, network))
            elif kind == "chosen":
                must = self.target.has(Feature.CHOSEN_IPV6_POOLS) or not v6
                if must and not self._exact(error, UnavailableError):
                    raise self._fail(
                        C08,
                        f"choosing a pool failed with {type(error).__name__}: {error} "
                        "(only UnavailableError may say that nothing is left)",
                    ) from error
            elif self.target.shared and isinstance(error, PoolOverlapError):
                # Someone else holds it in a shared driver: never touch it again.
                self.foreign.append((space, ip_network(pool)))
            else:
                leftover = [
                    n for s, n in self.failed if s == space and n.overlaps(ip_network(pool))
                ]
                raise self._fail(
                    C24 if leftover else clause,
                    (
                        f"a failed request for {leftover[0]} left something behind: "
                        if leftover
                        else ""
                    )
                    + f"{pool} overlaps no live pool of {space!r} the suite holds, "
                    f"yet the request failed with {type(error).__name__}: {error}",
                ) from error
            return NO_POOL
        if kind == "error":
            self._expect_error(clause, expected, None, result)
        return self._granted(request, kind, clause, result)

    def _granted(self, request: PoolRequest, kind: str, clause: str, result: Any) -> str:
        if not (
            isinstance(result, tuple)
            and len(result) == 3
            and isinstance(result[0], str)
            and result[0]
            and isinstance(result[1], (IPv4Network, IPv6Network))
            and isinstance(result[2], dict)
        ):
            raise self._fail(
                clause, f"request_pool must return (pool_id, network, meta), got {result!r}"
            )
        pool_id: str = result[0]
        network: Network = result[1]
        space, pool, sub_pool, v6 = request
        if kind == "chosen":
            if network.version != (6 if v6 else 4):
                raise self._fail(C09, f"asked for a chosen pool with v6={v6}, got {network}")
            if self.target.pool_reading is PoolReading.REFCOUNTED:
                again = self.live.get(pool_id)
                if again is not None and again.request == request and again.network == network:
                    again.refs += 1
                    return pool_id
            clash = self._overlapping(space, network)
            if clash:
                raise self._fail(
                    C08,
                    f"chose {network}, which overlaps live pool {clash[0].network} of {space!r}",
                )
        elif network != ip_network(pool):
            raise self._fail(C04, f"asked for pool {pool}, got {network}")
        live = self.live.get(pool_id)
        if kind == "again":
            same = next(p for p in self.live.values() if p.request == request)
            if pool_id != same.pool_id:
                raise self._fail(
                    C11,
                    f"an identical request must return the same pool ID {same.pool_id!r}, "
                    f"got {pool_id!r}",
                )
            same.refs += 1
            return pool_id
        if live is not None:
            raise self._fail(
                clause,
                f"returned pool ID {pool_id!r}, which already names live pool {live.network}",
            )
        sub = ip_network(sub_pool) if sub_pool else None
        reborn = (space, network) in self.released
        self._seen([f"request_pool {kind}" + (" where a pool was released" if reborn else "")])
        self.live[pool_id] = _Pool(
            pool_id, request, network, sub, chosen=kind == "chosen", again=reborn
        )
        self.known[pool_id] = (space, network)
        self.released.discard((space, network))
        return pool_id

    def _near(self, pool_id: str, how: str) -> Any:
        known = self.known.get(pool_id)
        if known is None:
            return NO_POOL
        space, network = known
        if how == "other-space":
            space = (
                next(s for s in self.spaces if s != space) if len(set(self.spaces)) > 1 else space
            )
        elif how == "supernet" and network.prefixlen > 0:
            network = network.supernet()
        elif how == "subnet" and network.prefixlen < network.max_prefixlen:
            network = ip_network((int(network.network_address), network.prefixlen + 1))
        return self._request_pool(PoolRequest(space, str(network), "", network.version == 6))

    # -- release_pool -----------------------------------------------------------

    def _release_pool(self, pool_id: str) -> None:
        if self._ambiguous(pool_id):
            return
        pool = self.live.get(pool_id)
        try:
            self.ipam.release_pool(pool_id)
        except Exception as error:
            if pool is not None:
                raise self._vanished(pool, error) from error
            self._expect_error(
                C13,
                (BadPoolError, InvalidPoolError) if pool_id in MADE_UP_IDS else BadPoolError,
                error,
            )
            return
        if pool is None:
            self._expect_error(C13, BadPoolError, None)
            return
        pool.refs -= 1
        pool.releases += 1
        if self.target.pool_reading is PoolReading.EXCLUSIVE or pool.refs == 0:
            del self.live[pool_id]
            self.released.add((pool.space, pool.network))

    # -- addresses --------------------------------------------------------------

    def _resolve(self, pool: _Pool, pick: str, n: int) -> Address:
        network = pool.network
        held = sorted(pool.held)
        if pick == "held" and held:
            return held[n % len(held)]
        if pick == "released":
            # Released in this pool first: what free lists and cursors get wrong.
            released = sorted(pool.released) or sorted(
                a for a in self._handed(pool) if a not in pool.held
            )
            if released:
                return released[n % len(released)]
        if pick == "high-half" and high_half_edges(network):
            return high_half_edges(network)[n % 2]
        if pick == "edge":
            # The rare places twice: there are fewer pools that have them.
            places = [*edges(network), *high_half_edges(network) * 2]
            if pool.sub is not None and pool.sub != network:
                places += edges(pool.sub) * 2
            return places[n % len(places)]
        if pick == "outside":
            return outside(network, n)
        if pick == "other-family":
            return other_family(network)
        if pick == "outside-subpool" and pool.sub is not None and pool.sub != network:
            candidate = outside(pool.sub, n)
            if candidate in network:
                return candidate
        free = pick_free(pool.scope, pool.held, n) or pick_free(network, pool.held, n)
        return free if free is not None else held[n % len(held)]

    def _handed(self, pool: _Pool) -> dict[Address, _Pool]:
        return self.handed.setdefault((pool.space, pool.network), {})

    def _granted_address(self, pool: _Pool, address: Address, dynamic: bool) -> None:
        if not dynamic and address in pool.released:
            pool.renamed.add(address)
        pool.held.add(address)
        pool.freed.discard(address)
        pool.released.discard(address)
        self._handed(pool)[address] = pool

    def _twins(self, pool: _Pool) -> list[_Pool]:
        """The live pools of the other address space at the same place."""
        return [
            p for p in self.live.values() if p.space != pool.space and p.network == pool.network
        ]

    def _refused_free(self, pool: _Pool, address: Address, error: Exception) -> Exception:
        """The error for a free address refused: C12 if an earlier pool there held it."""
        twins = [p for p in self._twins(pool) if address in p.held]
        if twins:
            return self._fail(
                C03,
                f"{address} is free in {pool.network} of {pool.space!r} and held only in the "
                f"same pool of {twins[0].space!r}, yet request_address failed with "
                f"{type(error).__name__}: {error}",
            )
        previous = self._handed(pool).get(address)
        if previous is not None and previous is not pool:
            return self._fail(
                C12,
                f"{address} was held in a pool that was released; in the pool requested "
                f"again it is free, yet request_address failed with {type(error).__name__}: "
                f"{error}",
            )
        if previous is not None:
            return self._fail(
                C21,
                f"{address} was released, yet request_address failed with "
                f"{type(error).__name__}: {error}",
            )
        return self._fail(
            C18,
            f"{address} is free in {pool.network}, yet request_address failed with "
            f"{type(error).__name__}: {error}",
        )

    def _request_address(self, pool_id: str, pick: str | None, n: int) -> None:
        if self._ambiguous(pool_id):
            return
        pool = self.live.get(pool_id)
        if pick == "malformed":
            text = MALFORMED_ADDRESSES[n % len(MALFORMED_ADDRESSES)]
            error = self._attempt(self.ipam.request_address, pool_id, text)
            self._expect_error(C22, InvalidParameterError, error)
            return
        if pool is None:
            error = self._attempt(self.ipam.request_address, pool_id, None)
            self._expect_error(
                C13,
                (BadPoolError, InvalidPoolError) if pool_id in MADE_UP_IDS else BadPoolError,
                error,
            )
            return
        if pick is None:
            self._dynamic(pool)
        else:
            self._specific(pool, self._resolve(pool, pick, n))

    def _never_issued(self, call: str, pool_id: str) -> None:
        if call == "release_pool":
            self._release_pool(pool_id)
        elif call == "request_address":
            self._request_address(pool_id, None, 0)
        else:
            self._release_address(pool_id, "free", 0)

    def _exhaust(self, pool_id: str) -> None:
        if self._ambiguous(pool_id):
            return
        pool = self.live.get(pool_id)
        if pool is None:
            self._request_address(pool_id, None, 0)
            return
        # Bounded: large pools only get a few more addresses.
        for _ in range(64):
            self._dynamic(pool)
            if pool.exhausted:
                return

    def _release_then_request(self, pool_id: str, n: int, by_name: bool, count: int) -> None:
        """Release a held address, ask for it by name, then request ``count`` more.

        Free lists, cursors and "last released" caches go stale right here.
        """
        if self._ambiguous(pool_id) or pool_id not in self.live:
            return
        pool = self.live[pool_id]
        dynamic = self.target.has(Feature.DYNAMIC_ADDRESSES)
        by_name = by_name and self.target.has(Feature.SPECIFIC_ADDRESSES)
        if not pool.held:
            # Take one, so that there is something to release next time.
            if dynamic:
                self._dynamic(pool)
            elif by_name:
                self._specific(pool, self._resolve(pool, "free", n))
            return
        address = sorted(pool.held)[n % len(pool.held)]
        self._release(pool, address)
        if by_name:
            self._specific(pool, address)
        for _ in range(count if dynamic else 0):
            self._dynamic(pool)

    def _refill(self, pool_id: str) -> None:
        """Fill the pool (a bounded part of a large one), release it all, fill it again."""
        if self._ambiguous(pool_id) or pool_id not in self.live:
            return
        pool = self.live[pool_id]
        self._exhaust(pool_id)
        for address in sorted(pool.held):
            self._release(pool, address)
        self._exhaust(pool_id)

    def _release_pool_then_request(self, pool_id: str, choose: bool, count: int) -> list[str]:
        """Release a pool, then request it again, or let the driver choose ``count`` pools.

        Per-pool indexes, cursors and the rotation of chosen pools go stale here.
        """
        pool = self.live.get(pool_id)
        if self._ambiguous(pool_id) or pool is None:
            return [NO_POOL] * count
        self._release_pool(pool_id)
        space, v6 = pool.space, pool.network.version == 6
        if choose or not self.target.has(Feature.EXPLICIT_POOLS):
            if not self.target.has(Feature.CHOSEN_POOLS):
                return [NO_POOL] * count
            self._seen(["request_pool chosen after a release_pool"] * count)
            return [self._request_pool(PoolRequest(space, "", "", v6)) for _ in range(count)]
        again = PoolRequest(space, str(pool.network), str(pool.sub or ""), v6)
        return [self._request_pool(again)] + [NO_POOL] * (count - 1)

    def _attempt(self, call: Any, *args: Any) -> Exception | None:
        try:
            call(*args)
        except Exception as error:
            return error
        return None

    def _dynamic(self, pool: _Pool) -> None:
        self._seen(self._dynamic_situations(pool))
        if pool.since_release is not None:
            pool.since_release += 1
        try:
            interface, _ = self.ipam.request_address(pool.pool_id)
        except Exception as error:
            if isinstance(error, BadPoolError):
                raise self._vanished(pool, error) from error
            if pool.freed and self._exact(error, NoAvailableIPsError):
                raise self._fail(
                    C21,
                    f"released {min(pool.freed)}, yet request_address says nothing is free: "
                    f"{type(error).__name__}: {error}",
                ) from error
            free = free_count(pool.scope, pool.held)
            earlier = [
                a for a, p in self._handed(pool).items() if p is not pool and a in pool.scope
            ]
            if free > 2 or not self._exact(error, NoAvailableIPsError):
                twins = [t for t in self._twins(pool) if t.held] if free > 2 else []
                raise self._fail(
                    C03 if twins else C12 if free > 2 and earlier else C21,
                    f"{free} address(es) of {pool.scope} are free, yet request_address failed "
                    f"with {type(error).__name__}: {error}"
                    + (
                        f" (the same pool of {twins[0].space!r} holds {len(twins[0].held)})"
                        if twins
                        else ""
                    ),
                ) from error
            pool.exhausted = pool.filled = True
            pool.freed.clear()
            return
        address = self._check_interface(pool, interface, C14)
        if pool.sub is not None and address not in pool.sub:
            raise self._fail(C15, f"dynamic address {address} lies outside subpool {pool.sub}")
        if address in pool.held:
            raise self._fail(C17, f"handed out {address} again while it is held")
        if pool.exhausted:
            raise self._fail(
                C21,
                f"said {pool.scope} was exhausted, then handed out {address} "
                "with no release between",
            )
        self._granted_address(pool, address, dynamic=True)

    def _check_interface(self, pool: _Pool, interface: object, clause: str) -> Address:
        if not isinstance(interface, (IPv4Interface, IPv6Interface)):
            raise self._fail(clause, f"request_address must return an interface, got {interface!r}")
        if interface.ip not in pool.network:
            raise self._fail(C14, f"address {interface} lies outside pool {pool.network}")
        if interface.network.prefixlen != pool.network.prefixlen:
            raise self._fail(
                C16,
                f"address {interface} should carry the pool's prefix length "
                f"/{pool.network.prefixlen}",
            )
        return interface.ip

    def _specific(self, pool: _Pool, address: Address) -> None:
        self._seen(self._specific_situations(pool, address))
        try:
            interface, _ = self.ipam.request_address(pool.pool_id, str(address))
        except Exception as error:
            if isinstance(error, BadPoolError):
                raise self._vanished(pool, error) from error
            if address not in pool.network:
                self._expect_error(C20, IPOutOfRangeError, error)
            elif address in pool.held:
                self._expect_error(C19, IPAlreadyAllocatedError, error)
            elif (
                pool.sub is not None
                and address not in pool.sub
                and self._exact(error, IPOutOfRangeError)
            ):
                pass  # a driver may confine specific addresses to the subpool
            elif (
                not may_be_reserved(pool.network, address)
                or address in self._handed(pool)
                or not self._exact(error, RESERVED_ERRORS)
            ):
                raise self._refused_free(pool, address, error) from error
            return
        if address not in pool.network:
            self._expect_error(C20, IPOutOfRangeError, None, interface)
        if address in pool.held:
            self._expect_error(C19, IPAlreadyAllocatedError, None, interface)
        got = self._check_interface(pool, interface, C18)
        if got != address:
            raise self._fail(C18, f"asked for {address}, got {interface}")
        if pool.exhausted and address in pool.scope and not may_be_reserved(pool.network, address):
            raise self._fail(C21, f"said {pool.scope} was exhausted, yet {address} was free")
        self._granted_address(pool, address, dynamic=False)

    def _release_address(self, pool_id: str, pick: str, n: int) -> None:
        if self._ambiguous(pool_id):
            return
        pool = self.live.get(pool_id)
        if pick == "malformed":
            text = MALFORMED_ADDRESSES[n % len(MALFORMED_ADDRESSES)]
            self._expect_error(
                C22, InvalidParameterError, self._attempt(self.ipam.release_address, pool_id, text)
            )
            return
        if pool is None:
            address = address_at(IPv4Network("10.0.0.0/24"), n)
            error = self._attempt(self.ipam.release_address, pool_id, str(address))
            self._expect_error(
                C13,
                (BadPoolError, InvalidPoolError) if pool_id in MADE_UP_IDS else BadPoolError,
                error,
            )
            return
        self._release(pool, self._resolve(pool, pick, n))

    def _release(self, pool: _Pool, address: Address) -> None:
        self._seen(["release_address " + ("held" if address in pool.held else "not held")])
        error = self._attempt(self.ipam.release_address, pool.pool_id, str(address))
        if isinstance(error, BadPoolError):
            raise self._vanished(pool, error)
        if address not in pool.network:
            self._expect_error(C20, IPOutOfRangeError, error)
        elif address in pool.held:
            if error is not None:
                raise self._fail(
                    C21,
                    f"releasing held address {address} failed with {type(error).__name__}: {error}",
                )
            pool.held.discard(address)
            pool.renamed.discard(address)
            pool.released.add(address)
            pool.since_release = 0
            pool.exhausted = False
            if address in pool.scope:
                pool.freed.add(address)

    # -- invariants -------------------------------------------------------------

    def _spaces_unchanged(self) -> None:
        # Asked of the driver itself: a query after every step would crowd the program.
        spaces = self.ipam.driver.get_default_address_spaces()
        if tuple(spaces) != self.spaces:
            raise self._fail(C01, f"default address spaces changed from {self.spaces} to {spaces}")

    def _held_still_held(self) -> None:
        self.steps += 1
        for pool in list(self.live.values()):
            if not pool.held:
                continue
            held = sorted(pool.held)
            address = held[self.steps % len(held)]
            try:
                interface, _ = self.ipam.request_address(pool.pool_id, str(address))
            except Exception as error:
                if isinstance(error, BadPoolError):
                    raise self._vanished(pool, error) from error
                self._expect_error(C19, IPAlreadyAllocatedError, error)
                continue
            self._expect_error(C19, IPAlreadyAllocatedError, None, interface)


def machine_for(target: Target) -> type[_Machine]:
    """Return the state machine class for ``target``.

    Instantiating it (``state = IpamMachine()``) builds a fresh driver, so the
    program hypothesis prints for a failure runs as it stands once
    ``IpamMachine = machine_for(target)`` is defined.
    """
    ids = Bundle("pools")
    numbers = st.integers(0, 2**16)
    spaces = [target.local_space, target.global_space]

    # Rules exist only for what the driver declares (hypothesis picks among rules
    # evenly, so each kind of call gets a rule of its own).
    class IpamMachine(_Machine):
        pools = Bundle("pools")

        @rule(target=pools, request=_pool_requests(target))
        @_step(NO_POOL)
        def request_pool(self, request: PoolRequest) -> Any:
            return self._request_pool(request)

        if target.has(Feature.SUB_POOLS):

            @rule(target=pools, request=_sub_pool_request(spaces, _networks(target)))
            @_step(NO_POOL)
            def request_pool_with_subpool(self, request: PoolRequest) -> Any:
                return self._request_pool(request)

        if target.has(Feature.EXPLICIT_POOLS):

            @rule(
                target=pools,
                pool_id=Bundle("pools"),
                how=st.sampled_from(("same", "supernet", "subnet", "other-space")),
            )
            @_step(NO_POOL)
            def request_pool_near(self, pool_id: str, how: str) -> Any:
                """Request a pool where one was granted (live or released)."""
                return self._near(pool_id, how)

        @rule(call=st.sampled_from(_POOL_ID_CALLS), pool_id=st.sampled_from(MADE_UP_IDS))
        @_step()
        def use_pool_id_never_issued(self, call: str, pool_id: str) -> None:
            self._never_issued(call, pool_id)

        @rule(pool_id=ids)
        @_step()
        def release_pool(self, pool_id: str) -> None:
            self._release_pool(pool_id)

        if target.has(Feature.DYNAMIC_ADDRESSES):

            @rule(pool_id=ids, live=_LIVE)
            @_step()
            def request_address(self, pool_id: str, live: int | None) -> None:
                self._request_address(self._turn(pool_id, live), None, 0)

            @rule(pool_id=ids, live=_LIVE)
            @_step()
            def request_addresses_until_exhausted(self, pool_id: str, live: int | None) -> None:
                self._exhaust(self._turn(pool_id, live, "fill"))

            @rule(pool_id=ids, live=_LIVE)
            @_step()
            def fill_release_all_fill_again(self, pool_id: str, live: int | None) -> None:
                self._refill(self._turn(pool_id, live, "fill"))

        if target.has(Feature.DYNAMIC_ADDRESSES) or target.has(Feature.SPECIFIC_ADDRESSES):

            @rule(
                pool_id=ids, live=_LIVE, n=numbers, by_name=st.booleans(), count=st.integers(1, 3)
            )
            @_step()
            def release_then_request(
                self, pool_id: str, live: int | None, n: int, by_name: bool, count: int
            ) -> None:
                pool_id = self._turn(pool_id, live, "release-held")
                self._release_then_request(pool_id, n, by_name, count)

        if target.has(Feature.CHOSEN_POOLS) or target.has(Feature.EXPLICIT_POOLS):

            @rule(
                target=pools,
                pool_id=ids,
                live=_LIVE,
                choose=st.booleans(),
                count=st.integers(1, 3),
            )
            @_step(NO_POOL)
            def release_pool_then_request(
                self, pool_id: str, live: int | None, choose: bool, count: int
            ) -> Any:
                pool_id = self._turn(pool_id, live, "chosen" if choose else None)
                return multiple(*self._release_pool_then_request(pool_id, choose, count))

        @rule(pool_id=ids, live=_LIVE, address=_address_picks(target, release=False), n=numbers)
        @_step()
        def request_specific_address(
            self, pool_id: str, live: int | None, address: str, n: int
        ) -> None:
            self._request_address(self._turn(pool_id, live, address), address, n)

        @rule(pool_id=ids, live=_LIVE, address=_address_picks(target, release=True), n=numbers)
        @_step()
        def release_address(self, pool_id: str, live: int | None, address: str, n: int) -> None:
            self._release_address(self._turn(pool_id, live, address), address, n)

        @invariant()
        @_step()
        def default_address_spaces_unchanged(self) -> None:
            self._spaces_unchanged()

        if target.has(Feature.SPECIFIC_ADDRESSES):

            @invariant()
            @_step()
            def held_addresses_still_held(self) -> None:
                self._held_still_held()

    IpamMachine.target = target
    IpamMachine.tally = Counter()
    return IpamMachine
