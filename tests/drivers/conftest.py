"""Fixtures for the driver tests."""

from __future__ import annotations

import pytest

from ipamkit.drivers.default import DefaultIpam


@pytest.fixture
def ipam() -> DefaultIpam:
    """A default driver with Docker's predefined lists."""
    return DefaultIpam()
