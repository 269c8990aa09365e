"""A small etcd v3 client over the JSON gateway, on urllib3.

Why this client. The Python etcd clients are thin: ``etcd3``, the only widely
used one, fails to import with current protobuf; the working gRPC and asyncio
ones have few users and some take a single endpoint only. etcd answers the v3
API as JSON on its client port (``/v3/kv/txn``, ``/v3/kv/range``), so a client
needs only an HTTP library, and this one needs three calls (range, txn,
authenticate). The HTTP library was chosen by measurement: etcd 3.4, one
member on loopback, one caller doing create-if-absent transactions, on the
project's 2 shared cores (load average 3 to 18, so the rates are noisy):

========  ==============  =========================
library   txns/s          client CPU per txn
========  ==============  =========================
httpx     226, 375, 450   667-990 µs
urllib3   393, 404, 463   450-620 µs
========  ==============  =========================

The client's CPU comes out of the same cores etcd runs on, so it counts:
urllib3, as well kept as httpx, costs half as much (``http.client`` alone is
leaner still, 230-310 µs, but has no connection pool for many threads).
``bench/bench_etcd.py`` prints both libraries' figures in every run.

Failover. Every request has a short deadline (``timeout``) and is re-sent to
the next endpoint when it fails, with a short back-off, until the retry budget
(``retry`` seconds) is spent. A member that died refuses connections at once;
one cut off from the leader answers "no leader" or stalls until the deadline:
either way the caller moves on, and the pause is about the election itself:
with the default 0.5 s deadline, killing the leader of 3 members under 4
hosts' load paused each host 1.1-1.5 s while the election took 1.0-1.3 s
(``tests/test_hosts.py`` and the benchmark print it). Re-sending is only
correct because every write this package makes is a guarded transaction
(create-if-absent, or a compare on a revision or value) whose outcome the
caller reads back: a request whose answer was lost may have landed, and the
caller tells by the owner and nonce it wrote (see ``_driver``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from ipamkit.errors import InvalidParameterError, UnavailableError

__all__ = [
    "EtcdClient",
    "EtcdUnavailableError",
    "KeyValue",
    "TLSFiles",
    "TxnResult",
    "absent",
    "b64",
    "created_at",
    "delete",
    "get",
    "holds",
    "modified_at",
    "prefix_end",
    "put",
]

_FIRST_BACKOFF = 0.02
_MAX_BACKOFF = 0.25
# gRPC codes etcd answers with while it cannot serve (no leader, leader
# changed, timed out, too many requests): worth another endpoint.
_RETRY_CODES = frozenset({1, 4, 8, 10, 13, 14})
_UNAUTHENTICATED = 16
_NO_USER = "user name is empty"


class EtcdUnavailableError(UnavailableError):
    """etcd did not answer within the retry budget: nothing was granted or changed
    that the caller was told of (a write may have landed; a retry finds it)."""

    default_message = "etcd is unavailable"


@dataclass(frozen=True)
class TLSFiles:
    """Files for TLS to etcd: the CA that signed its certificate, and a client certificate."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd reports it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class TxnResult:
    """A transaction's outcome: which branch ran, its range results, the revision."""

    succeeded: bool
    #: For each operation of the branch that ran, the keys a range returned (else empty).
    ranges: list[list[KeyValue]]
    revision: int


