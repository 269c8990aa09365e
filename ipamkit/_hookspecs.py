"""The hook a driver plugin implements, and the markers that tag hooks."""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from ipamkit._contract import Registerer

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "ipamkit_register_drivers",
    "ipamkit_resolve_driver",
]

PROJECT_NAME = "ipamkit"

#: Marks the hook specifications of ipamkit.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's implementation of an ipamkit hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register the plugin's drivers with ``registerer``.

    ``options`` maps each driver name the plugin declared to the options the
    runtime gave for that driver (an empty mapping when it gave none). A plugin
    builds fresh driver instances on every call: each host owns its drivers.
    Options a driver does not understand should raise
    :class:`~ipamkit.errors.InvalidParameterError`.
    """


@hookspec(firstresult=True)
def ipamkit_resolve_driver(
    name: str, registerer: Registerer, options: Mapping[str, str]
) -> bool | None:
    """Register a driver under ``name``, which no plugin declares, if the plugin can supply one.

    Only built-in plugins are asked, as Docker's daemon looks up a plugin by
    name when no driver is registered under it. ``options`` are the runtime's
    options for ``name``. Return True after registering, False (or None) to
    decline; raise when ``name`` is found but cannot be loaded.
    """
