"""The plugin's own words: what a remote driver sent and what the plugin replied.

The suite shows the exchange of a failing call, says when a reply carries its
error in ``Err`` (which Docker's IPAM client never reads), and can log every
exchange of a run as JSON lines.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ipamkit import Ipam

__all__ = ["Exchange", "WireLog"]

#: Exchanges kept per test for its report.
_KEPT = 8


@dataclass(frozen=True)
class Exchange:
    """One call to a plugin and its reply, as they went over the wire."""

    method: str
    request: bytes
    status: int
    reply: bytes

    @property
    def err_only(self) -> str | None:
        """The ``Err`` text of a reply that has it and no ``Error``, else None."""
        try:
            data = json.loads(self.reply)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        err, error = data.get("Err"), data.get("Error")
        return err if isinstance(err, str) and err and not error else None

    def text(self) -> str:
        """The exchange as a person reads it: request, reply and what Docker would make of it."""
        lines = [
            f"> POST /{self.method} {self.request.decode(errors='replace').strip()}",
            f"< {self.status} {self.reply.decode(errors='replace').strip()}",
        ]
        err = self.err_only
        if err is not None:
            lines.append(
                f'  note: the reply carries its error as "Err" ({err!r}), the network '
                "drivers' convention; Docker's IPAM client reads only \"Error\", so Docker "
                "drops this error and takes the reply as a success"
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
        client = getattr(driver, "_client", None)
        post = getattr(client, "_post", None)
        if post is None:
            return
        # The protocol client has no trace hook yet: its one way out is wrapped.
        # TODO(wire-client): use the client's trace hook once it has one.

        def traced(method: str, path: str, body: bytes) -> tuple[int, bytes]:
            status, reply = post(method, path, body)
            self(method, body, status, reply)
            return status, reply

        client._post = traced  # type: ignore[union-attr]

    def __call__(self, method: str, request: bytes, status: int, reply: bytes) -> None:
        """Record one exchange (the shape of a protocol client's trace hook)."""
        exchange = Exchange(method, request, status, reply)
        with self._lock:
            self._recent.append(exchange)
            if self._file is not None:
                record: dict[str, Any] = {
                    "test": self._test,
                    "method": method,
                    "request": request.decode(errors="replace"),
                    "status": status,
                    "reply": reply.decode(errors="replace"),
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
        flagged = next((e for e in recent if e.err_only is not None), None)
        if flagged is not None and flagged is not recent[-1]:
            shown.insert(0, flagged)
        return "\n".join(e.text() for e in shown)

    def close(self) -> None:
        """Close the log file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
