"""The example driver's own policy, checked through the ipamkit host as a user loads it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import ipamkit
from ipamkit import errors


@pytest.fixture
def driver() -> ipamkit.Ipam:
    # A fresh host has fresh driver instances, so every test starts empty.
    return ipamkit.Host().driver("example")


def test_is_found_by_name_with_its_capability() -> None:
    host = ipamkit.Host()
    assert "example" in host.names()
    assert host.capability("example") == ipamkit.Capability(requires_request_replay=True)
    assert not host.driver("example").is_builtin()


def test_has_its_own_address_spaces(driver: ipamkit.Ipam) -> None:
    assert driver.get_default_address_spaces() == ("ExampleLocal", "ExampleGlobal")
    with pytest.raises(errors.InvalidAddressSpaceError):
        driver.request_pool("LocalDefault", "10.1.0.0/16")


def test_chooses_the_first_free_pool_of_its_ranges(driver: ipamkit.Ipam) -> None:
    driver.request_pool("ExampleLocal", "10.200.1.0/24")
    chosen = [driver.request_pool("ExampleLocal").pool for _ in range(2)]
    assert [str(pool) for pool in chosen] == ["10.200.0.0/24", "10.200.2.0/24"]
    assert str(driver.request_pool("ExampleLocal", v6=True).pool) == "fd3e:7a61:9c00::/64"
    # Address spaces are independent: the other one starts from the beginning.
    assert str(driver.request_pool("ExampleGlobal").pool) == "10.200.0.0/24"


def test_ranges_are_driver_options() -> None:
    host = ipamkit.Host(options={"example": {"v4_range": "192.168.8.0/23"}})
    driver = host.driver("example")
    pools = [str(driver.request_pool("ExampleLocal").pool) for _ in range(2)]
    assert pools == ["192.168.8.0/24", "192.168.9.0/24"]
    with pytest.raises(errors.NoMoreSubnetsError):
        driver.request_pool("ExampleLocal")


@pytest.mark.parametrize(
    "options",
    [{"colour": "blue"}, {"v4_range": "fd00::/48"}, {"v6_range": "fd00::/96"}],
)
def test_bad_options_stop_the_driver_from_loading(options: dict[str, str]) -> None:
    with pytest.raises(errors.DriverLoadError):
        ipamkit.Host(options={"example": options}).driver("example")


def test_reuses_the_last_freed_address_first(driver: ipamkit.Ipam) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", "10.9.0.0/24")
    for _ in range(3):
        driver.request_address(pool_id)
    driver.release_address(pool_id, "10.9.0.1")
    driver.release_address(pool_id, "10.9.0.3")
    handed_out = [str(driver.request_address(pool_id).address) for _ in range(3)]
    assert handed_out == ["10.9.0.3/24", "10.9.0.1/24", "10.9.0.4/24"]


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ("192.168.7.0/30", ["192.168.7.1/30", "192.168.7.2/30"]),
        ("192.168.7.0/31", ["192.168.7.0/31", "192.168.7.1/31"]),
        ("192.168.7.0/32", ["192.168.7.0/32"]),
        ("2001:db8::/126", ["2001:db8::1/126", "2001:db8::2/126", "2001:db8::3/126"]),
        ("2001:db8::/128", []),
    ],
)
def test_exhausts_small_pools(driver: ipamkit.Ipam, pool: str, expected: list[str]) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", pool)
    assert [str(driver.request_address(pool_id).address) for _ in expected] == expected
    with pytest.raises(errors.NoAvailableIPsError):
        driver.request_address(pool_id)


def test_a_release_makes_room_again(driver: ipamkit.Ipam) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", "192.168.7.0/30")
    driver.request_address(pool_id)
    driver.request_address(pool_id)
    driver.release_address(pool_id, "192.168.7.1")
    assert str(driver.request_address(pool_id).address) == "192.168.7.1/30"


def test_dynamic_addresses_come_from_the_subpool(driver: ipamkit.Ipam) -> None:
    pool_id, pool, _ = driver.request_pool("ExampleLocal", "10.3.0.0/16", "10.3.5.0/30")
    assert pool_id == "ExampleLocal/10.3.0.0/16/10.3.5.0/30"
    assert str(pool) == "10.3.0.0/16"
    dynamic = [str(driver.request_address(pool_id).address) for _ in range(4)]
    assert dynamic == ["10.3.5.0/16", "10.3.5.1/16", "10.3.5.2/16", "10.3.5.3/16"]
    with pytest.raises(errors.NoAvailableIPsError):
        driver.request_address(pool_id)
    # A specific address may lie anywhere in the pool; released, it is not
    # handed out dynamically, since it is outside the subpool.
    driver.request_address(pool_id, "10.3.9.9")
    driver.release_address(pool_id, "10.3.9.9")
    with pytest.raises(errors.NoAvailableIPsError):
        driver.request_address(pool_id)


def test_pools_of_a_space_never_overlap(driver: ipamkit.Ipam) -> None:
    driver.request_pool("ExampleLocal", "10.4.0.0/16", "10.4.1.0/24")
    for pool, sub_pool in [("10.4.0.0/16", ""), ("10.4.0.0/16", "10.4.2.0/24"), ("10.0.0.0/8", "")]:
        with pytest.raises(errors.PoolOverlapError):
            driver.request_pool("ExampleLocal", pool, sub_pool)
    driver.request_pool("ExampleGlobal", "10.4.0.0/16")


def test_a_released_pool_comes_back_empty(driver: ipamkit.Ipam) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", "10.5.0.0/24")
    driver.request_address(pool_id, "10.5.0.7")
    driver.release_pool(pool_id)
    with pytest.raises(errors.BadPoolError):
        driver.release_pool(pool_id)
    assert driver.request_pool("ExampleLocal", "10.5.0.0/24").pool_id == pool_id
    assert str(driver.request_address(pool_id, "10.5.0.7").address) == "10.5.0.7/24"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda d, p: d.request_pool("", "10.6.0.0/16"), errors.InvalidAddressSpaceError),
        (lambda d, p: d.request_pool("ExampleLocal", "bogus"), errors.InvalidPoolError),
        (
            lambda d, p: d.request_pool("ExampleLocal", "", "10.6.0.0/24"),
            errors.InvalidSubPoolError,
        ),
        (
            lambda d, p: d.request_pool("ExampleLocal", "10.7.0.0/16", "10.8.0.0/24"),
            errors.InvalidSubPoolError,
        ),
        (
            lambda d, p: d.request_pool("ExampleLocal", "10.7.0.0/16", "2001:db8::/64"),
            errors.InvalidSubPoolError,
        ),
        (lambda d, p: d.request_pool("ExampleLocal", "10.6.1.0/24"), errors.PoolOverlapError),
        (lambda d, p: d.request_pool("ExampleLocal", 10), TypeError),
        (lambda d, p: d.release_pool("garbage"), errors.InvalidPoolError),
        (lambda d, p: d.release_pool("ExampleLocal/10.99.0.0/16"), errors.BadPoolError),
        (lambda d, p: d.request_address("ExampleLocal/10.99.0.0/16"), errors.BadPoolError),
        (lambda d, p: d.request_address(p, "10.6.0.1"), errors.IPAlreadyAllocatedError),
        (lambda d, p: d.request_address(p, "10.6.0.0"), errors.IPAlreadyAllocatedError),
        (lambda d, p: d.request_address(p, "10.7.0.1"), errors.IPOutOfRangeError),
        (lambda d, p: d.request_address(p, "2001:db8::1"), errors.IPOutOfRangeError),
        (lambda d, p: d.request_address(p, "10.6.0.1%eth0"), errors.InvalidParameterError),
        (lambda d, p: d.request_address(p, options={"a": 1}), TypeError),
        (lambda d, p: d.release_address(p, "10.7.0.1"), errors.IPOutOfRangeError),
        (lambda d, p: d.release_address(p, None), TypeError),
    ],
)
def test_an_error_changes_nothing(
    driver: ipamkit.Ipam, call: Callable[[ipamkit.Ipam, str], object], error: type[Exception]
) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", "10.6.0.0/16")
    driver.request_address(pool_id, "10.6.0.1")
    with pytest.raises(error):
        call(driver, pool_id)
    # The same pool, addresses and cursor as before the failed call.
    assert str(driver.request_address(pool_id).address) == "10.6.0.2/16"
    assert driver.request_pool("ExampleLocal", "10.7.0.0/16").pool_id == "ExampleLocal/10.7.0.0/16"


def test_releasing_a_free_or_reserved_address_changes_nothing(driver: ipamkit.Ipam) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", "10.10.0.0/24")
    driver.release_address(pool_id, "10.10.0.0")
    driver.release_address(pool_id, "10.10.0.9")
    assert str(driver.request_address(pool_id).address) == "10.10.0.1/24"
    with pytest.raises(errors.IPAlreadyAllocatedError):
        driver.request_address(pool_id, "10.10.0.0")


def test_concurrent_callers_never_share_an_address(driver: ipamkit.Ipam) -> None:
    pool_id, _, _ = driver.request_pool("ExampleLocal", "10.11.0.0/21")
    results: list[list[str]] = [[] for _ in range(8)]

    def work(mine: list[str]) -> None:
        for _ in range(200):
            address = driver.request_address(pool_id).address
            assert address is not None
            driver.release_address(pool_id, address.ip)
            mine.append(str(driver.request_address(pool_id).address))

    threads = [threading.Thread(target=work, args=(mine,)) for mine in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handed_out = [address for mine in results for address in mine]
    assert len(handed_out) == len(set(handed_out)) == 1600
