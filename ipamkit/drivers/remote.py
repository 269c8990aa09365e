"""The ``remote`` driver: any plugin that speaks Docker's IPAM protocol, as an ``Ipam``.

A thin adapter over :mod:`ipamkit.protocol`'s client: arguments are checked
here, and replies are checked against the contract; the wire is the protocol
package's business.

Configured through the host's options for ``remote``: ``url`` (a socket path or
a ``unix:///``, ``tcp://``, ``http://`` or ``https://`` URL) or ``plugin`` (a
name looked up as Docker's daemon looks up v1 plugins), and optionally
``timeout``, ``retry`` and ``spin`` (seconds), ``check_replies`` (``error`` or ``warn``),
``plugin_dirs`` and ``spec_dirs`` (directories separated by ``os.pathsep``). A
driver name no installed plugin claims is also looked up as a plugin name, as
Docker loads plugins lazily.
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import warnings
from collections.abc import Mapping
from ipaddress import IPv4Interface, IPv6Interface

from ipamkit._arguments import (
    check_options,
    check_pool_request,
    check_str,
    parse_address,
    parse_pool,
)
from ipamkit._contract import (
    Address,
    AddressResult,
    Capability,
    Interface,
    Ipam,
    Network,
    PoolResult,
    Registerer,
)
from ipamkit._hookspecs import hookimpl
from ipamkit._interfaces import address_text, interface_maker
from ipamkit.errors import (
    DriverNotConfiguredError,
    InvalidParameterError,
    IpamError,
    NoIPReturnedError,
    PluginError,
)
from ipamkit.protocol import wire
from ipamkit.protocol.client import (
    DEFAULT_RETRY,
    DEFAULT_SPIN,
    DEFAULT_TIMEOUT,
    Endpoint,
    Exchange,
    PluginClient,
    TLSConfig,
    Trace,
    activate,
)
from ipamkit.protocol.discovery import PLUGIN_DIRS, SPEC_DIRS, check_plugin_name, find_plugin

__all__ = [
    "CHECK_REPLIES",
    "DEFAULT_RETRY",
    "DEFAULT_SPIN",
    "DEFAULT_TIMEOUT",
    "NAME",
    "PLUGIN_DIRS",
    "SPEC_DIRS",
    "Endpoint",
    "Exchange",
    "PluginReplyWarning",
    "RemoteIpam",
    "TLSConfig",
    "Trace",
    "check_plugin_name",
    "connect",
    "find_plugin",
]

#: The name the configured remote driver is registered under.
NAME = "remote"
_KEYS = ("url", "plugin", "timeout", "retry", "spin", "check_replies", "plugin_dirs", "spec_dirs")
#: The values of the ``check_replies`` option.
CHECK_REPLIES = ("error", "warn")
#: Pools remembered to check the addresses handed out in them; beyond this
#: many live pools the oldest go unchecked.
_MAX_POOLS = 4096

_INTERFACES: tuple[type[Interface], type[Interface]] = (IPv4Interface, IPv6Interface)
# Go's net.ParseCIDR: an address, a slash and a decimal length, nothing else.
_CIDR = re.compile(r"[0-9A-Fa-f.:]+/[0-9]{1,3}")


class _Pool:
    """A pool this driver requested, and what builds its addresses' interfaces."""

    __slots__ = ("_mask", "_prefixlen", "_value", "_version", "interface", "network")

    def __init__(self, network: Network) -> None:
        self.network = network
        self._version, self._prefixlen = network.version, network.prefixlen
        self._value, self._mask = int(network.network_address), int(network.netmask)
        #: The interface of an address of the pool, from its integer value.
        self.interface = interface_maker(network)

    def holds(self, value: int, prefixlen: int, version: int) -> bool:
        """Whether the address is of the pool, given with the pool's length."""
        return (
            version == self._version
            and prefixlen == self._prefixlen
            and value & self._mask == self._value
        )


class PluginReplyWarning(UserWarning):
    """A plugin's reply broke the contract, and ``check_replies="warn"`` let it pass."""


