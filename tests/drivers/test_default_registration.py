"""The default driver as the host loads it."""

from __future__ import annotations

import pytest

import ipamkit
from ipamkit import Capability, Feature, PoolReading, errors
from ipamkit.drivers.default import DefaultIpam


def test_host_gives_a_fresh_driver_per_host() -> None:
    first, second = ipamkit.Host(), ipamkit.Host()
    driver = first.driver("default")
    assert isinstance(driver, DefaultIpam)
    assert first.driver("default") is driver
    assert second.driver("default") is not driver
    driver.request_pool("LocalDefault", "10.0.0.0/8")
    assert second.driver("default").request_pool("LocalDefault", "10.0.0.0/8")


def test_capability_and_declarations() -> None:
    host = ipamkit.Host()
    assert host.capability("default") == Capability(requires_request_replay=True)
    driver = host.driver("default")
    assert driver.is_builtin()
    assert driver.pool_reading is PoolReading.EXCLUSIVE
    assert set(driver.features) == {
        Feature.EXPLICIT_POOLS,
        Feature.SUB_POOLS,
        Feature.CHOSEN_POOLS,
        Feature.IPV6,
        Feature.DYNAMIC_ADDRESSES,
        Feature.SPECIFIC_ADDRESSES,
        Feature.THREAD_SAFE,
        Feature.EXACT_ERRORS,
    }


def test_host_passes_options() -> None:
    host = ipamkit.Host(options={"default": {"local_ipv6_pools": "fd00:1::/48:64"}})
    driver = host.driver("default")
    assert Feature.CHOSEN_IPV6_POOLS in driver.features
    assert str(driver.request_pool("LocalDefault", v6=True).pool) == "fd00:1::/64"


def test_host_reports_bad_options() -> None:
    host = ipamkit.Host(options={"default": {"colour": "blue"}})
    with pytest.raises(errors.DriverLoadError, match=r"unknown option.*colour"):
        host.driver("default")


def test_built_in_name_cannot_be_taken() -> None:
    host = ipamkit.Host()
    with pytest.raises(errors.ForbiddenError):
        host.register_ipam_driver("default", DefaultIpam())
