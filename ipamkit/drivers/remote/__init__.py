"""The ``remote`` driver: any plugin that speaks Docker's IPAM protocol, as an ``Ipam``.

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
from collections.abc import Mapping

from ipamkit._contract import Capability, Registerer
from ipamkit._hookspecs import hookimpl
from ipamkit.drivers.remote._discovery import PLUGIN_DIRS, SPEC_DIRS, check_plugin_name, find_plugin
from ipamkit.drivers.remote._driver import RemoteIpam, activate
from ipamkit.drivers.remote._transport import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    Endpoint,
    PluginClient,
    TLSConfig,
)
from ipamkit.errors import DriverNotConfiguredError, InvalidParameterError

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
