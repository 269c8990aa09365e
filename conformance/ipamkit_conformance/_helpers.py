"""What the suite's tests use: markers, checks and a source of fresh pools."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest
from ipamkit import Feature, Network, PoolResult
from ipamkit.errors import IpamError

from ipamkit_conformance._checks import ClauseViolation, clause_id, describe, violation
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._report import missing_text
from ipamkit_conformance._target import Target

__all__ = ["Checker", "Pools", "clause", "needs"]

# Ranges the suite's own explicit pools come from: unlikely to be held by anyone
# else in a shared driver, and outside the ranges drivers choose from.
_V4_HOME = IPv4Network("10.208.0.0/12")
_V6_HOME = IPv6Network("fd42:c0::/32")
#: Each network the suite asks for starts a block of this size of its home.
_V4_BLOCK, _V6_BLOCK = 20, 48
_counter = itertools.count()


def clause(number: str) -> pytest.MarkDecorator:
    """Mark a test as checking clause ``number`` (``"C07"``)."""
    return pytest.mark.ipam_clause(clause_id(number))


def needs(*features: Feature) -> pytest.MarkDecorator:
    """Mark a test (or one parameter set) as needing ``features`` beyond its clause's."""
    return pytest.mark.ipam_needs(*features)


class Checker:
    """Checks for one test; a failure names the test's clause and shows the calls made."""

    def __init__(self, target: Target, ipam: Recorder, clause: str, exact: bool) -> None:
        self.target = target
        self.ipam = ipam
        self.clause = clause
        #: Whether errors must be the exact well-known classes.
        self.exact = exact

    def that(self, condition: bool, message: str) -> None:
        """Fail with ``message`` unless ``condition`` holds."""
        if not condition:
            raise self.violation(message)

    def violation(self, message: str) -> ClauseViolation:
        """The error for the test's clause broken as ``message`` says."""
        return violation(self.clause, message, self.ipam)

    def error(
        self,
        expected: type[IpamError] | tuple[type[IpamError], ...],
        call: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Exception:
        """Call ``call``; it must raise ``expected`` (any IpamError unless exact)."""
        try:
            result = call(*args, **kwargs)
        except Exception as error:
            ok = isinstance(error, expected if self.exact else IpamError)
            self.that(
                ok,
                f"expected {describe(expected) if self.exact else 'an IpamError'}, "
                f"got {type(error).__name__}: {error}",
            )
            return error
        raise self.violation(f"expected {describe(expected)}, got {result!r}")


class Pools:
    """Fresh pools for one test, from ranges no other test uses."""

    def __init__(self, target: Target, ipam: Recorder) -> None:
        self.target = target
        self.ipam = ipam

    def network(self, prefixlen: int, v6: bool = False) -> Network:
        """Return a network no other test of this run asks for."""
        home: Network = _V6_HOME if v6 else _V4_HOME
        block = _V6_BLOCK if v6 else _V4_BLOCK
        if not block <= prefixlen <= home.max_prefixlen:
            raise ValueError(f"the suite's pools are /{block} or smaller, not /{prefixlen}")
        index = next(_counter) % 2 ** (block - home.prefixlen)
        start = int(home.network_address) + (index << (home.max_prefixlen - block))
        return IPv6Network((start, prefixlen)) if v6 else IPv4Network((start, prefixlen))

    def explicit(
        self, prefixlen: int = 24, *, v6: bool = False, sub: Callable[[Network], str] | None = None
    ) -> PoolResult:
        """Request a fresh explicit pool in the local space (skips without the features)."""
        if not self.target.has(Feature.EXPLICIT_POOLS):
            pytest.skip(missing_text(["explicit_pools"]))
        if v6 and not self.target.has(Feature.IPV6):
            pytest.skip(missing_text(["ipv6"]))
        network = self.network(prefixlen, v6)
        sub_pool = sub(network) if sub is not None else ""
        return self.ipam.request_pool(self.target.local_space, str(network), sub_pool, None, v6)

    def any(self) -> PoolResult:
        """Request a pool of any kind the driver offers (explicit, else chosen)."""
        if self.target.has(Feature.EXPLICIT_POOLS):
            return self.explicit()
        if self.target.has(Feature.CHOSEN_POOLS):
            return self.ipam.request_pool(self.target.local_space)
        pytest.skip(
            "needs feature explicit_pools or chosen_pools to get a pool "
            "(the driver declares neither)"
        )

    def exhaust(self, pool_id: str, limit: int) -> Iterator[Any]:
        """Request dynamic addresses until the driver says none is left (at most ``limit``)."""
        for _ in range(limit):
            try:
                interface, _ = self.ipam.request_address(pool_id)
            except IpamError:
                return
            yield interface
