"""The host: finds driver plugins, registers their drivers, loads a driver by name."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pluggy

from ipamkit import _hookspecs
from ipamkit._contract import Capability, Ipam
from ipamkit._discovery import DriverSource, Sources, find_sources
from ipamkit.errors import (
    DriverLoadError,
    DriverNotConfiguredError,
    DriverNotFoundError,
    ForbiddenError,
    InvalidParameterError,
)

__all__ = ["ALLOWED_ENV", "BLOCKED_ENV", "STRICT_ENV", "DriverInfo", "Host"]

#: Comma-separated driver names that must not be loaded.
BLOCKED_ENV = "IPAMKIT_BLOCKED_DRIVERS"
#: Comma-separated names: when set, only these installed (not built-in) drivers load.
ALLOWED_ENV = "IPAMKIT_ALLOWED_DRIVERS"
#: ``1`` (or ``true``, ``yes``) turns any broken plugin into an error.
STRICT_ENV = "IPAMKIT_STRICT"


@dataclass(frozen=True)
class DriverInfo:
    """One row of a host's driver listing."""

    name: str
    #: ``ok``, ``failed``, ``unconfigured`` (the driver needs options) or ``blocked``.
    status: str
    #: Why the driver failed or is blocked; empty when it is ok.
    reason: str
    #: The registered capability; None unless the driver is ok.
    capability: Capability | None
    builtin: bool
    #: Distribution and version the driver comes from; ``None`` for one registered in code.
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class _Registration:
    driver: Ipam
    capability: Capability
    source: DriverSource | None


def _names_from_env(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"driver name must be a str, not {type(name).__name__}")
    if not name.strip():
        raise InvalidParameterError("ipam driver name string cannot be empty")
    return name


def _check_driver(driver: object, capability: object) -> None:
    if not isinstance(driver, Ipam):
        raise TypeError(f"driver must be an ipamkit.Ipam, not {type(driver).__name__}")
    if not isinstance(capability, Capability):
        raise TypeError(
            f"capability must be an ipamkit.Capability, not {type(capability).__name__}"
        )


def _check_options(options: object) -> dict[str, dict[str, str]]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError("options must map driver names to mappings of str to str")
    checked: dict[str, dict[str, str]] = {}
    for name, values in options.items():
        if not isinstance(name, str) or not isinstance(values, Mapping):
            raise TypeError("options must map driver names to mappings of str to str")
        for key, value in values.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"options for driver {name!r} must map str to str")
        checked[name] = dict(values)
    return checked


class _PluginRegisterer:
    """The registerer a plugin's hook receives: it may register only its declared names."""

    def __init__(self, declared: Iterable[str], source: DriverSource) -> None:
        self._declared = set(declared)
        self._source = source
        self.registered: dict[str, tuple[Ipam, Capability]] = {}

    def register_ipam_driver(self, name: str, driver: Ipam) -> None:
        self.register_ipam_driver_with_capabilities(name, driver, Capability())

    def register_ipam_driver_with_capabilities(
        self, name: str, driver: Ipam, capability: Capability
    ) -> None:
        _check_name(name)
        _check_driver(driver, capability)
        if name not in self._declared:
            raise ForbiddenError(
                f"driver {name!r} is not declared as an entry point of "
                f"{self._source.distribution}; declared: {', '.join(sorted(self._declared))}"
            )
        if name in self.registered:
            raise ForbiddenError(f"ipam driver {name!r} already registered by this plugin")
        self.registered[name] = (driver, capability)