class RemoteIpam(Ipam):
    """Forwards each call to a plugin speaking Docker's IPAM protocol.

    Arguments are checked locally first (a wrong type is a :class:`TypeError`, a
    malformed address an :class:`~ipamkit.errors.InvalidParameterError`); pools
    go out as given, since parsing them is the plugin's business. A plugin
    cannot declare features or its reading of ``request_pool``, so they stay at
    none and exclusive; whoever checks the driver declares them.

    Replies are checked against the contract: a pool ID, the pool asked for (or
    one of the family asked for), and addresses of their pool's family, inside
    it, with its prefix length, and the one asked for. A reply that fails is a
    :class:`~ipamkit.errors.PluginError`, or with ``check_replies="warn"`` a
    :class:`PluginReplyWarning` and the reply as it came. Addresses are checked
    against the pools this driver requested (the last few thousand live ones).

    ``trace`` is the client's trace hook (see :class:`~ipamkit.protocol.client.Exchange`).
    After :meth:`close` every call raises :class:`~ipamkit.errors.PluginTransportError`.
    """

    def __init__(self, client: PluginClient, *, check_replies: str = "error") -> None:
        if check_replies not in CHECK_REPLIES:
            raise InvalidParameterError(
                f"check_replies must be one of {', '.join(CHECK_REPLIES)}, not {check_replies!r}"
            )
        self._client = client
        self._warn_only = check_replies == "warn"
        # Pool ID -> pool, oldest first.
        self._pools: dict[str, _Pool] = {}
        self._pools_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """Where the plugin listens."""
        return str(self._client.endpoint)

    @property
    def trace(self) -> Trace | None:
        """The hook that receives every exchange with the plugin, or None."""
        return self._client.trace

    @trace.setter
    def trace(self, hook: Trace | None) -> None:
        self._client.trace = hook

    def __repr__(self) -> str:
        return f"RemoteIpam({self.endpoint!r})"

    def get_default_address_spaces(self) -> tuple[str, str]:
        local, global_ = self._client.call(wire.GET_DEFAULT_ADDRESS_SPACES)
        return local, global_

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        check_pool_request(address_space, pool, sub_pool, options, v6)
        sent = _options(options)
        pool_id, cidr, data = self._client.call(
            wire.REQUEST_POOL, address_space, pool, sub_pool, sent, v6
        )
        # Docker keeps host bits of the returned pool; a Network cannot hold
        # them, so they are masked here (a returned interface keeps them).
        try:
            if _CIDR.fullmatch(cidr) is None:
                raise ValueError(cidr)
            network = parse_pool(cidr)
        except (IpamError, ValueError):
            raise self._invalid(wire.REQUEST_POOL, "an invalid pool", cidr) from None
        assert network is not None  # the pattern rules out ""
        problem = _pool_problem(pool_id, network, pool, v6)
        if problem:
            self._broken(wire.REQUEST_POOL, problem, cidr)
        with self._pools_lock:
            self._pools.pop(pool_id, None)  # a reused ID goes to the end, as new
            self._pools[pool_id] = _Pool(network)
            if len(self._pools) > _MAX_POOLS:
                del self._pools[next(iter(self._pools))]
        return PoolResult(pool_id, network, dict(data or {}))

    def release_pool(self, pool_id: str) -> None:
        check_str(pool_id, "pool_id")
        self._client.call(wire.RELEASE_POOL, pool_id)
        with self._pools_lock:
            self._pools.pop(pool_id, None)

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        check_str(pool_id, "pool_id")
        wanted = None if address is None else parse_address(address)
        sent = _options(options)
        returned, data = self._client.call(
            wire.REQUEST_ADDRESS, pool_id, "" if wanted is None else address_text(wanted), sent
        )
        if not returned:
            raise NoIPReturnedError
        pool = self._pools.get(pool_id)
        interface = self._interface(returned, pool)
        problem = _address_problem(interface, None if pool is None else pool.network, wanted)
        if problem:
            self._broken(wire.REQUEST_ADDRESS, problem, returned)
        return AddressResult(interface, dict(data or {}))

    def release_address(self, pool_id: str, address: Address | str) -> None:
        check_str(pool_id, "pool_id")
        self._client.call(wire.RELEASE_ADDRESS, pool_id, address_text(parse_address(address)))

    def is_builtin(self) -> bool:
        return False

    def close(self) -> None:
        """Close the connections to the plugin; idempotent. Later calls raise."""
        self._client.close()

    def _interface(self, text: str, pool: _Pool | None) -> Interface:
        # inet_pton and an integer read exactly the texts ip_interface(text)
        # reads, in half its time; an address of its pool, with its length, is
        # built on the pool's own network in a tenth of the rest.
        address, _, length = text.partition("/")
        v6 = ":" in address
        try:
            if _CIDR.fullmatch(text) is None:
                raise ValueError(text)
            packed = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, address)
            value, prefixlen = int.from_bytes(packed, "big"), int(length)
            if pool is not None and pool.holds(value, prefixlen, 6 if v6 else 4):
                return pool.interface(value)
            return _INTERFACES[v6]((value, prefixlen))
        except (OSError, ValueError):
            raise self._invalid(wire.REQUEST_ADDRESS, "an invalid address", text) from None

    def _invalid(self, message: wire.Message, what: str, value: str) -> PluginError:
        return PluginError(
            f"{message.method}: {self._client.label} returned {what}: {value!r}",
            method=message.method,
            text=value,
        )

    def _broken(self, message: wire.Message, problem: str, value: str) -> None:
        """Raise (or, when told to, only warn) that a reply broke the contract."""
        text = f"{message.method}: {self._client.label} broke the contract: {problem}"
        if not self._warn_only:
            raise PluginError(text, method=message.method, text=value)
        warnings.warn(PluginReplyWarning(text), stacklevel=3)


