"""The plugin's own words: what a remote driver sent and what the plugin replied.

The suite shows the exchange of a failing call, says when a reply carries its
error in ``Err`` (which Docker's IPAM client never reads), and can log every
exchange of a run as JSON lines.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from ipamkit import Ipam
from ipamkit.drivers.remote import RemoteIpam
from ipamkit.protocol.client import Exchange

__all__ = ["WireLog", "describe"]

#: Exchanges kept per test for its report.
_KEPT = 8


def describe(exchange: Exchange) -> str:
    """An exchange as a person reads it: request, reply and what Docker would make of it."""
    lines = [f"> POST /{exchange.method} {exchange.request.decode(errors='replace').strip()}"]
    if exchange.status is None:
        lines.append(f"< no reply: {exchange.error}")
    else:
        lines.append(f"< {exchange.status} {exchange.reply.decode(errors='replace').strip()}")
    if exchange.err_field:
        lines.append(
            '  note: the reply carries its error as "Err", the network drivers\' '
            'convention; Docker\'s IPAM client reads only "Error", so Docker drops this '
            "error and takes the reply as a success"
        )
    return "\n".join(lines)


class WireLog:
    """Records the exchanges of every remote driver the suite makes.

    The recent exchanges of the running test are kept for its report; with a
    ``path``, every exchange of the run is appended there as one JSON line.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._recent: deque[Exchange] = deque(maxlen=_KEPT)
        self._test = ""
        self._file: IO[str] | None = path.open("w") if path is not None else None

    def watch(self, driver: Ipam) -> None:
        """Record ``driver``'s exchanges, if it talks to a plugin."""
        if isinstance(driver, RemoteIpam):
            driver.trace = self

    def __call__(self, exchange: Exchange) -> None:
        """Record one exchange (the protocol client's trace hook)."""
        with self._lock:
            self._recent.append(exchange)
            if self._file is not None:
                record: dict[str, Any] = {
                    "test": self._test,
                    "method": exchange.method,
                    "request": exchange.request.decode(errors="replace"),
                    "status": exchange.status,
                    "reply": exchange.reply.decode(errors="replace"),
                    "error": exchange.error,
                    "err_field": exchange.err_field,
                    "seconds": round(exchange.seconds, 6),
                }
                self._file.write(json.dumps(record) + "\n")

    def start(self, test: str) -> None:
        """Begin a test: its report shows only its own exchanges."""
        with self._lock:
            self._test = test
            self._recent.clear()

    def report(self) -> str:
        """The running test's last exchange, and the first that used ``Err``, as text."""
        with self._lock:
            recent = list(self._recent)
        if not recent:
            return ""
        shown = [recent[-1]]
        flagged = next((e for e in recent if e.err_field), None)
        if flagged is not None and flagged is not recent[-1]:
            shown.insert(0, flagged)
        return "\n".join(describe(e) for e in shown)

    def close(self) -> None:
        """Close the log file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
