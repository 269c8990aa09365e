"""``python -m ipamkit``: the command line."""

import sys

from ipamkit.cli import main

sys.exit(main())
