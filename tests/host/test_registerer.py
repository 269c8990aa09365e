"""The host as a registerer: Docker's registration rules."""

from __future__ import annotations

import pytest

import ipamkit
from ipamkit.drivers.null import NullIpam
from ipamkit.errors import ForbiddenError, InvalidParameterError
from tests.conftest import Site


class Custom(NullIpam):
    def is_builtin(self) -> bool:
        return False


def test_register_in_code_and_load_by_name() -> None:
    host = ipamkit.Host()
    driver = Custom()
    host.register_ipam_driver("custom", driver)
    assert host.driver("custom") is driver
    assert host.capability("custom") == ipamkit.Capability()
    assert "custom" in host.names()
    row = next(row for row in host.describe() if row.name == "custom")
    assert (row.status, row.builtin, row.distribution) == ("ok", False, None)


def test_non_builtin_may_be_replaced_with_its_capabilities() -> None:
    host = ipamkit.Host()
    host.register_ipam_driver("custom", Custom())
    replacement = Custom()
    capability = ipamkit.Capability(requires_request_replay=True)
    host.register_ipam_driver_with_capabilities("custom", replacement, capability)
    assert host.driver("custom") is replacement
    assert host.capability("custom") == capability


@pytest.mark.parametrize("name", ["", "   "])
def test_d9_empty_name_is_invalid_parameter(name: str) -> None:
    with pytest.raises(InvalidParameterError, match="cannot be empty"):
        ipamkit.Host().register_ipam_driver(name, Custom())


@pytest.mark.parametrize("name", ["default", "null"])
def test_builtin_name_is_forbidden(name: str) -> None:
    host = ipamkit.Host()
    with pytest.raises(ForbiddenError, match="already registered"):
        host.register_ipam_driver(name, Custom())


def test_builtin_driver_registered_in_code_cannot_be_replaced() -> None:
    host = ipamkit.Host()
    host.register_ipam_driver("mine", NullIpam())  # NullIpam.is_builtin() is True
    with pytest.raises(ForbiddenError):
        host.register_ipam_driver("mine", Custom())


def test_wrong_types_are_type_errors() -> None:
    host = ipamkit.Host()
    with pytest.raises(TypeError, match=r"ipamkit\.Ipam"):
        host.register_ipam_driver("x", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Capability"):
        host.register_ipam_driver_with_capabilities("x", Custom(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        host.register_ipam_driver(3, Custom())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ipamkit.Host(options={"x": "not a mapping"})  # type: ignore[dict-item]
    assert "x" not in host.names()


def test_host_satisfies_the_registerer_protocol() -> None:
    registerer: ipamkit.Registerer = ipamkit.Host()
    registerer.register_ipam_driver("custom", Custom())


PAIR_PLUGIN = """
    from ipamkit import hookimpl
    from ipamkit.drivers.null import NullIpam

    @hookimpl
    def ipamkit_register_drivers(registerer):
        registerer.register_ipam_driver("left", NullIpam())
        registerer.register_ipam_driver("right", NullIpam())
"""


def test_driver_registered_in_code_wins_over_its_plugin(site: Site) -> None:
    site.install(
        "pair-dist", {"left": "pair_plugin", "right": "pair_plugin"}, {"pair_plugin": PAIR_PLUGIN}
    )
    host = ipamkit.Host()
    mine = Custom()
    host.register_ipam_driver("left", mine)
    assert host.driver("right") is not mine
    assert host.driver("left") is mine
