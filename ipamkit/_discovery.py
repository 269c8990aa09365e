"""Where driver plugins come from: the built-in table and installed entry points.

Nothing here imports a plugin; :func:`find_sources` only reads metadata, so a
host can list every driver name without running third-party code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points, version

__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "DriverSource", "Sources", "find_sources"]

#: The entry-point group third-party drivers are declared in.
ENTRY_POINT_GROUP = "ipamkit.drivers"

DISTRIBUTION = "ipamkit"

#: Driver name to plugin of the drivers that ship with ipamkit. Named as strings,
#: as pytest names its own plugins, so the host imports none until it is needed.
BUILTIN_PLUGINS = {
    "default": "ipamkit.drivers.default",
    "null": "ipamkit.drivers.null",
    "remote": "ipamkit.drivers.remote",
}


@dataclass(frozen=True)
class DriverSource:
    """One driver name and the plugin that provides it."""

    name: str
    #: The plugin as an entry-point value: ``module`` or ``module:attribute``.
    plugin: str
    distribution: str
    version: str
    builtin: bool

    def load(self) -> object:
        """Import and return the plugin object."""
        if self.builtin:
            return importlib.import_module(self.plugin)
        return EntryPoint(self.name, self.plugin, ENTRY_POINT_GROUP).load()

    def describe(self) -> str:
        """Say where the plugin comes from, for messages."""
        return f"{self.distribution} {self.version} ({self.plugin})"


@dataclass
class Sources:
    """Every driver source found, and the names that cannot be loaded and why."""

    by_name: dict[str, DriverSource] = field(default_factory=dict)
    #: Name to reason for names claimed in a way that can never load.
    conflicts: dict[str, str] = field(default_factory=dict)
    #: Sources that lost a conflict, kept so a listing can show where they come from.
    rejected: list[tuple[DriverSource, str]] = field(default_factory=list)

    def names_of_plugin(self, source: DriverSource) -> list[str]:
        """Return every driver name declared for the plugin of ``source``, by its distribution."""
        return sorted(
            s.name
            for s in self.by_name.values()
            if s.plugin == source.plugin and s.distribution == source.distribution
        )


def _builtin_sources() -> Iterable[DriverSource]:
    try:
        own_version = version(DISTRIBUTION)
    except Exception:  # running from a source tree that was never installed
        own_version = "unknown"
    for name, plugin in BUILTIN_PLUGINS.items():
        yield DriverSource(name, plugin, DISTRIBUTION, own_version, builtin=True)


def _installed_sources() -> Iterable[DriverSource]:
    # entry_points() already folds a distribution found twice on sys.path into
    # one (by normalised name), which is what "the same distribution twice is
    # not a conflict" needs.
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        yield DriverSource(
            ep.name,
            ep.value,
            dist.name if dist is not None else "unknown",
            dist.version if dist is not None else "unknown",
            builtin=False,
        )


def find_sources() -> Sources:
    """Find every driver source, recording clashes instead of letting one win."""
    sources = Sources()
    claims: dict[str, list[DriverSource]] = {}
    for source in _builtin_sources():
        sources.by_name[source.name] = source
    for source in _installed_sources():
        if source.name in BUILTIN_PLUGINS:
            sources.rejected.append(
                (source, f"driver name {source.name!r} belongs to a built-in driver")
            )
            continue
        claims.setdefault(source.name, []).append(source)
    for name, claimants in claims.items():
        distinct = {(s.distribution, s.plugin): s for s in claimants}
        if len(distinct) == 1:
            sources.by_name[name] = claimants[0]
            continue
        reason = f"driver name {name!r} is claimed by " + " and by ".join(
            s.describe() for s in distinct.values()
        )
        sources.conflicts[name] = reason
        sources.rejected.extend((s, reason) for s in distinct.values())
    return sources
