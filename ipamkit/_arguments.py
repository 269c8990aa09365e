"""Checks of call arguments shared by every driver.

A driver calls these at the edge of each public method so that a wrong Python
type is always a :class:`TypeError` and a bad value always the contract's error,
with a message that names what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address
from socket import AF_INET, AF_INET6, inet_pton

from ipamkit._contract import Address, Network
from ipamkit._interfaces import NETWORK_MAKERS
from ipamkit.errors import InvalidParameterError, InvalidPoolError, InvalidSubPoolError

__all__ = [
    "check_bool",
    "check_options",
    "check_pool_request",
    "check_str",
    "parse_address",
    "parse_pool",
    "parse_prefix",
]

# Docker parses pools with Go's netip.ParsePrefix, which wants a plain decimal
# length; ipaddress also takes netmasks ("/255.0.0.0") and zones. _LENGTHS holds
# every plain length, so one lookup both checks and reads it; the shape tells a
# malformed prefix from one that is well formed but not an address.
_LENGTHS = {str(length): length for length in range(129)}
_PREFIX_SHAPE = re.compile(r"[0-9A-Fa-f.:]+/(0|[1-9][0-9]{0,2})")
_ADDRESS_SHAPE = re.compile(r"[0-9A-Fa-f.:]+")
# The argument's name, and the error of a bad value, for each kind of prefix.
_WHATS = {"pool": ("pool", InvalidPoolError), "subpool": ("sub_pool", InvalidSubPoolError)}
#: The top 96 bits of every IPv4-mapped IPv6 address (``::ffff:0:0/96``): no call accepts
#: one, as a pool, a subpool or an address.
IPV4_MAPPED = 0xFFFF


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
    if isinstance(value, str) and not value and what in _WHATS:
        return None
    version, first, prefixlen, _ = parse_prefix(value, what)
    return NETWORK_MAKERS[version](first, prefixlen)


def parse_prefix(value: object, what: str = "pool") -> tuple[int, int, int, bool]:
    """Parse a pool or subpool as :func:`parse_pool` does, into plain integers.

    Returns ``(version, first, prefixlen, exact)``: ``first`` is the value of the
    prefix's first address, host bits masked off, and ``exact`` tells whether
    the text had none. The empty string is an error here. This is what a
    driver's hot path wants: no ``ipaddress`` object, whose attributes are
    Python-level properties.
    """
    if what not in _WHATS:
        raise ValueError(f"what must be 'pool' or 'subpool', not {what!r}")
    text = check_str(value, _WHATS[what][0])
    address, _, length = text.partition("/")
    prefixlen = _LENGTHS.get(length)
    v6 = ":" in address
    bits = 128 if v6 else 32
    try:
        if prefixlen is None or prefixlen > bits:
            raise ValueError(length)
        # ip_network(text) costs 3 µs here, more than a whole pool request
        # should. inet_pton accepts exactly the addresses ipaddress accepts
        # (zones aside, which it refuses too); the tests compare the two.
        number = int.from_bytes(inet_pton(AF_INET6 if v6 else AF_INET, address), "big")
    except (OSError, ValueError):
        # UnicodeError is a ValueError; the shape only tells which message.
        problem = "not an IPv4 or IPv6 prefix"
        if _PREFIX_SHAPE.fullmatch(text) is None:
            problem = "expected address/length"
        raise _WHATS[what][1](f"invalid address {what} {text!r}: {problem}") from None
    first = number >> (bits - prefixlen) << (bits - prefixlen)
    if v6 and first >> 32 == IPV4_MAPPED:
        raise _WHATS[what][1](f"invalid address {what} {text!r}: IPv4-mapped IPv6 is not allowed")
    return (6 if v6 else 4), first, prefixlen, first == number


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
