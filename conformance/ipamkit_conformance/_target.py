"""The driver under test and what it declares."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ipamkit import Feature, Host, Ipam, PoolReading
from ipamkit.errors import IpamError

from ipamkit_conformance._clauses import find_clause

__all__ = ["DriverUnavailableError", "Target", "TargetError"]


class TargetError(Exception):
    """The driver, or what is declared about it, cannot be tested as given."""


class DriverUnavailableError(TargetError):
    """The driver is unknown, or cannot be loaded or configured."""


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
    #: Options the suite passes on every ``request_pool`` (Docker's ``--ipam-opt``).
    pool_options: Mapping[str, str] = field(default_factory=dict)
    #: Options the suite passes on every ``request_address``.
    address_options: Mapping[str, str] = field(default_factory=dict)
    #: How each probed declaration was decided (empty unless probed).
    probed: tuple[str, ...] = ()
    #: Called with every driver :meth:`new_driver` makes (the suite's wire log).
    watch: Callable[[Ipam], None] | None = field(
        default=None, compare=False, repr=False, hash=False
    )
    #: Options that differ for a second instance (a ``shared`` driver's peer, such as
    #: another host identity), laid over ``options``.
    peer_options: Mapping[str, str] = field(default_factory=dict)
    #: A shell command run while a ``persistent`` driver is restarted, between closing
    #: the old instance and building the new one (to restart a plugin's process).
    restart_command: str = ""
    #: Seconds the restart command may take.
    restart_timeout: float = 60.0
    #: The drivers :meth:`new_driver` and :meth:`new_peer` made that are still open.
    _open: list[Ipam] = field(
        default_factory=list, init=False, compare=False, repr=False, hash=False
    )

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
        probe: bool = False,
        pool_options: Mapping[str, str] | None = None,
        address_options: Mapping[str, str] | None = None,
        peer_options: Mapping[str, str] | None = None,
        restart_command: str = "",
        restart_timeout: float = 60.0,
        flag_prefix: str = "--ipam-",
    ) -> tuple[Target, list[str]]:
        """Load the driver once and combine its declarations with the given ones.

        ``features`` add to what the driver declares (for drivers that cannot
        declare, such as remote plugins); ``pool_reading`` replaces its reading.
        With ``probe``, a few harmless calls decide the features and the reading
        first (pools of the suite's own ranges, all given back); the given ones still add to
        and replace what was probed. A driver that is ``shared`` also has its peer
        built once, so that bad peer options are found before any test runs.
        Returns the target and warnings (the ``xfail`` names that name no clause,
        peer options or a restart command for a driver that is not shared or
        persistent). Messages name the options as ``flag_prefix`` spells them
        (``--ipam-`` for the pytest plugin, ``--`` for ``ipamkit check``).
        """
        options = dict(options or {})
        declared = _features(features, f"{flag_prefix}feature")
        try:
            driver = Host(options={name: options}).driver(name)
        except IpamError as exc:
            raise DriverUnavailableError(f"cannot load IPAM driver {name!r}: {exc}") from exc
        try:
            try:
                spaces = _spaces(name, driver.get_default_address_spaces())
            except IpamError as exc:
                raise DriverUnavailableError(f"cannot load IPAM driver {name!r}: {exc}") from exc
            own = _features(getattr(driver, "features", ()), f"driver {name!r} declares")
            reading = _reading(driver, pool_reading)
            probed: tuple[str, ...] = ()
            if probe:
                # Imported on demand: probing is rare, and the plugin imports this module.
                from ipamkit_conformance._probe import probe as run_probe  # noqa: PLC0415

                found = run_probe(driver, spaces[0])
                own |= found.features
                if pool_reading is None and found.reading is not None:
                    reading = found.reading
                probed = tuple(found.lines)
        finally:
            _close(driver)
        peer = {**options, **(peer_options or {})}
        if Feature.SHARED in own | declared:
            try:
                _close(Host(options={name: peer}).driver(name))
            except IpamError as exc:
                raise TargetError(f"cannot load the peer of {name!r} ({peer}): {exc}") from exc
        if not 0 < restart_timeout < float("inf"):  # NaN fails this too
            raise TargetError(
                f"{flag_prefix}restart-timeout must be positive and finite, not {restart_timeout:g}"
            )
        clauses, warnings = set(), []
        for given, feature, flag in (
            (peer_options, Feature.SHARED, "peer-opt"),
            (restart_command, Feature.PERSISTENT, "restart-cmd"),
        ):
            if given and feature not in own | declared:
                warnings.append(
                    f"{flag_prefix}{flag} given, but the driver is not {feature}; ignored"
                )
        for entry in xfail:
            clause = find_clause(entry)
            if clause is None:
                warnings.append(f"xfail {entry!r} names no clause of this suite; ignored")
            else:
                clauses.add(clause.id)
        target = cls(
            name,
            options,
            features=own | declared,
            pool_reading=reading,
            xfail=frozenset(clauses),
            shared=shared,
            local_space=spaces[0],
            global_space=spaces[1],
            pool_options=dict(pool_options or {}),
            address_options=dict(address_options or {}),
            probed=probed,
            peer_options=dict(peer_options or {}),
            restart_command=restart_command,
            restart_timeout=restart_timeout,
        )
        return target, warnings

    def new_driver(self) -> Ipam:
        """Return a fresh driver from a fresh host; :meth:`close_drivers` closes it."""
        return self._build(dict(self.options))

    def new_peer(self) -> Ipam:
        """Return a second instance, built as :meth:`new_driver` with the peer's options."""
        return self._build(self.peer_config())

    def _build(self, options: dict[str, str]) -> Ipam:
        driver = Host(options={self.name: options}).driver(self.name)
        self._open.append(driver)
        if self.watch is not None:
            self.watch(driver)
        return driver

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

    def close_drivers(self) -> None:
        """Close every driver :meth:`new_driver` made (a remote one's connections)."""
        while self._open:
            _close(self._open.pop())

    def has(self, feature: Feature) -> bool:
        """Tell whether the driver declares ``feature``."""
        return feature in self.features

    def host_expression(self, peer: bool = False) -> str:
        """Python that builds the driver (or its peer), for the programs a failure prints."""
        options = self.peer_config() if peer else dict(self.options)
        return f"ipamkit.Host(options={{{self.name!r}: {options!r}}}).driver({self.name!r})"


def _close(driver: Ipam) -> None:
    # A driver that fails to close must not hide what the run found.
    with contextlib.suppress(Exception):
        driver.close()


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
