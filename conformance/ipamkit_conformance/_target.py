"""The driver under test and what it declares."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ipamkit import Feature, Host, Ipam, PoolReading
from ipamkit.errors import IpamError

from ipamkit_conformance._clauses import find_clause

__all__ = ["Target", "TargetError"]


class TargetError(Exception):
    """The driver, or what is declared about it, cannot be tested as given."""


def _features(names: Iterable[object], where: str) -> frozenset[Feature]:
    found = set()
    for name in names:
        try:
            found.add(Feature(name))
        except ValueError:
            valid = ", ".join(f.value for f in Feature)
            raise TargetError(f"{where}: unknown feature {name!r}; valid: {valid}") from None
    return frozenset(found)


@dataclass(frozen=True)
class Target:
    """A driver name with its options and declarations, as the suite tests it.

    :meth:`new_driver` gives a fresh driver from a fresh :class:`ipamkit.Host`
    each time, so no test sees another's state (except through a shared remote
    driver, which the suite never assumes to be empty).
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    features: frozenset[Feature] = frozenset()
    pool_reading: PoolReading = PoolReading.EXCLUSIVE
    #: Clause ids whose failures are expected.
    xfail: frozenset[str] = frozenset()
    #: Other clients may hold pools in the same driver (a shared remote driver).
    shared: bool = False
    local_space: str = ""
    global_space: str = ""
    #: Options that differ for a second instance (a ``shared`` driver's peer, such as
    #: another host identity), laid over :attr:`options`.
    peer_options: Mapping[str, str] = field(default_factory=dict)
    #: A shell command run while a ``persistent`` driver is restarted, between closing
    #: the old instance and building the new one (to restart a plugin's process).
    restart_command: str = ""
    #: Seconds the restart command may take.
    restart_timeout: float = 60.0

    @classmethod
    def resolve(
        cls,
        name: str,
        options: Mapping[str, str] | None = None,
        *,
        features: Iterable[str] = (),
        pool_reading: str | None = None,
        xfail: Iterable[str] = (),
        shared: bool = False,
        peer_options: Mapping[str, str] | None = None,
        restart_command: str = "",
        restart_timeout: float = 60.0,
    ) -> tuple[Target, list[str]]:
        """Load the driver once and combine its declarations with the given ones.

        ``features`` add to what the driver declares (for drivers that cannot
        declare, such as remote plugins); ``pool_reading`` replaces its reading.
        A driver that is ``shared`` also has its peer built once, so that bad peer
        options are found before any test runs. Returns the target and warnings
        (the ``xfail`` names that name no clause).
        """
        options = dict(options or {})
        declared = _features(features, "--ipam-feature")
        try:
            driver = Host(options={name: options}).driver(name)
            spaces = driver.get_default_address_spaces()
        except IpamError as exc:
            raise TargetError(f"cannot load IPAM driver {name!r}: {exc}") from exc
        own = _features(getattr(driver, "features", ()), f"driver {name!r} declares")
        peer = {**options, **(peer_options or {})}
        if Feature.SHARED in own | declared:
            try:
                Host(options={name: peer}).driver(name).close()
            except IpamError as exc:
                raise TargetError(f"cannot load the peer of {name!r} ({peer}): {exc}") from exc
        if restart_timeout <= 0:
            raise TargetError(f"--ipam-restart-timeout must be positive, not {restart_timeout}")
        driver.close()
        reading = _reading(driver, pool_reading)
        clauses, warnings = set(), []
        for entry in xfail:
            clause = find_clause(entry)
            if clause is None:
                warnings.append(f"--ipam-xfail {entry!r} names no clause of this suite; ignored")
            else:
                clauses.add(clause.id)
        target = cls(
            name,
            options,
            own | declared,
            reading,
            frozenset(clauses),
            shared,
            *_spaces(name, spaces),
            dict(peer_options or {}),
            restart_command,
            restart_timeout,
        )
        return target, warnings

    def new_driver(self) -> Ipam:
        """Return a fresh driver from a fresh host."""
        return Host(options={self.name: dict(self.options)}).driver(self.name)

    def new_peer(self) -> Ipam:
        """Return a second instance: a fresh driver built with the peer's options."""
        return Host(options={self.name: self.peer_config()}).driver(self.name)

    def peer_config(self) -> dict[str, str]:
        """The options a peer is built with."""
        return {**self.options, **self.peer_options}

    def restart(self, driver: Ipam) -> Ipam:
        """Close ``driver``, run the restart command if any, and return a new instance.

        The new instance comes from a fresh :class:`ipamkit.Host` with the same
        options, so nothing of the old one's memory reaches it but what the driver
        keeps outside the object (in a file, a store, another process).
        """
        driver.close()
        if self.restart_command:
            try:
                done = subprocess.run(
                    self.restart_command,
                    shell=True,  # the user's own command line, as tox runs commands
                    capture_output=True,
                    text=True,
                    timeout=self.restart_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise TargetError(
                    f"restart command {self.restart_command!r} took more than "
                    f"{self.restart_timeout:g} s"
                ) from None
            if done.returncode != 0:
                raise TargetError(
                    f"restart command {self.restart_command!r} exited with "
                    f"{done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
                )
        return self.new_driver()

    def has(self, feature: Feature) -> bool:
        """Tell whether the driver declares ``feature``."""
        return feature in self.features

    def host_expression(self, peer: bool = False) -> str:
        """Python that builds the driver (or its peer), for the programs a failure prints."""
        options = self.peer_config() if peer else dict(self.options)
        return f"ipamkit.Host(options={{{self.name!r}: {options!r}}}).driver({self.name!r})"


def _reading(driver: Ipam, given: str | None) -> PoolReading:
    value = given if given is not None else getattr(driver, "pool_reading", PoolReading.EXCLUSIVE)
    try:
        return PoolReading(value)
    except ValueError:
        valid = ", ".join(r.value for r in PoolReading)
        raise TargetError(f"unknown pool reading {value!r}; valid: {valid}") from None


def _spaces(name: str, spaces: object) -> tuple[str, str]:
    if (
        not isinstance(spaces, tuple)
        or len(spaces) != 2
        or not all(isinstance(s, str) and s for s in spaces)
    ):
        raise TargetError(
            f"driver {name!r}: get_default_address_spaces() must return two non-empty "
            f"strings, not {spaces!r}"
        )
    return spaces[0], spaces[1]