def _pool_problem(pool_id: str, network: Network, requested: str, v6: bool) -> str:
    """What is wrong with a returned pool, or "" if nothing."""
    if not pool_id:
        return f"returned pool {network} with an empty pool ID"
    if requested:
        try:
            wanted = parse_pool(requested)
        except IpamError:
            return ""  # the plugin accepted what ipamkit cannot read: its business
        if network != wanted:
            return f"returned pool {network}, not the requested {requested}"
    elif network.version != (6 if v6 else 4):
        family = 6 if v6 else 4
        return f"returned the IPv{network.version} pool {network} for an IPv{family} request"
    return ""


def _address_problem(interface: Interface, pool: Network | None, wanted: Address | None) -> str:
    """What is wrong with an address returned from ``pool`` (None: unknown), or "" if nothing."""
    if wanted is not None and interface.ip != wanted:
        return f"returned address {interface}, not the requested {wanted}"
    if pool is None or interface.network is pool or interface.network == pool:
        return ""  # the usual case: of the pool's family, inside it, with its length
    if interface.version != pool.version:
        return f"returned the IPv{interface.version} address {interface} from the pool {pool}"
    if interface.ip not in pool:
        return f"returned address {interface}, outside its pool {pool}"
    if interface.network.prefixlen != pool.prefixlen:
        return (
            f"returned address {interface} with prefix length /{interface.network.prefixlen}, "
            f"not its pool's /{pool.prefixlen}"
        )
    return ""


def _options(options: object) -> dict[str, str] | None:
    # Docker sends a nil map as null and an empty one as {}: keep the difference.
    checked = check_options(options)
    return None if options is None else dict(checked)


def connect(
    endpoint: Endpoint,
    *,
    name: str = NAME,
    timeout: float = DEFAULT_TIMEOUT,
    retry: float = DEFAULT_RETRY,
    spin: float = DEFAULT_SPIN,
    check_replies: str = "error",
    trace: Trace | None = None,
) -> tuple[RemoteIpam, Capability]:
    """Activate the plugin at ``endpoint``; return the driver and the plugin's capabilities."""
    client = PluginClient(endpoint, name=name, timeout=timeout, retry=retry, spin=spin, trace=trace)
    try:
        driver = RemoteIpam(client, check_replies=check_replies)
        capability = activate(client)
    except BaseException:
        client.close()
        raise
    return driver, capability


def _seconds(options: Mapping[str, str], key: str, default: float) -> float:
    text = options.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidParameterError(f"remote driver option {key}={text!r} is not a number")
    return value


def _dirs(options: Mapping[str, str], key: str, default: tuple[str, ...]) -> list[str]:
    text = options.get(key)
    return list(default) if text is None else [d for d in text.split(os.pathsep) if d]


def _check_keys(options: Mapping[str, str]) -> None:
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise InvalidParameterError(
            f"unknown remote driver options: {', '.join(unknown)}; known: {', '.join(_KEYS)}"
        )


def _endpoint(name: str, options: Mapping[str, str]) -> Endpoint | None:
    url, plugin = options.get("url"), options.get("plugin")
    if url is not None and plugin is not None:
        raise InvalidParameterError("remote driver options url and plugin exclude each other")
    if url is not None:
        return Endpoint.parse(url)
    return find_plugin(
        check_plugin_name(plugin or name),
        _dirs(options, "plugin_dirs", PLUGIN_DIRS),
        _dirs(options, "spec_dirs", SPEC_DIRS),
    )


def _register(
    registerer: Registerer, name: str, endpoint: Endpoint, options: Mapping[str, str]
) -> None:
    driver, capability = connect(
        endpoint,
        name=name,
        timeout=_seconds(options, "timeout", DEFAULT_TIMEOUT),
        retry=_seconds(options, "retry", DEFAULT_RETRY),
        spin=_seconds(options, "spin", DEFAULT_SPIN),
        check_replies=options.get("check_replies", "error"),
    )
    registerer.register_ipam_driver_with_capabilities(name, driver, capability)


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register ``remote`` for the plugin its options name."""
    settings = options.get(NAME, {})
    _check_keys(settings)
    if "url" not in settings and "plugin" not in settings:
        raise DriverNotConfiguredError(
            "the remote driver is not configured: give option url=ADDRESS or plugin=NAME"
        )
    endpoint = _endpoint(NAME, settings)
    if endpoint is None:
        raise InvalidParameterError(
            f"no plugin named {settings['plugin']!r}: no socket in "
            f"{os.pathsep.join(_dirs(settings, 'plugin_dirs', PLUGIN_DIRS))} and no spec file in "
            f"{os.pathsep.join(_dirs(settings, 'spec_dirs', SPEC_DIRS))}"
        )
    _register(registerer, NAME, endpoint, settings)


@hookimpl
def ipamkit_resolve_driver(name: str, registerer: Registerer, options: Mapping[str, str]) -> bool:
    """Register the plugin called ``name`` under that name if Docker's lookup finds it."""
    try:
        check_plugin_name(options.get("plugin", name))
    except InvalidParameterError:
        return False
    endpoint = _endpoint(name, options)
    if endpoint is None:
        return False  # not a plugin either: options meant for something else stay unjudged
    _check_keys(options)
    _register(registerer, name, endpoint, options)
    return True
