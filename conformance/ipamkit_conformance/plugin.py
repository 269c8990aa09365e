"""The pytest plugin: ``pytest --ipam-driver=NAME`` runs the conformance suite.

pytest loads this module in every run of an environment that has
ipamkit-conformance installed, so it only declares options; the suite's
machinery is imported and registered only when ``--ipam-driver`` is given.
"""

from __future__ import annotations

import pytest

PROFILE_CHOICES = ("dev", "ci", "thorough")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipamkit", "ipamkit conformance suite")
    group.addoption(
        "--ipam-driver",
        metavar="NAME",
        help="run the ipamkit conformance suite against the IPAM driver NAME",
    )
    group.addoption(
        "--ipam-driver-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the driver's plugin (repeatable)",
    )
    group.addoption(
        "--ipam-profile",
        choices=PROFILE_CHOICES,
        help="how hard the state machine tries: dev, ci (deterministic; the default when "
        "the CI environment variable is set) or thorough",
    )
    group.addoption(
        "--ipam-feature",
        action="append",
        default=[],
        metavar="NAME",
        help="declare a feature for a driver that cannot declare its own (repeatable)",
    )
    group.addoption(
        "--ipam-pool-reading",
        choices=("exclusive", "refcounted"),
        help="declare how the driver reads a repeated request_pool",
    )
    group.addoption(
        "--ipam-xfail",
        action="append",
        default=[],
        metavar="CLAUSE",
        help="a clause (C07 or C07-pools-never-overlap) expected to fail (repeatable)",
    )
    group.addoption(
        "--ipam-shared",
        action="store_true",
        help="other clients hold pools in this driver: an explicit pool refused as "
        "overlapping is taken as held by someone else, not as a failure",
    )
    group.addoption(
        "--ipam-peer-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option that differs for the second instance of a shared driver, laid "
        "over --ipam-driver-opt (a host identity; url for a remote plugin) (repeatable)",
    )
    group.addoption(
        "--ipam-restart-cmd",
        metavar="COMMAND",
        help="a shell command run when a persistent driver is restarted, after the old "
        "instance is closed and before the new one is built (to restart a plugin's process)",
    )
    group.addoption(
        "--ipam-restart-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long the restart command may take (default: 60)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Declared always, as the options are: a module that imports the suite then
    # collects under --strict-markers even before the driver is named.
    config.addinivalue_line("markers", "ipam_clause(id): the contract clause a test checks")
    config.addinivalue_line("markers", "ipam_needs(*features): features a test needs")
    name = config.getoption("ipam_driver")
    if name is None:
        return
    # Imported here so that runs without --ipam-driver pay nothing for the suite.
    from ipamkit_conformance import _session  # noqa: PLC0415

    _session.activate(config, name)
