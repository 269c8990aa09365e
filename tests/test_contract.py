"""The contract's public names, errors and argument checks."""

from __future__ import annotations

import pytest

import ipamkit
from ipamkit import errors
from ipamkit.drivers.null import NullIpam


def test_constants_match_docker() -> None:
    assert ipamkit.DEFAULT_IPAM == "default"
    assert ipamkit.NULL_IPAM == "null"
    assert ipamkit.PLUGIN_ENDPOINT_TYPE == "IpamDriver"
    assert ipamkit.REQUEST_ADDRESS_TYPE == "RequestAddressType"
    assert ipamkit.ALLOC_SERIAL_PREFIX == "com.docker.network.ipam.serial"
    assert ipamkit.GATEWAY == "com.docker.network.gateway"
    assert ipamkit.MAC_ADDRESS == "com.docker.network.endpoint.macaddress"


@pytest.mark.parametrize(
    ("cls", "parent", "message"),
    [
        (errors.InvalidAddressSpaceError, errors.InvalidParameterError, "invalid address space"),
        (errors.InvalidPoolError, errors.InvalidParameterError, "invalid address pool"),
        (errors.InvalidSubPoolError, errors.InvalidParameterError, "invalid address subpool"),
        (
            errors.IPOutOfRangeError,
            errors.InvalidParameterError,
            "requested address is out of range",
        ),
        (
            errors.BadPoolError,
            errors.InvalidParameterError,
            "address space does not contain specified address pool",
        ),
        (
            errors.NoAvailableIPsError,
            errors.UnavailableError,
            "no available addresses on this pool",
        ),
        (errors.NoIPReturnedError, errors.UnavailableError, "no address returned"),
        (errors.IPAlreadyAllocatedError, errors.ForbiddenError, "Address already in use"),
        (
            errors.PoolOverlapError,
            errors.ForbiddenError,
            "Pool overlaps with other one on this address space",
        ),
    ],
)
def test_well_known_errors_carry_dockers_text_and_class(
    cls: type[errors.IpamError], parent: type[errors.IpamError], message: str
) -> None:
    error = cls()
    assert isinstance(error, parent)
    assert isinstance(error, errors.IpamError)
    assert str(error) == error.message == message
    assert str(cls("more precise")) == "more precise"


def test_no_more_subnets_is_unavailable() -> None:
    assert issubclass(errors.NoMoreSubnetsError, errors.UnavailableError)


def test_forbidden_catches_pool_overlap() -> None:
    with pytest.raises(errors.ForbiddenError):
        raise errors.PoolOverlapError


def test_capability_is_frozen_and_typed() -> None:
    capability = ipamkit.Capability(requires_request_replay=True)
    assert capability == ipamkit.Capability(False, True)
    with pytest.raises(AttributeError):
        capability.requires_mac_address = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        ipamkit.Capability(requires_mac_address=1)  # type: ignore[arg-type]


def test_ipam_is_abstract() -> None:
    with pytest.raises(TypeError):
        ipamkit.Ipam()  # type: ignore[abstract]


def test_results_unpack() -> None:
    pool_id, pool, meta = ipamkit.PoolResult("id", ipamkit.parse_pool("10.0.0.0/8"), {})  # type: ignore[arg-type]
    assert (pool_id, str(pool), meta) == ("id", "10.0.0.0/8", {})
    address, meta = ipamkit.AddressResult(None, {})
    assert address is None


def test_close_is_optional_and_a_driver_is_a_context_manager() -> None:
    closed: list[str] = []

    class Holding(NullIpam):
        def close(self) -> None:
            closed.append("closed")

    with Holding() as driver:
        assert isinstance(driver, Holding)
        assert closed == []
    assert closed == ["closed"]
    with pytest.raises(RuntimeError), Holding():
        raise RuntimeError("the body failed")
    assert closed == ["closed", "closed"]
    # A driver that holds nothing inherits a close() that does nothing, twice over.
    plain = ipamkit.Host().driver("default")
    plain.close()
    plain.close()
    assert plain.request_pool("LocalDefault", "10.0.0.0/24").pool_id == "LocalDefault/10.0.0.0/24"
