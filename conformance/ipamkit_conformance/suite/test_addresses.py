"""Addresses: C14-C23."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface, ip_network
from typing import Any

import pytest
from ipamkit import ALLOC_SERIAL_PREFIX, Feature, Network
from ipamkit.errors import (
    InvalidParameterError,
    IPAlreadyAllocatedError,
    IpamError,
    IPOutOfRangeError,
    NoAvailableIPsError,
)

from ipamkit_conformance._helpers import Checker, Pools, clause, needs
from ipamkit_conformance._networks import (
    MALFORMED_ADDRESSES,
    RESERVED_ERRORS,
    may_be_reserved,
    other_family,
)
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target

_V6 = pytest.param(True, id="ipv6", marks=needs(Feature.IPV6))
_V4 = pytest.param(False, id="ipv4")


@clause("C14")
@pytest.mark.parametrize("v6", [_V4, _V6])
def test_addresses_in_pool(ipam_pools: Pools, ipam_check: Checker, v6: bool) -> None:
    pool = ipam_pools.explicit(64 if v6 else 24, v6=v6)
    network: Network = pool.pool
    for interface in ipam_pools.exhaust(pool.pool_id, 8):
        ipam_check.that(
            isinstance(interface, (IPv4Interface, IPv6Interface)) and interface.ip in network,
            f"{interface!r} is not an address of {pool.pool}",
        )


@clause("C15")
def test_dynamic_addresses_in_subpool(ipam_pools: Pools, ipam_check: Checker) -> None:
    pool = ipam_pools.explicit(24, sub=lambda n: str(list(n.subnets(new_prefix=28))[5]))
    sub = ip_network((int(pool.pool.network_address) + 5 * 16, 28))
    got = list(ipam_pools.exhaust(pool.pool_id, 32))
    ipam_check.that(
        len(got) >= sub.num_addresses - 2, f"only {len(got)} addresses from subpool {sub}"
    )
    outside = [str(i) for i in got if i.ip not in sub]
    ipam_check.that(not outside, f"addresses outside subpool {sub}: {outside}")


@clause("C16")
@pytest.mark.parametrize(
    "sub",
    [
        pytest.param(False, id="pool"),
        pytest.param(True, id="subpool", marks=needs(Feature.SUB_POOLS)),
    ],
)
def test_prefix_length(ipam_pools: Pools, ipam_check: Checker, sub: bool) -> None:
    pool = ipam_pools.explicit(
        20, sub=(lambda n: str(next(n.subnets(new_prefix=26)))) if sub else None
    )
    for interface in ipam_pools.exhaust(pool.pool_id, 3):
        ipam_check.that(
            interface.network.prefixlen == 20,
            f"{interface} should carry the pool's prefix length /20",
        )


@clause("C17")
@pytest.mark.parametrize("v6", [_V4, _V6])
def test_no_duplicate_addresses(ipam_pools: Pools, ipam_check: Checker, v6: bool) -> None:
    pool = ipam_pools.explicit(124 if v6 else 28, v6=v6)
    got = [i.ip for i in ipam_pools.exhaust(pool.pool_id, 32)]
    duplicates = sorted({str(a) for a in got if got.count(a) > 1})
    ipam_check.that(not duplicates, f"handed out twice: {duplicates}")
    ipam_check.that(
        len(got) >= pool.pool.num_addresses - 2, f"only {len(got)} addresses from {pool.pool}"
    )


@clause("C17")
@needs(Feature.SPECIFIC_ADDRESSES)
def test_no_duplicates_after_specific_requests(
    ipam_pools: Pools, ipam: Recorder, ipam_check: Checker
) -> None:
    pool = ipam_pools.explicit(28)
    wanted = {pool.pool.network_address + i for i in (1, 2, 7, 13, 14)}
    for address in sorted(wanted):
        ipam.request_address(pool.pool_id, str(address))
    again = sorted(str(i.ip) for i in ipam_pools.exhaust(pool.pool_id, 32) if i.ip in wanted)
    ipam_check.that(not again, f"handed out again while held: {again}")


@clause("C17")
@pytest.mark.parametrize(
    "then",
    [
        pytest.param("dynamic", marks=needs(Feature.DYNAMIC_ADDRESSES)),
        pytest.param("by-name", marks=needs(Feature.DYNAMIC_ADDRESSES, Feature.SPECIFIC_ADDRESSES)),
    ],
)
def test_no_duplicates_after_a_release(
    ipam_pools: Pools, ipam: Recorder, ipam_check: Checker, then: str
) -> None:
    # Free lists, "last released" caches and cursors go stale right after a release,
    # and most of all when the released address is then asked for by name.
    pool = ipam_pools.explicit(28)
    got = [i.ip for i in ipam_pools.exhaust(pool.pool_id, 3)]
    ipam_check.that(len(got) == 3, f"only {len(got)} addresses from {pool.pool}")
    released = got[1]
    ipam.release_address(pool.pool_id, str(released))
    held = {got[0], got[2]}
    if then == "by-name":
        try:
            ipam.request_address(pool.pool_id, str(released))
        except IpamError:
            pytest.skip("a released address was refused by name: that breaks C21, not this one")
        held.add(released)
    for interface in ipam_pools.exhaust(pool.pool_id, 4):
        ipam_check.that(
            interface.ip not in held,
            f"handed out {interface.ip} again while it is held (after releasing {released}"
            + (" and requesting it by name)" if then == "by-name" else ")"),
        )
        held.add(interface.ip)


#: Pool to the offsets of the addresses asked for by name, in order, in one pool:
#: the edges of pools, the smallest pools, and both sides of 2**64 in wide IPv6 pools.
_SPECIFIC = {
    "ipv4-middle": (24, False, (100,)),
    "ipv4-edges": (24, False, (0, 1, 254, 255)),
    "ipv4-slash-31": (31, False, (0, 1)),
    "ipv4-slash-32": (32, False, (0,)),
    "ipv6-slash-64-edges": (64, True, (0, 1, 2**64 - 2, 2**64 - 1)),
    "ipv6-slash-127": (127, True, (0, 1)),
    "ipv6-slash-128": (128, True, (0,)),
    "ipv6-slash-48-across-2**64": (48, True, (1, 2**64 + 1, 2**64 - 1, 2**64)),
    "ipv6-slash-48-high": (48, True, (2**79 + 5, 2**80 - 1)),
}


@clause("C18")
@pytest.mark.parametrize(
    "case",
    [pytest.param(k, marks=needs(Feature.IPV6)) if v[1] else k for k, v in _SPECIFIC.items()],
)
def test_specific_address(
    ipam_pools: Pools, ipam: Recorder, ipam_check: Checker, case: str
) -> None:
    prefixlen, v6, offsets = _SPECIFIC[case]
    pool = ipam_pools.explicit(prefixlen, v6=v6)
    for offset in offsets:
        address = pool.pool.network_address + offset
        try:
            interface, _ = ipam.request_address(pool.pool_id, str(address))
        except IpamError as error:
            reserved = may_be_reserved(pool.pool, address) and (
                not ipam_check.exact or isinstance(error, RESERVED_ERRORS)
            )
            ipam_check.that(
                reserved,
                f"{address} is free in {pool.pool}, yet request_address failed with "
                f"{type(error).__name__}: {error}"
                + (
                    " (a reserved address is refused with ForbiddenError or UnavailableError)"
                    if may_be_reserved(pool.pool, address)
                    else ""
                ),
            )
            continue
        ipam_check.that(
            interface is not None and interface.ip == address,
            f"asked for {address} in {pool.pool}, got {interface}",
        )


@clause("C19")
@pytest.mark.parametrize(
    "full",
    [
        pytest.param(False, id="pool-not-full"),
        pytest.param(True, id="pool-full", marks=needs(Feature.DYNAMIC_ADDRESSES)),
    ],
)
def test_held_address_refused(
    ipam_pools: Pools, ipam: Recorder, ipam_expect: Checker, full: bool
) -> None:
    pool = ipam_pools.explicit(29)
    address = pool.pool.network_address + 3
    ipam.request_address(pool.pool_id, str(address))
    if full:
        list(ipam_pools.exhaust(pool.pool_id, 16))
    ipam_expect.error(IPAlreadyAllocatedError, ipam.request_address, pool.pool_id, str(address))


_OUTSIDE = {
    "below": lambda n: n.network_address - 1,
    "above": lambda n: n.broadcast_address + 1,
    "other-family": other_family,
}


@clause("C20")
@pytest.mark.parametrize("where", sorted(_OUTSIDE))
@pytest.mark.parametrize(
    "call",
    [pytest.param("request_address", marks=needs(Feature.SPECIFIC_ADDRESSES)), "release_address"],
)
def test_address_out_of_range(
    ipam_pools: Pools, ipam: Recorder, ipam_expect: Checker, call: str, where: str
) -> None:
    pool = ipam_pools.any()
    address = _OUTSIDE[where](pool.pool)
    ipam_expect.error(IPOutOfRangeError, getattr(ipam, call), pool.pool_id, str(address))


@clause("C21")
@pytest.mark.parametrize("v6", [_V4, _V6])
def test_exhaustion_and_release(
    ipam_pools: Pools, ipam: Recorder, ipam_expect: Checker, v6: bool
) -> None:
    pool = ipam_pools.explicit(125 if v6 else 29, v6=v6)
    got = list(ipam_pools.exhaust(pool.pool_id, 16))
    ipam_expect.that(
        len(got) >= pool.pool.num_addresses - 2, f"only {len(got)} addresses from {pool.pool}"
    )
    ipam_expect.error(NoAvailableIPsError, ipam.request_address, pool.pool_id)
    ipam.release_address(pool.pool_id, str(got[0].ip))
    interface, _ = ipam.request_address(pool.pool_id)
    ipam_expect.that(
        interface is not None and interface.ip == got[0].ip,
        f"released {got[0].ip}, the only free address, got {interface}",
    )


@clause("C21")
@needs(Feature.SPECIFIC_ADDRESSES)
def test_a_released_address_can_be_requested_by_name(
    ipam_pools: Pools, ipam: Recorder, ipam_check: Checker
) -> None:
    pool = ipam_pools.explicit(28)
    address = pool.pool.network_address + 5
    ipam.request_address(pool.pool_id, str(address))
    ipam.release_address(pool.pool_id, str(address))
    try:
        interface, _ = ipam.request_address(pool.pool_id, str(address))
    except IpamError as error:
        ipam_check.that(
            False,
            f"released {address}, then requesting it by name failed with "
            f"{type(error).__name__}: {error}",
        )
        return
    ipam_check.that(
        interface is not None and interface.ip == address, f"asked for {address}, got {interface}"
    )


@clause("C21")
@pytest.mark.parametrize("v6", [_V4, _V6])
def test_fill_release_all_fill_again(
    ipam_pools: Pools, ipam: Recorder, ipam_check: Checker, v6: bool
) -> None:
    # A cursor that never goes back, or a count of free addresses that drifts,
    # shows on the second fill.
    pool = ipam_pools.explicit(125 if v6 else 29, v6=v6)
    first = [i.ip for i in ipam_pools.exhaust(pool.pool_id, 16)]
    for address in first:
        ipam.release_address(pool.pool_id, str(address))
    second = [i.ip for i in ipam_pools.exhaust(pool.pool_id, 16)]
    if len(set(second)) < len(second):
        pytest.skip("the second fill handed an address out twice: that breaks C17, not this one")
    ipam_check.that(
        len(second) == len(first),
        f"the first fill of {pool.pool} gave {len(first)} addresses; after releasing them "
        f"all, the second gave {len(second)}: {sorted(map(str, second))}",
    )


@clause("C22")
@pytest.mark.parametrize("text", MALFORMED_ADDRESSES)
@pytest.mark.parametrize("call", ["request_address", "release_address"])
def test_malformed_address(
    ipam_pools: Pools, ipam: Recorder, ipam_expect: Checker, call: str, text: str
) -> None:
    pool = ipam_pools.any()
    ipam_expect.error(InvalidParameterError, getattr(ipam, call), pool.pool_id, text)


#: The smallest pool that covers the IPv4-mapped IPv6 addresses (``::ffff:0:0/96``, its
#: upper half).
_COVERS_MAPPED = "::fffe:0:0/95"


@clause("C22")
@pytest.mark.parametrize(
    "v6",
    [
        pytest.param(False, id="ipv4-pool"),
        pytest.param(
            True,
            id="ipv6-pool-covering-them",
            marks=needs(Feature.IPV6, Feature.EXPLICIT_POOLS),
        ),
    ],
)
@pytest.mark.parametrize("call", ["request_address", "release_address"])
def test_ipv4_mapped_address(
    ipam_target: Target,
    ipam_pools: Pools,
    ipam: Recorder,
    ipam_expect: Checker,
    call: str,
    v6: bool,
) -> None:
    if v6:
        pool_id = ipam.request_pool(ipam_target.local_space, _COVERS_MAPPED, v6=True).pool_id
        mapped = ["::ffff:0:0", "::ffff:10.0.0.1", "::ffff:255.255.255.255"]
    else:
        # The IPv4 address it maps lies in the pool: a driver that reads one as the
        # other takes or frees an address of the pool.
        pool = ipam_pools.any()
        pool_id, mapped = pool.pool_id, [f"::ffff:{pool.pool.network_address + 1}"]
    for address in mapped:
        ipam_expect.error(InvalidParameterError, getattr(ipam, call), pool_id, address)


#: Where dynamic addresses are asked for next to the IPv4-mapped IPv6 addresses: a pool
#: and the subpools requested in turn (the last one reaches into them).
_NEXT_TO_MAPPED = {
    "pool": (_COVERS_MAPPED, ""),
    "subpool": ("::/64", _COVERS_MAPPED),
    # A serial cursor the pool's subpools share is left just below them by the first.
    "after-a-full-subpool-below": (_COVERS_MAPPED, "::fffe:ffff:fffc/126", _COVERS_MAPPED),
}


@clause("C22")
@needs(Feature.IPV6, Feature.EXPLICIT_POOLS, Feature.DYNAMIC_ADDRESSES)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(k, marks=needs(Feature.SUB_POOLS)) if v[1] else k
        for k, v in _NEXT_TO_MAPPED.items()
    ],
)
def test_ipv4_mapped_addresses_never_handed_out(
    ipam_target: Target, ipam_pools: Pools, ipam: Recorder, ipam_check: Checker, case: str
) -> None:
    pool, first, *then = _NEXT_TO_MAPPED[case]
    space = ipam_target.local_space
    pool_id = ipam.request_pool(space, pool, first, None, True).pool_id
    handed: list[tuple[str, Any]] = []
    if then:
        handed += [(pool_id, i.ip) for i in ipam_pools.exhaust(pool_id, 8)]
        try:
            pool_id = ipam.request_pool(space, pool, then[0], None, True).pool_id
        except IpamError:
            pool_id = ""  # one subpool of a pool at a time: no cursor reaches the second
    serial = {**ipam_target.address_options, ALLOC_SERIAL_PREFIX: "true"}
    for options in (serial, None) if pool_id else ():
        try:
            interface, _ = ipam.request_address(pool_id, None, options)
        except IpamError as error:
            pytest.skip(
                f"{pool} gave no address ({type(error).__name__}: {error}): that breaks "
                "C21, not this one"
            )
        handed.append((pool_id, getattr(interface, "ip", interface)))
    for owner, address in handed:
        ipam_check.that(
            getattr(address, "ipv4_mapped", None) is None,
            f"handed out {address}, an IPv4-mapped IPv6 address, which no call accepts",
        )
        try:
            ipam.release_address(owner, str(address))
        except IpamError as error:
            raise ipam_check.violation(
                f"handed out {address}, then release_address refused it: "
                f"{type(error).__name__}: {error}"
            ) from None


_WRONG_TYPES: dict[str, tuple[bool, Any]] = {
    "request_pool-address_space": (False, lambda ipam, t, p: ipam.request_pool(1)),
    "request_pool-pool": (False, lambda ipam, t, p: ipam.request_pool(t.local_space, 10)),
    "request_pool-v6": (False, lambda ipam, t, p: ipam.request_pool(t.local_space, v6="yes")),
    "request_pool-options": (
        False,
        lambda ipam, t, p: ipam.request_pool(t.local_space, options=[1]),
    ),
    "release_pool-pool_id": (False, lambda ipam, t, p: ipam.release_pool(1)),
    "request_address-pool_id": (False, lambda ipam, t, p: ipam.request_address(1)),
    "release_address-pool_id": (False, lambda ipam, t, p: ipam.release_address(1, "10.0.0.1")),
    "request_address-address": (True, lambda ipam, t, p: ipam.request_address(p, 1.5)),
    "request_address-options": (True, lambda ipam, t, p: ipam.request_address(p, None, {"k": 1})),
    "release_address-address": (True, lambda ipam, t, p: ipam.release_address(p, None)),
}


@clause("C23")
@pytest.mark.parametrize("case", sorted(_WRONG_TYPES))
def test_argument_types(
    ipam_target: Target, ipam: Recorder, ipam_pools: Pools, ipam_check: Checker, case: str
) -> None:
    wants_pool, call = _WRONG_TYPES[case]
    pool_id = ipam_pools.any().pool_id if wants_pool else ""
    try:
        call(ipam, ipam_target, pool_id)
    except TypeError:
        return
    except IpamError as error:
        ipam_check.that(False, f"expected TypeError, got {type(error).__name__}: {error}")
    ipam_check.that(False, "expected TypeError, the call succeeded")
