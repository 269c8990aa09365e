"""Settings profiles: how hard the state machine tries."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
from collections.abc import Iterable, Mapping

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import ExampleDatabase

from ipamkit_conformance._target import Target

__all__ = ["PROFILES", "database_key", "default_profile", "machine_settings"]

#: Profile name to (examples, steps per example). The CI profile is sized so the
#: whole suite against ``default`` stays well under two minutes on two cores.
PROFILES = {"dev": (50, 40), "ci": (200, 50), "thorough": (2000, 100)}


def default_profile() -> str:
    """``ci`` when the environment says it is CI (as hypothesis decides), else ``dev``."""
    return "ci" if os.environ.get("CI", "").lower() not in ("", "0", "false") else "dev"


class _KeyedDatabase(ExampleDatabase):
    """Files examples under a key per driver and declaration.

    Hypothesis keys a state machine's examples by the factory's source, which is
    the same for every driver; without this, failures found for one driver would
    be replayed against the next.
    """

    def __init__(self, inner: ExampleDatabase, prefix: bytes) -> None:
        super().__init__()
        self._inner = inner
        self._prefix = prefix

    def save(self, key: bytes, value: bytes) -> None:
        self._inner.save(self._prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self._inner.fetch(self._prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self._inner.delete(self._prefix + key, value)


def _stable(value: object) -> object:
    """``value`` as JSON whose text is the same in every process (no set order, no hash)."""
    if isinstance(value, enum.Enum):
        return _stable(value.value)
    if isinstance(value, Mapping):
        return sorted((str(k), _stable(v)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(_stable(v)) for v in value)
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def database_key(target: Target) -> bytes:
    """The prefix the examples found for ``target`` are filed under.

    Built from every declaration of the target, each in an order that does not
    change from one process to the next (``repr`` of a set does), so a rerun
    finds what the previous run saved.
    """
    # Only declarations: the fields a target is compared by. Its open drivers and its
    # watcher are objects of this process, whose text names their memory addresses.
    fields = {
        f.name: _stable(getattr(target, f.name)) for f in dataclasses.fields(target) if f.compare
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return f"ipamkit:{digest}:".encode()


def machine_settings(profile: str, target: Target) -> settings:
    """Return the hypothesis settings for running the state machine against ``target``."""
    examples, steps = PROFILES[profile]
    deterministic = profile == "ci"
    database = None
    inner = settings().database
    if not deterministic and inner is not None:
        database = _KeyedDatabase(inner, database_key(target))
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=deterministic,
        database=database,
        print_blob=deterministic,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        # The explain phase re-runs a failure many times over to annotate it; the
        # driver-call program says more, for a fraction of the time.
        phases=[p for p in Phase if p is not Phase.explain],
    )
