"""Feature probing: a few harmless calls tell what a driver that cannot declare offers.

Every pool probed comes from the suite's own ranges and everything granted is
given back before the run starts, so probing a plugin in use takes nothing from
anyone. Each verdict says which call decided it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Network, ip_address
from typing import Any

from ipamkit import Feature, Ipam, PoolReading
from ipamkit.errors import InvalidAddressSpaceError, PoolOverlapError

from ipamkit_conformance._recorder import Recorder

__all__ = ["Probe", "probe"]

# At the top of the suite's own ranges (10.208.0.0/12, fd42:c0::/32), far from
# the blocks its tests take from the bottom up.
_V4 = "10.223.255.0/24"
_V4_OTHER, _V4_SUB = "10.223.254.0/24", "10.223.254.128/25"
_V4_SPECIFIC = "10.223.255.77"
_V6 = "fd42:c0:ffff::/64"
_NO_SPACE = "ipamkit-probe-no-such-space"


@dataclass
class Probe:
    """What probing found, and how."""

    features: set[Feature] = field(default_factory=set)
    reading: PoolReading | None = None
    #: One line per verdict: the feature, yes or no, and the call that decided it.
    lines: list[str] = field(default_factory=list)


def _attempt(call: Callable[[], Any]) -> tuple[Any, Exception | None]:
    try:
        return call(), None
    except Exception as exc:
        return None, exc


def _said(exc: Exception) -> str:
    return f"raised {type(exc).__name__}: {exc}"


def probe(driver: Ipam, local_space: str) -> Probe:
    """Probe ``driver`` in its local address space; give back all it granted."""
    ipam = Recorder(driver, "")
    found = Probe()

    def verdict(feature: Feature | str, present: bool, how: str) -> None:
        if present and isinstance(feature, Feature):
            found.features.add(feature)
        name = feature.value if isinstance(feature, Feature) else feature
        found.lines.append(f"{name}: {'yes' if present else 'no'} ({how})")

    try:
        _probe(ipam, local_space, verdict, found)
    finally:
        ipam.cleanup()
    verdict(
        "thread_safe",
        False,
        "not probed: no harmless call can tell; declare it with --feature thread_safe",
    )
    return found


def _probe(
    ipam: Recorder,
    space: str,
    verdict: Callable[[Feature | str, bool, str], None],
    found: Probe,
) -> None:
    call = f"request_pool({space!r}, {_V4!r})"
    result, error = _attempt(lambda: ipam.request_pool(space, _V4))
    verdict(
        Feature.EXPLICIT_POOLS,
        error is None,
        f"{call} " + (_said(error) if error else "was granted"),
    )
    exact = []
    if result is not None:
        pool_id = result.pool_id
        _, again = _attempt(lambda: ipam.request_pool(space, _V4))
        found.reading = PoolReading.REFCOUNTED if again is None else PoolReading.EXCLUSIVE
        found.lines.append(
            f"pool reading: {found.reading.value} (the same {call} again "
            + (_said(again) if again else "was granted")
            + ")"
        )
        if again is not None:
            exact.append(isinstance(again, PoolOverlapError))
        interface, error = _attempt(lambda: ipam.request_address(pool_id))
        got = getattr(interface, "address", None)
        verdict(
            Feature.DYNAMIC_ADDRESSES,
            error is None and got is not None,
            "request_address without an address " + (_said(error) if error else f"gave {got}"),
        )
        interface, error = _attempt(lambda: ipam.request_address(pool_id, _V4_SPECIFIC))
        got = getattr(interface, "address", None)
        verdict(
            Feature.SPECIFIC_ADDRESSES,
            error is None and getattr(got, "ip", None) == ip_address(_V4_SPECIFIC),
            f"request_address of {_V4_SPECIFIC} " + (_said(error) if error else f"gave {got}"),
        )
        _, error = _attempt(lambda: ipam.request_pool(space, _V4_OTHER, _V4_SUB))
        verdict(
            Feature.SUB_POOLS,
            error is None,
            f"request_pool({space!r}, {_V4_OTHER!r}, {_V4_SUB!r}) "
            + (_said(error) if error else "was granted"),
        )
        _, error = _attempt(lambda: ipam.request_pool(space, _V6, v6=True))
        verdict(
            Feature.IPV6,
            error is None,
            f"request_pool({space!r}, {_V6!r}, v6=True) "
            + (_said(error) if error else "was granted"),
        )
    chosen, error = _attempt(lambda: ipam.request_pool(space))
    verdict(
        Feature.CHOSEN_POOLS,
        error is None,
        f"request_pool({space!r}) " + (_said(error) if error else f"chose {chosen.pool}"),
    )
    chosen, error = _attempt(lambda: ipam.request_pool(space, v6=True))
    is_v6 = error is None and isinstance(chosen.pool, IPv6Network)
    verdict(
        Feature.CHOSEN_IPV6_POOLS,
        is_v6,
        f"request_pool({space!r}, v6=True) " + (_said(error) if error else f"chose {chosen.pool}"),
    )
    _, error = _attempt(lambda: ipam.request_pool(_NO_SPACE, _V4))
    exact.append(isinstance(error, InvalidAddressSpaceError))
    verdict(
        Feature.EXACT_ERRORS,
        all(exact),
        f"request_pool({_NO_SPACE!r}, ...) "
        + (_said(error) if error else "was granted")
        + (
            "; a repeated explicit pool raised "
            + ("PoolOverlapError" if exact[0] else "another class")
            if len(exact) > 1
            else ""
        ),
    )
