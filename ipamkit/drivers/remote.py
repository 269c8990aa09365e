"""The ``remote`` driver: any plugin that speaks Docker's IPAM protocol, as an ``Ipam``.

A thin adapter over :mod:`ipamkit.protocol`'s client: arguments are checked
here, the wire is the protocol package's business.

Configured through the host's options for ``remote``: ``url`` (a socket path or
a ``unix://``, ``tcp://``, ``http://`` or ``https://`` URL) or ``plugin`` (a
name looked up as Docker's daemon looks up v1 plugins), and optionally
``timeout`` and ``retry`` (seconds), ``plugin_dirs`` and ``spec_dirs``
(directories separated by ``os.pathsep``). A driver name no installed plugin
claims is also looked up as a plugin name, as Docker loads plugins lazily.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from ipaddress import ip_interface

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
    PoolResult,
    Registerer,
)
from ipamkit._hookspecs import hookimpl
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
    DEFAULT_TIMEOUT,
    Endpoint,
    PluginClient,
    TLSConfig,
    activate,
)
from ipamkit.protocol.discovery import PLUGIN_DIRS, SPEC_DIRS, check_plugin_name, find_plugin

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "NAME",
    "PLUGIN_DIRS",
    "SPEC_DIRS",
    "Endpoint",
    "RemoteIpam",
    "TLSConfig",
    "check_plugin_name",
    "connect",
    "find_plugin",
]

#: The name the configured remote driver is registered under.
NAME = "remote"
_KEYS = ("url", "plugin", "timeout", "retry", "plugin_dirs", "spec_dirs")

# Go's net.ParseCIDR: an address, a slash and a decimal length, nothing else.
_CIDR = re.compile(r"[0-9A-Fa-f.:]+/[0-9]{1,3}")


def _invalid_reply(message: wire.Message, what: str, value: str) -> PluginError:
    return PluginError(
        f"{message.method}: the plugin returned an invalid {what}: {value!r}",
        method=message.method,
        text=value,
    )


class RemoteIpam(Ipam):
    """Forwards each call to a plugin speaking Docker's IPAM protocol.

    Arguments are checked locally first (a wrong type is a :class:`TypeError`, a
    malformed address an :class:`~ipamkit.errors.InvalidParameterError`); pools
    go out as given, since parsing them is the plugin's business. A plugin
    cannot declare features or its reading of ``request_pool``, so they stay at
    none and exclusive; whoever checks the driver declares them.
    """

    def __init__(self, client: PluginClient) -> None:
        self._client = client

    @property
    def endpoint(self) -> str:
        """Where the plugin listens."""
        return str(self._client.endpoint)

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
            raise _invalid_reply(wire.REQUEST_POOL, "pool", cidr) from None
        assert network is not None  # the pattern rules out ""
        return PoolResult(pool_id, network, dict(data or {}))

    def release_pool(self, pool_id: str) -> None:
        check_str(pool_id, "pool_id")
        self._client.call(wire.RELEASE_POOL, pool_id)

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        check_str(pool_id, "pool_id")
        wanted = "" if address is None else str(parse_address(address))
        sent = _options(options)
        returned, data = self._client.call(wire.REQUEST_ADDRESS, pool_id, wanted, sent)
        if not returned:
            raise NoIPReturnedError
        return AddressResult(_interface(returned), dict(data or {}))

    def release_address(self, pool_id: str, address: Address | str) -> None:
        check_str(pool_id, "pool_id")
        self._client.call(wire.RELEASE_ADDRESS, pool_id, str(parse_address(address)))

    def is_builtin(self) -> bool:
        return False

    def close(self) -> None:
        """Close the connections to the plugin."""
        self._client.close()


def _options(options: object) -> dict[str, str] | None:
    # Docker sends a nil map as null and an empty one as {}: keep the difference.
    checked = check_options(options)
    return None if options is None else dict(checked)


def _interface(text: str) -> Interface:
    try:
        if _CIDR.fullmatch(text) is None:
            raise ValueError(text)
        return ip_interface(text)
    except ValueError:
        raise _invalid_reply(wire.REQUEST_ADDRESS, "address", text) from None


def connect(
    endpoint: Endpoint,
    *,
    name: str = NAME,
    timeout: float = DEFAULT_TIMEOUT,
    retry: float = DEFAULT_RETRY,
) -> tuple[RemoteIpam, Capability]:
    """Activate the plugin at ``endpoint``; return the driver and the plugin's capabilities."""
    client = PluginClient(endpoint, timeout=timeout, retry=retry)
    try:
        capability = activate(client, name)
    except BaseException:
        client.close()
        raise
    return RemoteIpam(client), capability


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
