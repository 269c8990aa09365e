"""Checks of call arguments shared by every driver.

A driver calls these at the edge of each public method so that a wrong Python
type is always a :class:`TypeError` and a bad value always the contract's error,
with a message that names what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from socket import AF_INET, AF_INET6, inet_pton

from ipamkit._contract import Address, Network
from ipamkit._interfaces import network_maker
from ipamkit.errors import InvalidParameterError, InvalidPoolError, InvalidSubPoolError

__all__ = [
    "check_bool",
    "check_options",
    "check_pool_request",
    "check_str",
    "parse_address",
    "parse_pool",
]

# Docker parses pools with Go's netip.ParsePrefix, which wants a plain decimal
# length; ipaddress also takes netmasks ("/255.0.0.0") and zones, so the shape is
# checked first.
_PREFIX_SHAPE = re.compile(r"[0-9A-Fa-f.:]+/(0|[1-9][0-9]{0,2})")
_ADDRESS_SHAPE = re.compile(r"[0-9A-Fa-f.:]+")
# Indexed by "is IPv6".
_NETWORK_MAKERS = (network_maker(4), network_maker(6))


def _type_name(value: object) -> str:
    return type(value).__name__


def check_str(value: object, name: str) -> str:
    """Return ``value`` if it is a :class:`str`, else raise :class:`TypeError`."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_type_name(value)}")
    return value


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is a :class:`bool`, else raise :class:`TypeError`."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {_type_name(value)}")
    return value


def check_options(options: object) -> Mapping[str, str]:
    """Return the options as a mapping (empty for None); every key and value must be a str."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"options must be a mapping of str to str or None, not {_type_name(options)}"
        )
    for key, value in options.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"options must map str to str, found {key!r}: {value!r} "
                f"({_type_name(key)} to {_type_name(value)})"
            )
    return options


def check_pool_request(
    address_space: object, pool: object, sub_pool: object, options: object, v6: object
) -> Mapping[str, str]:
    """Check the Python types of ``request_pool``'s arguments; return the options.

    Raises :class:`TypeError` naming the first argument of the wrong type. The
    values themselves are the driver's to judge (see :func:`parse_pool`).
    """
    check_str(address_space, "address_space")
    check_str(pool, "pool")
    check_str(sub_pool, "sub_pool")
    checked = check_options(options)
    check_bool(v6, "v6")
    return checked


def parse_pool(value: object, what: str = "pool") -> Network | None:
    """Parse a pool (``what="pool"``) or subpool (``what="subpool"``) in CIDR form.

    The empty string means "none" and gives None. Host bits are masked off, as
    Docker does. Anything that is not a plain ``address/length`` of either family
    (netmasks, zones, IPv4-mapped IPv6) is :class:`~ipamkit.errors.InvalidPoolError`
    or :class:`~ipamkit.errors.InvalidSubPoolError`.
    """
    if what not in ("pool", "subpool"):
        raise ValueError(f"what must be 'pool' or 'subpool', not {what!r}")
    text = check_str(value, "sub_pool" if what == "subpool" else "pool")
    if text == "":
        return None
    error = InvalidSubPoolError if what == "subpool" else InvalidPoolError
    if _PREFIX_SHAPE.fullmatch(text) is None:
        raise error(f"invalid address {what} {text!r}: expected address/length")
    network = _network(text)
    if network is None:
        raise error(f"invalid address {what} {text!r}: not an IPv4 or IPv6 prefix")
    if isinstance(network, IPv6Network) and network.network_address.ipv4_mapped is not None:
        raise error(f"invalid address {what} {text!r}: IPv4-mapped IPv6 is not allowed")
    return network


def _network(text: str) -> Network | None:
    # ip_network(text) costs 3 µs here, more than a whole pool request should.
    # inet_pton accepts exactly the addresses ipaddress accepts (zones aside,
    # which the shape check already excludes).
    address, _, length = text.partition("/")
    v6 = ":" in address
    prefixlen = int(length)
    bits = 128 if v6 else 32
    if prefixlen > bits:
        return None
    try:
        value = int.from_bytes(inet_pton(AF_INET6 if v6 else AF_INET, address), "big")
    except (OSError, ValueError):
        return None
    value &= ~((1 << (bits - prefixlen)) - 1)
    return _NETWORK_MAKERS[v6](value, prefixlen)


def parse_address(value: object, name: str = "address") -> Address:
    """Return ``value`` as an IPv4 or IPv6 address.

    Accepts address objects (an interface counts as its address) and plain
    address strings. Zones and IPv4-mapped IPv6 addresses are
    :class:`~ipamkit.errors.InvalidParameterError`: the first names no address of
    a pool, the second would silently change family.
    """
    if isinstance(value, (IPv4Address, IPv6Address)):
        # An interface is an address subclass; its ``ip`` is the address itself.
        address: Address = getattr(value, "ip", value)
    elif isinstance(value, str):
        if _ADDRESS_SHAPE.fullmatch(value) is None:
            raise InvalidParameterError(f"invalid {name} {value!r}: expected a plain IP address")
        try:
            address = ip_address(value)
        except ValueError:
            raise InvalidParameterError(
                f"invalid {name} {value!r}: not an IPv4 or IPv6 address"
            ) from None
    else:
        raise TypeError(
            f"{name} must be an IPv4Address, IPv6Address or str, not {_type_name(value)}"
        )
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            raise InvalidParameterError(f"invalid {name} {str(address)!r}: zones are not allowed")
        if address.ipv4_mapped is not None:
            raise InvalidParameterError(
                f"invalid {name} {str(address)!r}: IPv4-mapped IPv6 is not allowed, "
                f"use {address.ipv4_mapped}"
            )
    return address
