"""The ``etcd`` IPAM driver: one address space for many Docker hosts, kept in etcd v3.

Options (all strings), given to the host under the driver name ``etcd``:

``endpoints``
    Comma-separated client URLs of the etcd members, ``http://`` or ``https://``
    (default ``http://127.0.0.1:2379``). Every member should be listed: a call
    moves on to the next one when a member fails.
``prefix``
    The key prefix (default ``/ipamkit/``). Every instance on the same prefix
    shares one global address space.
``host``
    This host's identity (default: the host name): it owns the local address
    space and is written into everything the host holds. Letters, digits,
    ``.``, ``_`` and ``-``.
``timeout``
    Seconds one request to one member may take before the next member is
    tried (default 0.5).
``retry``
    Seconds a call keeps trying members before it fails with
    :class:`EtcdUnavailableError` (default 10).
``ca_file``, ``cert_file``, ``key_file``
    TLS: the CA that signed the members' certificates, and a client
    certificate and its key (``https://`` endpoints only).
``user``, ``password``
    etcd authentication.
``local_pools``, ``global_pools``, ``local_ipv6_pools``, ``global_ipv6_pools``
    The predefined lists, as for the ``default`` driver. Every host sharing a
    prefix should be given the same lists.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping

from ipamkit import Capability, Registerer, hookimpl
from ipamkit.errors import InvalidParameterError
from ipamkit.predefined import LIST_OPTIONS, lists_from_options
from ipamkit_etcd._client import EtcdClient, EtcdUnavailableError, TLSFiles
from ipamkit_etcd._driver import GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, EtcdIpam

__all__ = [
    "GLOBAL_ADDRESS_SPACE",
    "LOCAL_ADDRESS_SPACE",
    "NAME",
    "EtcdIpam",
    "EtcdUnavailableError",
    "driver_from_options",
    "ipamkit_register_drivers",
]

NAME = "etcd"
DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/ipamkit/"
DEFAULT_TIMEOUT = 0.5
DEFAULT_RETRY = 10.0

_OPTIONS = (
    "endpoints",
    "prefix",
    "host",
    "timeout",
    "retry",
    "ca_file",
    "cert_file",
    "key_file",
    "user",
    "password",
    *LIST_OPTIONS,
)
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PREFIX = re.compile(r"[!-~]{1,200}")  # printable ASCII, no spaces


def _seconds(options: Mapping[str, str], name: str, default: float, *, zero: bool) -> float:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameterError(f"option {name}: {text!r} is not a number of seconds") from None
    if not (0 if zero else 1e-3) <= value < float("inf"):  # NaN fails this too
        bound = "0 or more" if zero else "at least 0.001"
        raise InvalidParameterError(f"option {name}: {text!r} must be {bound} seconds")
    return value


def _tls(options: Mapping[str, str], endpoints: list[str]) -> TLSFiles | None:
    files = {name: options.get(name, "") for name in ("ca_file", "cert_file", "key_file")}
    if not any(files.values()):
        return None
    if not all(url.startswith("https://") for url in endpoints):
        raise InvalidParameterError("options ca_file, cert_file, key_file need https:// endpoints")
    if files["key_file"] and not files["cert_file"]:
        raise InvalidParameterError("option key_file needs cert_file")
    for name, path in files.items():
        if path and not os.path.isfile(path):
            raise InvalidParameterError(f"option {name}: no file {path!r}")
    return TLSFiles(**files)


def driver_from_options(options: Mapping[str, str]) -> EtcdIpam:
    """Build a driver from the host's string options for ``etcd`` (no call to etcd yet)."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) for the etcd driver: {', '.join(unknown)}; "
            f"known: {', '.join(_OPTIONS)}"
        )
    endpoints = [url.strip() for url in options.get("endpoints", DEFAULT_ENDPOINTS).split(",")]
    if not all(endpoints):
        raise InvalidParameterError(f"option endpoints: empty URL in {options['endpoints']!r}")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if _PREFIX.fullmatch(prefix) is None:
        raise InvalidParameterError(
            f"option prefix: {prefix!r} must be 1 to 200 printable characters without spaces"
        )
    host = options.get("host") or socket.gethostname()
    if _HOST.fullmatch(host) is None:
        raise InvalidParameterError(
            f"option host: {host!r} must be letters, digits, '.', '_' or '-' (at most 128)"
        )
    user, password = options.get("user", ""), options.get("password", "")
    if password and not user:
        raise InvalidParameterError("option password needs user")
    client = EtcdClient(
        endpoints,
        timeout=_seconds(options, "timeout", DEFAULT_TIMEOUT, zero=False),
        retry=_seconds(options, "retry", DEFAULT_RETRY, zero=True),
        tls=_tls(options, endpoints),
        user=user,
        password=password,
    )
    return EtcdIpam(
        client,
        prefix=prefix if prefix.endswith("/") else prefix + "/",
        host=host,
        **lists_from_options(options),
    )


@hookimpl
def ipamkit_register_drivers(
    registerer: Registerer, options: Mapping[str, Mapping[str, str]]
) -> None:
    """Register the ``etcd`` driver; its state is in etcd, so it needs no replay."""
    registerer.register_ipam_driver_with_capabilities(
        NAME, driver_from_options(options.get(NAME, {})), Capability()
    )
