"""Turn one plugin request (path and body) into its reply, calling the driver at most once.

How errors are answered, and why:

- An error the driver raises (the call was understood, the answer is no) is
  HTTP 200 with ``Error``: it is the IPAM API's own error field, and Docker
  reads it on every IPAM call. ``Error`` holds Docker's exact well-known
  message for the nine well-known classes; ``IpamkitError`` and
  ``IpamkitMessage`` (ignored by Docker) let ipamkit's client restore the exact
  class and message. Docker wraps either channel into an unclassified error, so
  nothing is lost for the daemon by choosing this one.
- A request that is not understood (unknown endpoint, malformed JSON, a
  mistyped field, a bug in the driver) is a 4xx or 5xx status with ``Err``, the
  plugin transport's error field, as Docker's remote API documents for
  syntactic problems. The driver is not called for it.

Every call is logged on ``ipamkit.protocol.server`` at INFO, with its fields
in the record's ``call`` attribute for structured formatters.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from ipamkit._contract import Capability, Ipam
from ipamkit._interfaces import interface_text
from ipamkit.errors import IpamError
from ipamkit.protocol import wire

__all__ = ["LIFETIME_MESSAGE", "Dispatcher", "Undo", "status_error"]

log = logging.getLogger("ipamkit.protocol.server")

#: Logged (WARNING) when an activation empties an in-memory driver.
LIFETIME_MESSAGE = (
    "Plugin.Activate: a new Docker daemon lifetime; the in-memory driver starts empty"
)

Undo = Callable[[], None]
# Status, reply body, and how to undo the call should its reply be lost.
Answer = tuple[int, bytes, Undo | None]
# What a method's handler gives: the reply body, the undo, and what the
# driver granted, for the log.
Handled = tuple[bytes, Undo | None, dict[str, str]]
_NOTHING: dict[str, str] = {}

# The request and reply fields worth a log line, by their names in the log.
_LOGGED = {
    "AddressSpace": "address_space",
    "PoolID": "pool_id",
    "Pool": "pool",
    "SubPool": "sub_pool",
    "V6": "v6",
    "Address": "address",
}


def status_error(status: int, text: str) -> tuple[int, bytes, None]:
    """A reply that the request was not understood: ``status`` with ``Err``."""
    return status, wire.encode({wire.STATUS_ERROR_FIELD: text}), None


class Dispatcher:
    """Decodes requests, calls the driver, encodes replies, and logs each call.

    ``renew`` builds a fresh driver; for a driver whose capability asks for
    request replay (it keeps no state of its own), every ``Plugin.Activate``
    replaces the driver with a fresh one, since the daemon activates a plugin
    once per lifetime and then replays everything it holds.
    """

    def __init__(
        self, driver: Ipam, capability: Capability, renew: Callable[[], Ipam] | None = None
    ) -> None:
        self._driver = driver
        self._capability = capability
        self._renew = renew if capability.requires_request_replay else None
        # By path: what the server has; a message's own hash is no cheaper.
        self._routes: dict[str, tuple[wire.Message, Callable[..., Handled]]] = {
            message.path: (message, handler)
            for message, handler in (
                (wire.ACTIVATE, self._activate),
                (wire.GET_CAPABILITIES, self._get_capabilities),
                (wire.GET_DEFAULT_ADDRESS_SPACES, self._get_default_address_spaces),
                (wire.REQUEST_POOL, self._request_pool),
                (wire.RELEASE_POOL, self._release_pool),
                (wire.REQUEST_ADDRESS, self._request_address),
                (wire.RELEASE_ADDRESS, self._release_address),
            )
        }

    @property
    def driver(self) -> Ipam:
        """The driver calls go to (a fresh one after each activation, for in-memory drivers)."""
        return self._driver

    def handle(self, path: str, body: bytes) -> Answer:
        """Answer one request."""
        started = time.perf_counter()
        route = self._routes.get(path)
        if route is None:
            return self._refuse(path, 404, f"unknown endpoint {path!r}")
        message, handler = route
        try:
            arguments = message.decode_request(body)
        except wire.WireError as exc:
            return self._refuse(message.method, 400, str(exc))
        try:
            reply, undo, granted = handler(*arguments)
        except IpamError as exc:
            outcome = {"result": type(exc).__name__, "error": exc.message}
            _log_call(logging.INFO, message, arguments, outcome, started)
            return 200, wire.encode(wire.error_reply(exc)), None
        except Exception as exc:
            text = f"internal error in the driver: {type(exc).__name__}: {exc}"
            outcome = {"result": type(exc).__name__, "error": str(exc)}
            _log_call(logging.ERROR, message, arguments, outcome, started, exc_info=True)
            return status_error(500, text)
        if log.isEnabledFor(logging.INFO):  # else the call's fields are not worth gathering
            _log_call(logging.INFO, message, arguments, {**granted, "result": "ok"}, started)
        return 200, reply, undo

    @staticmethod
    def _refuse(what: str, status: int, text: str) -> tuple[int, bytes, None]:
        log.warning("%s: refused (%d): %s", what, status, text)
        return status_error(status, text)

    def _activate(self) -> tuple[bytes, None, dict[str, str]]:
        if self._renew is not None:
            previous, self._driver = self._driver, self._renew()
            log.warning(LIFETIME_MESSAGE)
            previous.close()
        return wire.ACTIVATE.encode_reply([wire.IMPLEMENTS]), None, _NOTHING

    def _get_capabilities(self) -> tuple[bytes, None, dict[str, str]]:
        capability = self._capability
        reply = wire.GET_CAPABILITIES.encode_reply(
            capability.requires_mac_address, capability.requires_request_replay
        )
        return reply, None, _NOTHING

    def _get_default_address_spaces(self) -> tuple[bytes, None, dict[str, str]]:
        local, global_ = self._driver.get_default_address_spaces()
        return wire.GET_DEFAULT_ADDRESS_SPACES.encode_reply(local, global_), None, _NOTHING

    def _request_pool(
        self,
        address_space: str,
        pool: str,
        sub_pool: str,
        options: dict[str, str] | None,
        v6: bool,
    ) -> tuple[bytes, Undo, dict[str, str]]:
        driver = self._driver
        result = driver.request_pool(address_space, pool, sub_pool, options, v6)
        pool_id, pool = result.pool_id, str(result.pool)
        reply = wire.REQUEST_POOL.encode_reply(pool_id, pool, result.meta)
        return reply, lambda: driver.release_pool(pool_id), {"pool_id": pool_id, "pool": pool}

    def _release_pool(self, pool_id: str) -> tuple[bytes, None, dict[str, str]]:
        self._driver.release_pool(pool_id)
        return wire.RELEASE_POOL.encode_reply(), None, _NOTHING

    def _request_address(
        self, pool_id: str, address: str, options: dict[str, str] | None
    ) -> tuple[bytes, Undo | None, dict[str, str]]:
        driver = self._driver
        result = driver.request_address(pool_id, address or None, options)
        allocated = result.address
        if allocated is None:
            return wire.REQUEST_ADDRESS.encode_reply("", result.meta), None, _NOTHING
        text = interface_text(allocated)
        reply = wire.REQUEST_ADDRESS.encode_reply(text, result.meta)
        return reply, lambda: driver.release_address(pool_id, allocated.ip), {"address": text}

    def _release_address(self, pool_id: str, address: str) -> tuple[bytes, None, dict[str, str]]:
        self._driver.release_address(pool_id, address)
        return wire.RELEASE_ADDRESS.encode_reply(), None, _NOTHING


def _log_call(
    level: int,
    message: wire.Message,
    arguments: tuple[Any, ...],
    outcome: dict[str, str],
    started: float,
    *,
    exc_info: bool = False,
) -> None:
    if not log.isEnabledFor(level):
        return
    call: dict[str, Any] = {
        _LOGGED[name]: value
        for (name, _), value in zip(message.request, arguments, strict=True)
        if name in _LOGGED and value not in ("", None, False)
    }
    call.update(outcome)
    call["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    call["method"] = message.method
    # Made here rather than by log.log(), whose search of the stack for the
    # caller costs a fifth of an entry: the record names this module, line 0.
    record = log.makeRecord(
        log.name,
        level,
        __file__,
        0,
        _CallLine(call),
        (),
        sys.exc_info() if exc_info else None,
        extra={"call": call},
    )
    log.handle(record)


class _CallLine:
    """A call's log message, written only if a handler formats the record."""

    __slots__ = ("_call",)

    def __init__(self, call: dict[str, Any]) -> None:
        self._call = call

    def __str__(self) -> str:
        call = self._call
        details = "".join(f" {key}={value}" for key, value in call.items() if key not in _OUTCOME)
        outcome = call["result"] if "error" not in call else f"{call['result']}: {call['error']}"
        return f"{call['method']}{details} -> {outcome} ({call['duration_ms']:.3f} ms)"


_OUTCOME = frozenset({"result", "error", "duration_ms", "method"})