class Host:
    """Loads IPAM drivers by name from built-in and installed plugins.

    Installed drivers are declared as entry points in the ``ipamkit.drivers``
    group (the entry point's name is the driver's name, its value the plugin).
    Nothing is imported until a driver is asked for, and then only its plugin.
    Each host owns its driver instances. A host is also a registerer: a runtime
    can register driver objects itself.

    ``options`` maps a driver name to the options its plugin receives.
    ``blocked`` names drivers that must not load; ``allowed``, when given,
    restricts installed drivers to those names (built-ins stay available).
    Both add to the environment variables ``IPAMKIT_BLOCKED_DRIVERS`` and
    ``IPAMKIT_ALLOWED_DRIVERS``. ``strict`` (default: ``IPAMKIT_STRICT``) turns
    any broken plugin into an error instead of a failed row in the listing.
    """

    def __init__(
        self,
        *,
        options: Mapping[str, Mapping[str, str]] | None = None,
        blocked: Iterable[str] | None = None,
        allowed: Iterable[str] | None = None,
        strict: bool | None = None,
    ) -> None:
        self._options = _check_options(options)
        self._blocked = set(blocked or ()) | (_names_from_env(BLOCKED_ENV) or set())
        env_allowed = _names_from_env(ALLOWED_ENV)
        self._allowed: set[str] | None = None
        if allowed is not None or env_allowed is not None:
            self._allowed = set(allowed or ()) | (env_allowed or set())
        if strict is None:
            strict = os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")
        self._strict = strict
        self._lock = threading.RLock()
        self._pm = pluggy.PluginManager(_hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(_hookspecs)
        self._sources: Sources = find_sources()
        self._registered: dict[str, _Registration] = {}
        self._failed: dict[str, str] = dict(self._sources.conflicts)
        # Not broken, merely waiting for options: strict mode lets these be.
        self._unconfigured: dict[str, str] = {}
        self._loaded_plugins: set[tuple[str, str]] = set()
        if self._strict:
            problems = [reason for _, reason in self._sources.rejected]
            if problems:
                raise DriverLoadError("; ".join(problems))

    # -- Registerer -------------------------------------------------------------

    def register_ipam_driver(self, name: str, driver: Ipam) -> None:
        """Register ``driver`` under ``name`` with no capabilities."""
        self.register_ipam_driver_with_capabilities(name, driver, Capability())

    def register_ipam_driver_with_capabilities(
        self, name: str, driver: Ipam, capability: Capability
    ) -> None:
        """Register ``driver`` under ``name``; a built-in driver's name cannot be taken."""
        _check_name(name)
        _check_driver(driver, capability)
        with self._lock:
            self._forbid_builtin_takeover(name)
            self._registered[name] = _Registration(driver, capability, None)
            self._failed.pop(name, None)

    def _forbid_builtin_takeover(self, name: str) -> None:
        source = self._sources.by_name.get(name)
        current = self._registered.get(name)
        if (current is not None and current.driver.is_builtin()) or (
            source is not None and source.builtin
        ):
            raise ForbiddenError(f"ipam driver {name!r} already registered")

    # -- Lookup -----------------------------------------------------------------

    def names(self) -> list[str]:
        """List every driver name that can be asked for, without importing any plugin."""
        with self._lock:
            names = set(self._registered)
            names.update(n for n, s in self._sources.by_name.items() if self._permitted(s))
            names.update(n for n in self._sources.conflicts if n not in self._blocked)
            return sorted(names)

    def driver(self, name: str) -> Ipam:
        """Return the driver registered under ``name``, loading its plugin if needed."""
        return self._registration(name).driver

    def capability(self, name: str) -> Capability:
        """Return the capability the driver under ``name`` was registered with."""
        return self._registration(name).capability

    def describe(self) -> list[DriverInfo]:
        """Load every driver (each plugin in isolation) and report how each one fared."""
        with self._lock:
            rows: list[DriverInfo] = []
            for name in sorted(set(self.names()) | self._blocked_names()):
                rows.append(self._describe(name))
            for source, reason in self._sources.rejected:
                if source.name in self._sources.conflicts:
                    continue  # already reported under the conflicting name
                rows.append(
                    DriverInfo(
                        source.name,
                        "failed",
                        reason,
                        None,
                        False,
                        source.distribution,
                        source.version,
                    )
                )
            return rows

    def _blocked_names(self) -> set[str]:
        return {n for n, s in self._sources.by_name.items() if not self._permitted(s)}

    def _describe(self, name: str) -> DriverInfo:
        source = self._sources.by_name.get(name)
        if source is not None and not self._permitted(source) and name not in self._registered:
            return DriverInfo(
                name,
                "blocked",
                self._why_blocked(name),
                None,
                source.builtin,
                source.distribution,
                source.version,
            )
        try:
            registration = self._registration(name)
        except (DriverLoadError, DriverNotFoundError, DriverNotConfiguredError) as exc:
            return DriverInfo(
                name,
                "unconfigured" if isinstance(exc, DriverNotConfiguredError) else "failed",
                str(exc),
                None,
                bool(source and source.builtin),
                source.distribution if source else None,
                source.version if source else None,
            )
        origin = registration.source
        return DriverInfo(
            name,
            "ok",
            "",
            registration.capability,
            registration.driver.is_builtin(),
            origin.distribution if origin else None,
            origin.version if origin else None,
        )

    def _permitted(self, source: DriverSource) -> bool:
        if source.name in self._blocked:
            return False
        return source.builtin or self._allowed is None or source.name in self._allowed

    def _why_blocked(self, name: str) -> str:
        if name in self._blocked:
            return f"blocked by {BLOCKED_ENV} or Host(blocked=...)"
        return f"not in the allow-list ({ALLOWED_ENV} or Host(allowed=...))"

    def _registration(self, name: str) -> _Registration:
        _check_name(name)
        with self._lock:
            registration = self._registered.get(name)
            if registration is not None:
                return registration
            self._raise_if_unloadable(name)
            source = self._sources.by_name.get(name)
            if source is None:
                if self._resolve(name):
                    return self._registered[name]
                raise DriverNotFoundError(
                    f"no IPAM driver named {name!r}; known drivers: {', '.join(self.names())}"
                )
            if not self._permitted(source):
                raise DriverNotFoundError(f"IPAM driver {name!r} is {self._why_blocked(name)}")
            if self._strict:
                self._load_all()
            else:
                self._load(source)
            self._raise_if_unloadable(name)
            return self._registered[name]

    def _raise_if_unloadable(self, name: str) -> None:
        if name in self._failed:
            raise DriverLoadError(self._failed[name])
        if name in self._unconfigured:
            raise DriverNotConfiguredError(self._unconfigured[name])

    # -- Loading ----------------------------------------------------------------

    def _resolve(self, name: str) -> bool:
        """Offer ``name``, which no plugin declares, to each built-in plugin in turn.

        Each is asked through a plugin manager of its own, so that neither its
        driver registration (which may have failed) nor third-party plugins are
        involved. A failure is not remembered: what the name stands for (a
        plugin process) may appear later.
        """
        if name in self._blocked or (self._allowed is not None and name not in self._allowed):
            return False
        for source in self._sources.by_name.values():
            if not (source.builtin and self._permitted(source)):
                continue
            try:
                plugin = source.load()
            except Exception:
                continue  # reported under the built-in's own name
            resolver = pluggy.PluginManager(_hookspecs.PROJECT_NAME)
            resolver.add_hookspecs(_hookspecs)
            resolver.register(plugin)
            registerer = _PluginRegisterer([name], source)
            try:
                claimed = resolver.hook.ipamkit_resolve_driver(
                    name=name, registerer=registerer, options=dict(self._options.get(name, {}))
                )
            except Exception as exc:
                raise DriverLoadError(
                    f"plugin {source.plugin!r} of {source.distribution} {source.version} "
                    f"failed to load driver {name!r}: {type(exc).__name__}: {exc}"
                ) from exc
            if not claimed:
                continue
            if name not in registerer.registered:
                raise DriverLoadError(
                    f"plugin {source.plugin!r} of {source.distribution} {source.version} "
                    f"claimed driver {name!r} but did not register it"
                )
            driver, capability = registerer.registered[name]
            self._registered[name] = _Registration(driver, capability, source)
            return True
        return False

    def _load_all(self) -> None:
        for source in self._sources.by_name.values():
            if self._permitted(source):
                self._load(source)
        if self._failed:
            raise DriverLoadError("; ".join(self._failed[n] for n in sorted(self._failed)))

    def _load(self, source: DriverSource) -> None:
        key = (source.distribution, source.plugin)
        if key in self._loaded_plugins:
            return
        self._loaded_plugins.add(key)
        declared = self._sources.names_of_plugin(source)
        try:
            registered = self._run_plugin(source, declared)
        except DriverNotConfiguredError as exc:
            for name in declared:
                if name not in self._registered:
                    self._unconfigured[name] = str(exc)
            return
        except Exception as exc:
            reason = (
                f"plugin {source.plugin!r} of {source.distribution} {source.version} "
                f"failed: {type(exc).__name__}: {exc}"
            )
            for name in declared:
                if name not in self._registered:
                    self._failed[name] = reason
            return
        for name in declared:
            if name in self._registered:
                continue  # a driver the runtime registered itself wins over the plugin's
            if name in registered:
                driver, capability = registered[name]
                self._registered[name] = _Registration(driver, capability, source)
            else:
                self._failed[name] = (
                    f"plugin {source.plugin!r} of {source.distribution} {source.version} "
                    f"did not register driver {name!r}"
                )

    def _run_plugin(
        self, source: DriverSource, declared: list[str]
    ) -> dict[str, tuple[Ipam, Capability]]:
        plugin = source.load()
        plugin_name = f"{source.distribution}:{source.plugin}"
        registerer = _PluginRegisterer(declared, source)
        try:
            self._pm.register(plugin, name=plugin_name)
            # register() accepts hooks that have no specification; only
            # check_pending() notices them (a typo, or a hook of a newer ipamkit).
            self._pm.check_pending()
            others = [p for p in self._pm.get_plugins() if p is not plugin]
            call = self._pm.subset_hook_caller("ipamkit_register_drivers", remove_plugins=others)
            if not call.get_hookimpls():
                raise DriverLoadError(f"plugin {source.plugin!r} implements no ipamkit hook")
            call(
                registerer=registerer,
                options={name: dict(self._options.get(name, {})) for name in declared},
            )
        except Exception:
            # register() is not atomic, and a failed plugin must not linger for
            # check_pending() to trip over when the next plugin loads.
            if self._pm.has_plugin(plugin_name):
                self._pm.unregister(name=plugin_name)
            raise
        return registerer.registered
