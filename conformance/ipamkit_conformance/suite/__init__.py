"""The packaged suite. ``from ipamkit_conformance.suite import *`` in a test module of
a driver's own tree runs every test of the installed version, new ones included
(with ``--ipam-driver=NAME``, or ``addopts`` in the pytest configuration).
"""

from ipamkit_conformance.suite.test_addresses import *  # noqa: F403
from ipamkit_conformance.suite.test_persistence import *  # noqa: F403
from ipamkit_conformance.suite.test_pools import *  # noqa: F403
from ipamkit_conformance.suite.test_random_sequences import *  # noqa: F403
from ipamkit_conformance.suite.test_sharing import *  # noqa: F403
from ipamkit_conformance.suite.test_state import *  # noqa: F403
