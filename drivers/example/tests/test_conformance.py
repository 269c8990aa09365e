"""The installed conformance suite, every test of it, against this driver (see addopts)."""

from ipamkit_conformance.suite import *  # noqa: F403
