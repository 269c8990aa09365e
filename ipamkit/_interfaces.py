"""Build ``ipaddress`` interface objects for the addresses of a known pool, fast.

``IPv4Interface((value, prefixlen))`` re-parses and rebuilds the network on every
call (about 2.5 µs), several times the cost of an allocation. For a pool whose
network object already exists, the same object can be filled in directly. That
relies on the attributes ``ipaddress`` keeps, so the result is compared with the
public constructor once at import and the public constructor is used if they
ever differ.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

from ipamkit._contract import Interface, Network

__all__ = ["interface_maker"]


def _direct_maker(network: Network) -> Callable[[int], Interface]:
    new = object.__new__
    netmask = network.netmask
    prefixlen = network.prefixlen
    if isinstance(network, IPv4Network):

        def make_v4(value: int) -> Interface:
            interface: Any = new(IPv4Interface)
            interface._ip = value
            interface.network = network
            interface.netmask = netmask
            interface._prefixlen = prefixlen
            return interface  # type: ignore[no-any-return]

        return make_v4

    def make_v6(value: int) -> Interface:
        interface: Any = new(IPv6Interface)
        interface._ip = value
        interface._scope_id = None
        interface.network = network
        interface.netmask = netmask
        interface._prefixlen = prefixlen
        return interface  # type: ignore[no-any-return]

    return make_v6


def _public_maker(network: Network) -> Callable[[int], Interface]:
    cls = IPv4Interface if isinstance(network, IPv4Network) else IPv6Interface
    prefixlen = network.prefixlen
    return lambda value: cls((value, prefixlen))


def _direct_is_faithful() -> bool:
    for text in ("10.1.2.3/16", "2001:db8::7/64"):
        expected: Interface = IPv6Interface(text) if ":" in text else IPv4Interface(text)
        network: Network = expected.network
        try:
            made = _direct_maker(network)(int(expected.ip))
        except Exception:  # a future ipaddress without these attributes
            return False
        if (
            type(made) is not type(expected)
            or made != expected
            or hash(made) != hash(expected)
            or str(made) != str(expected)
            or made.ip != expected.ip
            or made.network != expected.network
            or made.hostmask != expected.hostmask
        ):
            return False
    return True


_MAKER = _direct_maker if _direct_is_faithful() else _public_maker


def interface_maker(network: Network) -> Callable[[int], Interface]:
    """Return a function that maps an address's integer value to its interface in ``network``."""
    if not isinstance(network, (IPv4Network, IPv6Network)):
        raise TypeError(
            f"network must be an IPv4Network or IPv6Network, not {type(network).__name__}"
        )
    return _MAKER(network)
