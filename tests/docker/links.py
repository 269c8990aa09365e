"""A veth pair on the host: a parent for macvlan networks (``dummy`` links do not exist here)."""

from __future__ import annotations

import itertools
import secrets
from pathlib import Path

from tests.docker.processes import run

# Link names are global on the machine and at most 15 bytes: "ipk" + 6 hex + number + a/b.
_RUN = secrets.token_hex(3)
_NUMBERS = itertools.count()


class VethPair:
    """Two veth ends, both up; macvlan networks on either end share one L2 segment."""

    def __init__(self) -> None:
        number = next(_NUMBERS)
        self.ends = (f"ipk{_RUN}{number}a", f"ipk{_RUN}{number}b")

    def create(self) -> None:
        first, second = self.ends
        run(["ip", "link", "add", first, "type", "veth", "peer", "name", second])
        for end in self.ends:
            run(["ip", "link", "set", end, "up"])

    def delete(self) -> None:
        """Delete the pair (deleting one end deletes both)."""
        if Path(f"/sys/class/net/{self.ends[0]}").exists():
            run(["ip", "link", "delete", self.ends[0]])
