"""Build ``ipaddress`` interface and network objects from integers, fast.

``IPv4Interface((value, prefixlen))`` re-parses and rebuilds the network on every
call (about 2.5 µs), several times the cost of an allocation. For a pool whose
network object already exists, the same object can be filled in directly.
Networks are built the same way (``IPv4Network((value, prefixlen))`` costs
about 1.2 µs). That relies on the attributes ``ipaddress`` keeps, so the results
are compared with the public constructors once at import and the public
constructors are used if they ever differ. The same goes for reading an
address's integer value: ``int(address)`` goes through a Python-level
``__int__`` (about 70 ns, a tenth of a whole address request). Writing an
IPv4 address as text goes through ``socket.inet_ntoa``, which writes the same
dotted quad as ``str()`` without its Python-level join.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from operator import attrgetter
from socket import inet_ntoa
from typing import Any

from ipamkit._contract import Address, Interface, Network

__all__ = [
    "NETWORK_MAKERS",
    "address_text",
    "address_value",
    "interface_maker",
    "interface_text",
    "network_maker",
]


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


def _direct_network_maker(version: int) -> Callable[[int, int], Network]:
    new = object.__new__
    v6 = version == 6
    address_class, network_class = (IPv6Address, IPv6Network) if v6 else (IPv4Address, IPv4Network)
    bits = 128 if v6 else 32
    netmasks = [address_class((1 << bits) - (1 << (bits - length))) for length in range(bits + 1)]

    def make(value: int, prefixlen: int) -> Network:
        if prefixlen >= bits - 1:  # ipaddress gives these a hosts() of their own
            return network_class((value, prefixlen))
        address: Any = new(address_class)
        address._ip = value
        if v6:
            address._scope_id = None
        network: Any = new(network_class)
        network.network_address = address
        network.netmask = netmasks[prefixlen]
        network._prefixlen = prefixlen
        return network  # type: ignore[no-any-return]

    return make


def _public_network_maker(version: int) -> Callable[[int, int], Network]:
    cls = IPv6Network if version == 6 else IPv4Network
    return lambda value, prefixlen: cls((value, prefixlen))


def _direct_network_is_faithful() -> bool:
    for text in ("10.1.0.0/16", "0.0.0.0/0", "10.1.2.4/30", "2001:db8::/64", "::/0", "::/126"):
        expected: Network = IPv6Network(text) if ":" in text else IPv4Network(text)
        try:
            made = _direct_network_maker(expected.version)(
                int(expected.network_address), expected.prefixlen
            )
        except Exception:  # a future ipaddress without these attributes
            return False
        if (
            type(made) is not type(expected)
            or vars(made) != vars(expected)
            or made != expected
            or hash(made) != hash(expected)
            or str(made) != str(expected)
            or made.broadcast_address != expected.broadcast_address
            or made.num_addresses != expected.num_addresses
            or (made.num_addresses <= 4 and list(made.hosts()) != list(expected.hosts()))
        ):
            return False
    return True


_NETWORK_MAKER = _direct_network_maker if _direct_network_is_faithful() else _public_network_maker
#: The functions ``(value, prefixlen) -> network`` by IP version (see :func:`network_maker`).
NETWORK_MAKERS: Mapping[int, Callable[[int, int], Network]] = {
    4: _NETWORK_MAKER(4),
    6: _NETWORK_MAKER(6),
}


def network_maker(version: int) -> Callable[[int, int], Network]:
    """Return a function ``(value, prefixlen) -> network`` for IP ``version`` (4 or 6).

    The function trusts its arguments: ``value`` has no host bits and
    ``prefixlen`` is in range.
    """
    if version not in NETWORK_MAKERS:
        raise ValueError(f"version must be 4 or 6, not {version!r}")
    return NETWORK_MAKERS[version]


def _direct_value_is_faithful() -> bool:
    samples = (
        IPv4Address("10.1.2.3"),
        IPv4Interface("10.1.2.3/16"),
        IPv6Address("2001:db8::7"),
        IPv6Interface("2001:db8::7/64"),
    )
    try:
        return all(_DIRECT_VALUE(sample) == int(sample) for sample in samples)
    except AttributeError:  # a future ipaddress that keeps the value elsewhere
        return False


_DIRECT_VALUE: Callable[[Address | Interface], int] = attrgetter("_ip")

#: ``int(address)`` for an address or interface object, without a Python-level call.
address_value: Callable[[Address | Interface], int] = (
    _DIRECT_VALUE if _direct_value_is_faithful() else int
)


def address_text(address: Address) -> str:
    """``str(address)``; for IPv4 in a fifth of the time ``ipaddress`` takes."""
    if isinstance(address, IPv4Address):
        return inet_ntoa(address_value(address).to_bytes(4, "big"))
    return str(address)


def interface_text(interface: Interface) -> str:
    """``str(interface)``; for IPv4 in a fifth of the time ``ipaddress`` takes."""
    if isinstance(interface, IPv4Interface):
        text = inet_ntoa(address_value(interface).to_bytes(4, "big"))
        return f"{text}/{interface.network.prefixlen}"
    return str(interface)
