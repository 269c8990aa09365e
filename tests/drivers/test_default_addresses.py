"""RequestAddress and ReleaseAddress of the default driver (reference §2.6, §2.7, §4.3)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface

import pytest

from ipamkit import ALLOC_SERIAL_PREFIX, GATEWAY, REQUEST_ADDRESS_TYPE, errors
from ipamkit.drivers.default import DefaultIpam

L = "LocalDefault"
SERIAL = {ALLOC_SERIAL_PREFIX: "true"}


def drain(ipam: DefaultIpam, pool_id: str, options: dict[str, str] | None = None) -> list[str]:
    """Request addresses until the pool is exhausted; return them as strings."""
    got = []
    while True:
        try:
            got.append(str(ipam.request_address(pool_id, None, options).address))
        except errors.NoAvailableIPsError:
            return got


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ("192.168.60.0/32", ["192.168.60.0/32"]),
        ("192.168.0.2/31", ["192.168.0.2/31", "192.168.0.3/31"]),
        ("192.168.0.0/30", ["192.168.0.1/30", "192.168.0.2/30"]),
        ("192.168.0.0/29", [f"192.168.0.{i}/29" for i in range(1, 7)]),
        ("2001:db8::/128", []),
        ("2001:db8::/127", ["2001:db8::1/127"]),
        ("2001:db8::/126", ["2001:db8::1/126", "2001:db8::2/126", "2001:db8::3/126"]),
    ],
)
@pytest.mark.parametrize("options", [None, SERIAL])
def test_exhaustion_of_small_pools(
    ipam: DefaultIpam, pool: str, expected: list[str], options: dict[str, str] | None
) -> None:
    pool_id = ipam.request_pool(L, pool).pool_id
    assert drain(ipam, pool_id, options) == expected
    with pytest.raises(errors.NoAvailableIPsError):
        ipam.request_address(pool_id)


@pytest.mark.parametrize(
    ("pool", "reserved"),
    [
        ("192.168.1.0/24", ["192.168.1.0", "192.168.1.255"]),
        ("192.168.0.0/30", ["192.168.0.0", "192.168.0.3"]),
        ("2001:db8::/64", ["2001:db8::"]),
    ],
)
def test_reserved_addresses(ipam: DefaultIpam, pool: str, reserved: list[str]) -> None:
    pool_id = ipam.request_pool(L, pool).pool_id
    for address in reserved:
        with pytest.raises(errors.IPAlreadyAllocatedError, match="reserved"):
            ipam.request_address(pool_id, address)


def test_no_reservation_in_31_and_32(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "192.168.0.2/31").pool_id
    assert ipam.request_address(pool_id, "192.168.0.3").address == IPv4Interface("192.168.0.3/31")
    assert ipam.request_address(pool_id, "192.168.0.2").address == IPv4Interface("192.168.0.2/31")
    pool_id = ipam.request_pool(L, "192.168.60.0/32").pool_id
    assert ipam.request_address(pool_id, "192.168.60.0").address == IPv4Interface("192.168.60.0/32")


def test_first_free_after_releases(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "10.0.0.0/24").pool_id
    for _ in range(10):
        ipam.request_address(pool_id)
    ipam.release_address(pool_id, "10.0.0.7")
    ipam.release_address(pool_id, IPv4Address("10.0.0.3"))
    assert [str(ipam.request_address(pool_id).address) for _ in range(3)] == [
        "10.0.0.3/24",
        "10.0.0.7/24",
        "10.0.0.11/24",
    ]


def test_specific_addresses(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "10.0.0.0/16").pool_id
    assert ipam.request_address(pool_id, "10.0.3.4").address == IPv4Interface("10.0.3.4/16")
    assert ipam.request_address(pool_id, IPv4Address("10.0.3.5")).address == IPv4Interface(
        "10.0.3.5/16"
    )
    # An interface counts as its address.
    assert ipam.request_address(pool_id, IPv4Interface("10.0.3.6/24")).address == IPv4Interface(
        "10.0.3.6/16"
    )
    with pytest.raises(errors.IPAlreadyAllocatedError, match=r"10\.0\.3\.4 is already allocated"):
        ipam.request_address(pool_id, "10.0.3.4")
    # Specific requests do not move first-free.
    assert ipam.request_address(pool_id).address == IPv4Interface("10.0.0.1/16")


def test_request_address_type_is_ignored(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "10.0.0.0/24").pool_id
    gateway = {REQUEST_ADDRESS_TYPE: GATEWAY}
    assert ipam.request_address(pool_id, None, gateway).address == IPv4Interface("10.0.0.1/24")
    assert ipam.request_address(pool_id, "10.0.0.9", gateway).address == IPv4Interface(
        "10.0.0.9/24"
    )


@pytest.mark.parametrize(
    ("address", "pool"),
    [
        ("10.0.0.1", "192.168.1.0/24"),
        ("192.168.2.0", "192.168.1.0/24"),
        ("2001:db8::1", "192.168.1.0/24"),
        (IPv6Address("2001:db8::1"), "192.168.1.0/24"),
        ("192.168.1.1", "2001:db8::/64"),
        (IPv4Address("192.168.1.1"), "2001:db8::/64"),
        ("2001:db8:0:1::", "2001:db8::/64"),
    ],
)
def test_address_out_of_range(ipam: DefaultIpam, address: object, pool: str) -> None:
    pool_id = ipam.request_pool(L, pool).pool_id
    before = ipam.snapshot()
    with pytest.raises(errors.IPOutOfRangeError, match="is not in pool"):
        ipam.request_address(pool_id, address)  # type: ignore[arg-type]
    with pytest.raises(errors.IPOutOfRangeError, match="is not in pool"):
        ipam.release_address(pool_id, address)  # type: ignore[arg-type]
    assert ipam.snapshot() == before


def test_out_of_range_is_reported_before_a_missing_subpool(ipam: DefaultIpam) -> None:
    ipam.request_pool(L, "192.168.1.0/24")
    pool_id = f"{L}/192.168.1.0/24/192.168.1.0/25"
    with pytest.raises(errors.IPOutOfRangeError):
        ipam.request_address(pool_id, "10.0.0.1")
    with pytest.raises(errors.BadPoolError):
        ipam.request_address(pool_id)


@pytest.mark.parametrize(
    "address",
    [
        "bogus",
        "",
        "10.0.0.1/24",
        "10.0.0.01",
        " 10.0.0.1",
        "10.0.0.1\x00",
        "fe80::1%eth0",
        "2001:db8::1%1",
        "::ffff:10.0.0.1",
        "\uff110.0.0.1",  # a full-width digit
        IPv6Address("::ffff:10.0.0.1"),
        IPv6Address("2001:db8::1%eth0"),
    ],
)
@pytest.mark.parametrize("pool", ["10.0.0.0/24", "::/0"])
def test_bad_addresses(ipam: DefaultIpam, address: object, pool: str) -> None:
    pool_id = ipam.request_pool(L, pool).pool_id
    before = ipam.snapshot()
    with pytest.raises(errors.InvalidParameterError, match="address"):
        ipam.request_address(pool_id, address)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidParameterError, match="address"):
        ipam.release_address(pool_id, address)  # type: ignore[arg-type]
    assert ipam.snapshot() == before


@pytest.mark.parametrize("address", [167772161, b"10.0.0.1", 10.0, ["10.0.0.1"]])
def test_address_wrong_type(ipam: DefaultIpam, address: object) -> None:
    pool_id = ipam.request_pool(L, "10.0.0.0/24").pool_id
    before = ipam.snapshot()
    with pytest.raises(TypeError, match="address must be"):
        ipam.request_address(pool_id, address)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address must be"):
        ipam.release_address(pool_id, address)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address must be"):
        ipam.release_address(pool_id, None)  # type: ignore[arg-type]
    assert ipam.snapshot() == before


@pytest.mark.parametrize("options", [{"a": 1}, {1: "a"}, [("a", "b")], "serial"])
def test_options_wrong_type(ipam: DefaultIpam, options: object) -> None:
    pool_id = ipam.request_pool(L, "10.0.0.0/24").pool_id
    before = ipam.snapshot()
    with pytest.raises(TypeError, match="options"):
        ipam.request_address(pool_id, None, options)  # type: ignore[arg-type]
    assert ipam.snapshot() == before


# -- subpools -------------------------------------------------------------------


def test_subpool_allocation_and_exhaustion(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "172.28.0.0/16", "172.28.30.0/24").pool_id
    got = drain(ipam, pool_id)
    # The subpool's own network and broadcast addresses are not reserved: only the master's are.
    assert got == [f"172.28.30.{i}/16" for i in range(256)]
    # A specific address is checked against the master, not the subpool.
    assert ipam.request_address(pool_id, "172.28.5.5").address == IPv4Interface("172.28.5.5/16")
    # Any address of the master may be released through the subpool's ID.
    ipam.release_address(pool_id, "172.28.5.5")
    ipam.release_address(pool_id, "172.28.30.7")
    assert ipam.request_address(pool_id).address == IPv4Interface("172.28.30.7/16")
    master = f"{L}/172.28.0.0/16"
    assert ipam.request_address(master).address == IPv4Interface("172.28.0.1/16")


def test_d6_specific_address_in_a_full_pool(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "192.168.0.0/30").pool_id
    drain(ipam, pool_id)
    with pytest.raises(errors.IPAlreadyAllocatedError):
        ipam.request_address(pool_id, "192.168.0.1")
    with pytest.raises(errors.IPAlreadyAllocatedError):
        ipam.request_address(pool_id, "192.168.0.0")


# -- serial allocation (reference §4.3) -------------------------------------------


def test_serial_probe(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "192.168.50.0/29").pool_id

    def request(options: dict[str, str] | None) -> str:
        return str(ipam.request_address(pool_id, None, options).address.ip)  # type: ignore[union-attr]

    assert [request(SERIAL), request(SERIAL)] == ["192.168.50.1", "192.168.50.2"]
    ipam.release_address(pool_id, "192.168.50.1")
    assert request(SERIAL) == "192.168.50.3"
    assert request(None) == "192.168.50.1"
    assert request({ALLOC_SERIAL_PREFIX: "True"}) == "192.168.50.4"  # not "true": first-free
    assert [request(SERIAL), request(SERIAL)] == ["192.168.50.5", "192.168.50.6"]
    with pytest.raises(errors.NoAvailableIPsError):
        request(SERIAL)
    ipam.release_address(pool_id, "192.168.50.4")
    assert request(SERIAL) == "192.168.50.4"  # wrapped round


def test_serial_wraps_round_in_a_subpool(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "10.0.0.0/24", "10.0.0.16/30").pool_id
    assert drain(ipam, pool_id, SERIAL) == [f"10.0.0.{i}/24" for i in range(16, 20)]
    ipam.release_address(pool_id, "10.0.0.17")
    ipam.release_address(pool_id, "10.0.0.16")
    assert str(ipam.request_address(pool_id, None, SERIAL).address) == "10.0.0.16/24"
    assert str(ipam.request_address(pool_id, None, SERIAL).address) == "10.0.0.17/24"


def test_serial_cursor_is_shared_by_master_and_subpools(ipam: DefaultIpam) -> None:
    master = ipam.request_pool(L, "10.0.0.0/24").pool_id
    child = ipam.request_pool(L, "10.0.0.0/24", "10.0.0.0/25").pool_id
    assert str(ipam.request_address(master, "10.0.0.100").address) == "10.0.0.100/24"
    assert str(ipam.request_address(master, None, SERIAL).address) == "10.0.0.1/24"
    assert str(ipam.request_address(child, None, SERIAL).address) == "10.0.0.2/24"
    ipam.release_address(master, "10.0.0.1")
    assert str(ipam.request_address(master, None, SERIAL).address) == "10.0.0.3/24"


# -- IPv6 beyond 64 bits (deviation D4) ------------------------------------------


def test_d4_all_ones_address_of_a_64(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "2001:db8::/64").pool_id
    for address in ("2001:db8::ffff:ffff:ffff:fffe", "2001:db8::ffff:ffff:ffff:ffff"):
        assert ipam.request_address(pool_id, address).address == IPv6Interface(f"{address}/64")
    with pytest.raises(errors.IPAlreadyAllocatedError):
        ipam.request_address(pool_id, "2001:db8::")


def test_d4_subpool_reaching_the_top_of_a_64(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "2001:db8::/64", "2001:db8::ffff:ffff:ffff:ff00/120").pool_id
    got = drain(ipam, pool_id, SERIAL)
    assert len(got) == 256
    assert got[-1] == "2001:db8::ffff:ffff:ffff:ffff/64"
    pool_id = ipam.request_pool(L, "2001:db8:1::/64", "2001:db8:1::/64").pool_id
    assert str(ipam.request_address(pool_id).address) == "2001:db8:1::1/64"


def test_d4_a_48_is_addressed_whole(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "2001:db9::/48").pool_id
    assert ipam.request_address(pool_id, "2001:db9:0:1::5").address == IPv6Interface(
        "2001:db9:0:1::5/48"
    )
    assert ipam.request_address(pool_id, "2001:db9::5").address == IPv6Interface("2001:db9::5/48")
    top = "2001:db9:0:ffff:ffff:ffff:ffff:ffff"
    assert ipam.request_address(pool_id, top).address == IPv6Interface(f"{top}/48")
    child = ipam.request_pool(L, "2001:db9::/48", "2001:db9:0:8000::/49").pool_id
    assert ipam.request_address(child).address == IPv6Interface("2001:db9:0:8000::/48")
    with pytest.raises(errors.IPAlreadyAllocatedError):
        ipam.request_address(pool_id, "2001:db9:0:8000::")


# -- ReleaseAddress (reference §2.7) ----------------------------------------------


def test_release_of_a_free_address_is_a_no_op(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "192.168.0.0/30").pool_id
    ipam.request_address(pool_id)
    before = ipam.snapshot()
    ipam.release_address(pool_id, "192.168.0.2")
    assert ipam.snapshot() == before
    ipam.release_address(pool_id, "192.168.0.1")
    ipam.release_address(pool_id, "192.168.0.1")  # twice: still exactly one free address
    assert drain(ipam, pool_id) == ["192.168.0.1/30", "192.168.0.2/30"]


@pytest.mark.parametrize(
    ("pool", "reserved", "first"),
    [
        ("192.168.1.0/24", "192.168.1.0", "192.168.1.1/24"),
        ("192.168.1.0/24", "192.168.1.255", "192.168.1.1/24"),
        ("2001:db8::/64", "2001:db8::", "2001:db8::1/64"),
    ],
)
def test_d5_release_of_a_reserved_address_changes_nothing(
    ipam: DefaultIpam, pool: str, reserved: str, first: str
) -> None:
    pool_id = ipam.request_pool(L, pool).pool_id
    before = ipam.snapshot()
    ipam.release_address(pool_id, reserved)
    assert ipam.snapshot() == before
    assert ipam.request_address(pool_id).address == ip_interface(first)
    with pytest.raises(errors.IPAlreadyAllocatedError):
        ipam.request_address(pool_id, reserved)


def test_many_runs_come_and_go(ipam: DefaultIpam) -> None:
    # Enough scattered addresses to split the run list into many chunks, then
    # release them in another order until only the reservation is left.
    pool_id = ipam.request_pool(L, "2001:db8::/64").pool_id
    base = int(IPv6Address("2001:db8::"))
    rng = random.Random(7)
    scattered = {rng.randrange(1 << 32, 1 << 64) for _ in range(5_000)}
    values = [*scattered, *range(1, 3_000, 2)]
    for value in values:
        ipam.request_address(pool_id, IPv6Address(base + value))

    def bounds() -> tuple[int, ...]:
        masters = ipam.snapshot()["LocalDefault"]["masters"]  # type: ignore[index]
        return masters["2001:db8::/64"][0]  # type: ignore[no-any-return]

    # One run per address, but ::1 joins the reserved ::0.
    assert len(bounds()) == 2 * len(values)
    # First-free fills the gaps between the low odd ordinals, in order.
    assert [str(ipam.request_address(pool_id).address) for _ in range(3)] == [
        "2001:db8::2/64",
        "2001:db8::4/64",
        "2001:db8::6/64",
    ]
    rng.shuffle(values)
    for value in [*values, 2, 4, 6]:
        ipam.release_address(pool_id, str(IPv6Address(base + value)))
    assert bounds() == (0, 1)


@pytest.mark.parametrize("pool", ["10.20.0.0/24", "2001:db8:20::/64"])
def test_the_returned_interface_releases_its_address(pool: str) -> None:
    ipam = DefaultIpam()
    pool_id = ipam.request_pool(L, pool).pool_id
    first = ipam.request_address(pool_id).address
    second = ipam.request_address(pool_id).address
    assert first is not None
    assert second is not None
    ipam.release_address(pool_id, first)
    assert ipam.request_address(pool_id).address == first
    ipam.release_address(pool_id, second)
    assert ipam.request_address(pool_id).address == second
    outside = ip_interface("10.21.0.1/24" if ":" not in pool else "2001:db8:21::1/64")
    with pytest.raises(errors.IPOutOfRangeError):
        ipam.release_address(pool_id, outside)


def test_ipv4_mapped_addresses_are_never_handed_out(ipam: DefaultIpam) -> None:
    # The serial cursor, shared by a master and its subpools, is parked at
    # ::ffff:0:0 by a subpool just below it; a serial request on the whole pool
    # then starts there. No call accepts an IPv4-mapped address (it would change
    # family), so handing one out would leave an address nobody can release.
    pool = "::fffe:0:0/95"
    low = ipam.request_pool(L, pool, "::fffe:ffff:fffe/127").pool_id
    assert drain(ipam, low) == ["::fffe:ffff:fffe/95", "::fffe:ffff:ffff/95"]
    whole = ipam.request_pool(L, pool, pool).pool_id
    got = ipam.request_address(whole, None, SERIAL).address
    assert str(got) == "::fffe:0:1/95"  # wrapped round, past the mapped half
    ipam.release_address(whole, got)
    for address in ("::ffff:0:0", "::ffff:0.0.0.1", IPv6Address("::ffff:255.255.255.255")):
        with pytest.raises(errors.InvalidParameterError, match="IPv4-mapped"):
            ipam.request_address(whole, address)


def test_ipv4_mapped_half_of_a_95_is_not_counted_as_free(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "::fffe:0:0/95").pool_id
    ipam.request_address(pool_id, "::fffe:ffff:ffff")  # the last usable address
    state = ipam.snapshot()[L]["masters"]["::fffe:0:0/95"]  # type: ignore[index]
    assert state[0] == (0, 1, (1 << 32) - 1, 1 << 33)  # reserved, then the rest up to the end


class _LooksLikeAnId:
    """Hashes and compares like the pool ID it wraps, but is no str."""

    def __init__(self, pool_id: str) -> None:
        self.pool_id = pool_id

    def __hash__(self) -> int:
        return hash(self.pool_id)

    def __eq__(self, other: object) -> bool:
        return other == self.pool_id


def test_a_pool_id_that_is_no_str_is_a_type_error(ipam: DefaultIpam) -> None:
    pool_id = ipam.request_pool(L, "10.5.0.0/24").pool_id
    fake = _LooksLikeAnId(pool_id)
    before = ipam.snapshot()
    for options in (None, SERIAL):
        with pytest.raises(TypeError, match="pool_id must be a str"):
            ipam.request_address(fake, None, options)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="pool_id must be a str"):
            ipam.request_address(fake, "10.5.0.9", options)  # type: ignore[arg-type]
    assert ipam.snapshot() == before
    ipam.request_address(pool_id, "10.5.0.9")
    with pytest.raises(TypeError, match="pool_id must be a str"):
        ipam.release_address(fake, "10.5.0.9")  # type: ignore[arg-type]
    with pytest.raises(errors.IPAlreadyAllocatedError):
        ipam.request_address(pool_id, "10.5.0.9")  # still held
