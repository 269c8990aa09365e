"""Find a v1 plugin by name, the way Docker's daemon does.

A socket ``NAME.sock`` or ``NAME/NAME.sock`` in a plugin directory comes first;
then a spec file ``NAME.spec`` (a URL) or ``NAME.json`` (``{"Addr": ...,
"TLSConfig": {...}}``), as such or inside ``NAME/``, in each spec directory in
turn.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from ipamkit.errors import InvalidParameterError
from ipamkit.protocol.client import Endpoint, TLSConfig

__all__ = ["PLUGIN_DIRS", "SPEC_DIRS", "check_plugin_name", "find_plugin"]

#: Where Docker looks for plugin sockets.
PLUGIN_DIRS = ("/run/docker/plugins",)
#: Where Docker looks for spec files, in order.
SPEC_DIRS = ("/etc/docker/plugins", "/usr/lib/docker/plugins")

# A name becomes a file name: no separators, no "..", nothing hidden.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_plugin_name(name: str) -> str:
    """Return ``name`` if it can name a plugin file, else raise InvalidParameterError."""
    if _NAME.fullmatch(name) is None or ".." in name:
        raise InvalidParameterError(
            f"invalid plugin name {name!r}: letters, digits, '_', '.' and '-' only"
        )
    return name


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _read_spec(path: Path) -> Endpoint:
    text = path.read_text().strip()
    try:
        return Endpoint.parse(text)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"spec file {path}: {exc}") from None


def _read_json_spec(path: Path) -> Endpoint:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidParameterError(f"spec file {path}: malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameterError(f"spec file {path}: expected a JSON object")
    # Go's decoder matches field names case-insensitively; so does this.
    fields = {str(key).lower(): value for key, value in data.items()}
    addr = fields.get("addr")
    if not isinstance(addr, str) or not addr:
        raise InvalidParameterError(f"spec file {path}: no Addr")
    tls = None
    raw_tls = fields.get("tlsconfig")
    if isinstance(raw_tls, dict):
        options = {str(key).lower(): value for key, value in raw_tls.items()}
        tls = TLSConfig(
            ca_file=str(options.get("cafile") or ""),
            cert_file=str(options.get("certfile") or ""),
            key_file=str(options.get("keyfile") or ""),
            insecure_skip_verify=options.get("insecureskipverify") is True,
        )
    try:
        return Endpoint.parse(addr, tls)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"spec file {path}: {exc}") from None


def find_plugin(
    name: str,
    plugin_dirs: Sequence[str | os.PathLike[str]] = PLUGIN_DIRS,
    spec_dirs: Sequence[str | os.PathLike[str]] = SPEC_DIRS,
) -> Endpoint | None:
    """Return where the plugin ``name`` listens, or None if nothing names it."""
    check_plugin_name(name)
    for directory in map(Path, plugin_dirs):
        for candidate in (directory / f"{name}.sock", directory / name / f"{name}.sock"):
            if _is_socket(candidate):
                return Endpoint("unix", str(candidate))
    for directory in map(Path, spec_dirs):
        for extension, reader in ((".spec", _read_spec), (".json", _read_json_spec)):
            for candidate in (
                directory / f"{name}{extension}",
                directory / name / f"{name}{extension}",
            ):
                if candidate.is_file():
                    return reader(candidate)
    return None