def b64(data: str | bytes) -> str:
    """Encode a key or value for the JSON gateway."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        base64.b64decode(item["key"]).decode(),
        base64.b64decode(item.get("value", "")),
        int(item.get("create_revision", 0)),
        int(item.get("mod_revision", 0)),
    )


class _Refused(Exception):
    """One attempt failed in a way another endpoint (or a later try) may not."""


class EtcdClient:
    """Range reads and transactions against a list of etcd endpoints.

    Thread-safe: connections are pooled per endpoint, and the endpoint that
    answered last is tried first by every thread.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float,
        retry: float,
        tls: TLSFiles | None = None,
        user: str = "",
        password: str = "",
        pool_size: int = 16,
    ) -> None:
        if not endpoints:
            raise InvalidParameterError("etcd: at least one endpoint is needed")
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._retry = retry
        self._user = user
        self._password = password
        self._pools = [_connection_pool(url, timeout, tls, pool_size) for url in endpoints]
        self.endpoints = tuple(endpoints)
        self._current = 0
        self._tokens: dict[int, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close every connection."""
        for pool in self._pools:
            pool.close()

    # -- the three calls -----------------------------------------------------------

    def range(
        self, key: str, range_end: str = "", *, limit: int = 0, keys_only: bool = False
    ) -> tuple[list[KeyValue], bool, int]:
        """Read ``[key, range_end)`` (or the one key); return the keys, whether more
        remain past ``limit``, and the store's revision."""
        body: dict[str, Any] = {"key": b64(key)}
        if range_end:
            body["range_end"] = b64(range_end)
        if limit:
            body["limit"] = limit
        if keys_only:
            body["keys_only"] = True
        reply = self._post("/v3/kv/range", body)
        kvs = [_kv(item) for item in reply.get("kvs", ())]
        return kvs, bool(reply.get("more")), int(reply["header"]["revision"])

    def range_all(self, key: str, range_end: str, *, keys_only: bool = False) -> list[KeyValue]:
        """Read every key of ``[key, range_end)``, page by page (a reply stays small)."""
        found: list[KeyValue] = []
        start = key
        while True:
            page, more, _ = self.range(start, range_end, limit=2000, keys_only=keys_only)
            found.extend(page)
            if not more or not page:
                return found
            start = page[-1].key + "\0"

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: Sequence[dict[str, Any]] = (),
    ) -> TxnResult:
        """Run one transaction (operations built by :func:`put`, :func:`delete`, :func:`get`)."""
        body = {"compare": compare, "success": success, "failure": list(failure)}
        reply = self._post("/v3/kv/txn", body)
        ranges = [
            [_kv(item) for item in response.get("response_range", {}).get("kvs", ())]
            for response in reply.get("responses", ())
        ]
        return TxnResult(bool(reply.get("succeeded")), ranges, int(reply["header"]["revision"]))

    # -- sending -------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        deadline = time.monotonic() + self._retry
        backoff = _FIRST_BACKOFF
        problems: list[str] = []
        start = self._current
        attempt = 0
        while True:
            index = (start + attempt) % len(self._pools)
            try:
                reply = self._attempt(index, path, data)
            except _Refused as exc:
                problems.append(f"{self.endpoints[index]}: {exc}")
            else:
                if index != start:
                    self._current = index
                return reply
            attempt += 1
            if attempt % len(self._pools) == 0:  # every endpoint tried once: wait a little
                if time.monotonic() + backoff > deadline:
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            elif time.monotonic() > deadline:
                break
        raise EtcdUnavailableError(
            f"etcd did not answer within {self._retry:g} s; last errors: "
            + "; ".join(problems[-len(self._pools) :])
        )

    def _attempt(self, index: int, path: str, data: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._user:
            headers["Authorization"] = self._token(index)
        try:
            response = self._pools[index].urlopen(
                "POST",
                path,
                body=data,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _Refused(type(exc).__name__ + ": " + str(exc)) from None
        try:
            reply = json.loads(response.data)
        except ValueError:
            raise _Refused(f"HTTP {response.status}, not JSON: {response.data[:200]!r}") from None
        if response.status == 200 and "error" not in reply:
            return reply  # type: ignore[no-any-return]
        message = str(reply.get("message") or reply.get("error") or reply)
        code = reply.get("code")
        if _NO_USER in message and not self._user:
            raise InvalidParameterError(
                f"etcd at {self.endpoints[index]} requires authentication: "
                "give the options user and password"
            )
        if code == _UNAUTHENTICATED or _NO_USER in message:
            # Simple tokens are per member and die with it: get another.
            with self._lock:
                self._tokens.pop(index, None)
            raise _Refused(message)
        if code in _RETRY_CODES or response.status >= 500:
            raise _Refused(message)
        raise InvalidParameterError(f"etcd refused the request: {message}")

    def _token(self, index: int) -> str:
        with self._lock:
            token = self._tokens.get(index)
        if token is not None:
            return token
        body = json.dumps({"name": self._user, "password": self._password}).encode()
        try:
            response = self._pools[index].urlopen(
                "POST",
                "/v3/auth/authenticate",
                body=body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                retries=False,
            )
            reply = json.loads(response.data)
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            raise _Refused(f"cannot authenticate: {exc}") from None
        token = reply.get("token")
        if not token:
            message = reply.get("message") or reply.get("error") or reply
            if response.status < 500:
                raise InvalidParameterError(f"etcd refused user {self._user!r}: {message}")
            raise _Refused(f"cannot authenticate: {message}")
        with self._lock:
            self._tokens[index] = token
        return str(token)


def _connection_pool(
    url: str, timeout: float, tls: TLSFiles | None, size: int
) -> urllib3.HTTPConnectionPool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameterError(
            f"etcd endpoint {url!r} must be an http:// or https:// URL with a host"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 2379)
    except ValueError:
        raise InvalidParameterError(f"etcd endpoint {url!r} has an invalid port") from None
    if parts.path not in ("", "/"):
        raise InvalidParameterError(f"etcd endpoint {url!r} must not have a path")
    if parts.scheme == "http":
        return urllib3.HTTPConnectionPool(parts.hostname, port, maxsize=size, timeout=timeout)
    files = tls or TLSFiles()
    return urllib3.HTTPSConnectionPool(
        parts.hostname,
        port,
        maxsize=size,
        timeout=timeout,
        ca_certs=files.ca_file or None,
        cert_file=files.cert_file or None,
        key_file=files.key_file or None,
        cert_reqs="CERT_REQUIRED",
    )


# -- operations and comparisons, in the gateway's JSON ---------------------------------


def put(key: str, value: bytes) -> dict[str, Any]:
    """A put of ``key``."""
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def delete(key: str, range_end: str = "") -> dict[str, Any]:
    """A delete of ``key``, or of ``[key, range_end)``."""
    request = {"key": b64(key)}
    if range_end:
        request["range_end"] = b64(range_end)
    return {"request_delete_range": request}


def get(key: str) -> dict[str, Any]:
    """A read of ``key``."""
    return {"request_range": {"key": b64(key)}}


def absent(key: str) -> dict[str, Any]:
    """``key`` does not exist."""
    return {"key": b64(key), "target": "CREATE", "create_revision": "0"}


def created_at(key: str, revision: int) -> dict[str, Any]:
    """``key`` exists since ``revision`` (this incarnation of it, not a later one)."""
    return {"key": b64(key), "target": "CREATE", "create_revision": str(revision)}


def modified_at(key: str, revision: int) -> dict[str, Any]:
    """``key`` was last changed at ``revision`` (0: it does not exist)."""
    return {"key": b64(key), "target": "MOD", "mod_revision": str(revision)}


def holds(key: str, value: bytes) -> dict[str, Any]:
    """``key`` holds exactly ``value``."""
    return {"key": b64(key), "target": "VALUE", "value": b64(value)}


def prefix_end(prefix: str) -> str:
    """The end of the range of every key that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
