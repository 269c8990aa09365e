"""Docker's IPAM plugin protocol: endpoints, JSON bodies, and errors on the wire.

Both ends of ipamkit use this module: the ``remote`` driver (client) and
``ipamkit serve`` (server). Bodies are encoded as Docker's daemon encodes them
(Go's ``json.Encoder``: compact, a trailing newline, every field present, map
keys sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped) and decoded as Go's
``encoding/json`` decodes them (field names matched case-insensitively, unknown
fields ignored, an absent or ``null`` field its zero value).

Errors travel as the plugin's text. Docker's nine well-known messages map back
to their classes; ipamkit's server also adds ``IpamkitError`` (the class name)
and ``IpamkitMessage`` (the exact message), which Docker ignores, so that
ipamkit's client restores any contract error exactly.
"""

from __future__ import annotations

import enum
import json
import json.scanner
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ipamkit import errors
from ipamkit._contract import PLUGIN_ENDPOINT_TYPE
from ipamkit.errors import IpamError, PluginError

__all__ = [
    "ACTIVATE",
    "CLASS_FIELD",
    "ERROR_FIELD",
    "GET_CAPABILITIES",
    "GET_DEFAULT_ADDRESS_SPACES",
    "IMPLEMENTS",
    "MAX_MESSAGE",
    "MEDIA_TYPE",
    "MESSAGES",
    "MESSAGE_FIELD",
    "RELEASE_ADDRESS",
    "RELEASE_POOL",
    "REQUEST_ADDRESS",
    "REQUEST_POOL",
    "STATUS_ERROR_FIELD",
    "WELL_KNOWN",
    "Kind",
    "Message",
    "WireError",
    "clip",
    "encode",
    "error_reply",
    "has_misplaced_err",
]

#: The media type Docker's daemon sends in ``Accept`` (and ipamkit answers with).
MEDIA_TYPE = "application/vnd.docker.plugins.v1.2+json"
#: The field of an IPAM reply that carries a driver error (HTTP 200).
ERROR_FIELD = "Error"
#: The field of a non-200 reply that carries the error (Docker's plugin transport).
STATUS_ERROR_FIELD = "Err"
#: Extra reply fields of ipamkit's server: the error's class name and exact message.
CLASS_FIELD = "IpamkitError"
MESSAGE_FIELD = "IpamkitMessage"
#: Longest error message built from a reply's text; the rest is cut (the error's
#: ``text`` keeps all of it).
MAX_MESSAGE = 1000
#: What ``/Plugin.Activate`` lists for an IPAM driver.
IMPLEMENTS = PLUGIN_ENDPOINT_TYPE


class WireError(ValueError):
    """A body does not follow the protocol."""


class Kind(enum.Enum):
    """The JSON type of a field, and Go's zero value for it."""

    STR = ""
    BOOL = False
    #: ``map[string]string``; ``null`` stands for none.
    OPTIONS = None
    #: ``[]string``.
    STRS = ()


def _check(kind: Kind, name: str, value: object) -> Any:
    """Return ``value`` as Python holds a field of ``kind``, or raise :class:`WireError`."""
    if kind is Kind.STR and isinstance(value, str):
        return value
    if kind is Kind.BOOL and isinstance(value, bool):
        return value
    if kind is Kind.OPTIONS:
        if value is None:
            return None
        if isinstance(value, dict) and (
            not value or all(isinstance(v, str) for v in value.values())
        ):
            return value
        raise WireError(f"field {name!r} must be an object of strings or null")
    if kind is Kind.STRS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise WireError(f"field {name!r} must be {_KIND_NAMES[kind]}, not {_json_type(value)}")


_KIND_NAMES = {Kind.STR: "a string", Kind.BOOL: "a boolean", Kind.STRS: "a list of strings"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# Go's encoder escapes these inside strings; in compact JSON they occur nowhere else.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


# Built once: json.dumps() and json.loads() with arguments build a new coder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder()
# The C string encoder that JSONEncoder(ensure_ascii=False) itself uses.
_string = json.encoder.encode_basestring
# The C scanner that _DECODER.decode() wraps in two regular expressions and
# two calls, which cost as much as the scanning of a short body. (typeshed
# types its argument as a scanner, where the code wants any decoder.)
_scan = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_JSON_SPACE = " \t\n\r"


def _json(value: object) -> str:
    """``value`` in compact JSON, a map's keys sorted (Go's order for a map)."""
    # The protocol's values are strings, booleans, null and flat maps: written
    # here they cost half of what JSONEncoder.encode() costs per call; strings
    # (and anything else) are still the json module's.
    if value.__class__ is str:
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict):
        return "{" + ",".join([f"{_json(k)}:{_json(v)}" for k, v in sorted(value.items())]) + "}"
    return _ENCODER.encode(value)


def _finish(text: str) -> bytes:
    """A JSON text as Go's encoder writes it out: escaped as Go escapes, in UTF-8."""
    # Testing for the five characters costs a tenth of translating a short text.
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = text.translate(_GO_ESCAPES)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate is no UTF-8; Go writes U+FFFD for each such byte.
        return text.encode(errors="surrogatepass").decode(errors="replace").encode()


def encode(fields: Mapping[str, object]) -> bytes:
    """Encode a JSON object exactly as Go's ``json.Encoder`` does (fields in the given order)."""
    body = ",".join([f"{_string(name)}:{_json(value)}" for name, value in fields.items()])
    return _finish("{" + body + "}\n")


# Nesting at which a body that fails to decode failed for its depth: far below
# any recursion limit, far above Docker's three levels.
_DEEP = 100
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _nesting(body: bytes) -> int:
    """The deepest nesting of brackets in ``body``, outside strings (for error messages)."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", body):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def _parse_object(body: bytes) -> dict[str, object]:
    """Decode a JSON object, its keys spelt as the protocol's fields are (Go's matching).

    A key that matches a field case-insensitively is that field's name;
    another is in lower case.
    """
    # As Go reads JSON: UTF-8 only (json.loads would also guess UTF-16 and
    # -32), and an invalid byte is U+FFFD, not an error.
    text = body.decode(errors="replace")
    try:
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            value, end = None, -1  # leading space, or no JSON: the decoder says which
        if end != len(text) and (end < 0 or text[end:].strip(_JSON_SPACE)):
            value = _DECODER.decode(text)
    except ValueError as exc:
        # Python 3.13's decoder reports its recursion limit as a missing value.
        if _nesting(body) >= _DEEP:
            raise WireError("malformed JSON: nested too deeply") from None
        raise WireError(f"malformed JSON: {exc}") from None
    except RecursionError:
        # Before 3.13 the stdlib decoder recursed once per nesting level, unchecked.
        raise WireError("malformed JSON: nested too deeply") from None
    if value.__class__ is not dict:
        raise WireError(f"expected a JSON object, got {_json_type(value)}")
    if value.keys() <= _FIELD_NAMES:
        return value  # Docker's and ipamkit's spelling: nothing to fold
    # Go assigns fields in document order, so of two keys that differ only in
    # case the last one wins; so does this.
    folded: dict[str, object] = {}
    for key, item in value.items():
        lower = key.lower()
        folded[_FOLDED.get(lower, lower)] = item
    return folded


class _Fields:
    """The fields of a request or reply body, and what reads and writes them quickly."""

    __slots__ = ("fields", "readers", "template")

    def __init__(self, fields: tuple[tuple[str, Kind], ...]) -> None:
        self.fields = fields
        # Each field's name, kind, zero value and whether it is a string:
        # reading an enum member's value is a Python-level call each time.
        self.readers = tuple((name, kind, kind.value, kind is Kind.STR) for name, kind in fields)
        # The body with a %s for each value: one formatting per body.
        self.template = (
            "{" + ",".join(_string(name).replace("%", "%%") + ":%s" for name, _ in fields) + "}\n"
        )

    def encode(self, values: tuple[object, ...]) -> bytes:
        if len(values) != len(self.fields):
            raise TypeError(f"expected {len(self.fields)} values, got {len(values)}")
        if not values:
            return b""
        return _finish(self.template % tuple([_json(value) for value in values]))

    def read(self, data: dict[str, object]) -> tuple[Any, ...]:
        """The fields' values in ``data`` (from :func:`_parse_object`); absent ones are zero."""
        values = []
        for name, kind, zero, string in self.readers:
            value = data.get(name)
            if value is None:
                value = zero
            elif not string or value.__class__ is not str:
                value = _check(kind, name, value)
            values.append(value)
        return tuple(values)


# Compared and hashed by identity: a frozen dataclass hashes every field, its
# kinds' Python-level hashes included, at each lookup in a dict.
@dataclass(frozen=True, eq=False)
class Message:
    """One plugin method: its name, request fields and reply fields."""

    method: str
    request: tuple[tuple[str, Kind], ...] = ()
    reply: tuple[tuple[str, Kind], ...] = ()
    #: The HTTP path the method is posted to.
    path: str = field(init=False, repr=False)
    _request: _Fields = field(init=False, repr=False)
    _reply: _Fields = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", "/" + self.method)
        object.__setattr__(self, "_request", _Fields(self.request))
        object.__setattr__(self, "_reply", _Fields(self.reply))

    def encode_request(self, *values: object) -> bytes:
        """Encode a request body; an argument-less method has an empty body."""
        return self._request.encode(values)

    def encode_reply(self, *values: object) -> bytes:
        """Encode a successful reply."""
        return self._reply.encode(values) if self.reply else _EMPTY_OBJECT

    def decode_request(self, body: bytes) -> tuple[Any, ...]:
        """Decode a request body as Go does: an absent or null field is its zero value.

        A mistyped field, or a body that is no JSON object, is :class:`WireError`.
        """
        if not self.request:
            return ()
        return self._request.read(_parse_object(body))

    def read_reply(self, body: bytes, *, status: int) -> tuple[Any, ...]:
        """Read a reply as Docker's daemon does: raise the error it reports, else return its fields.

        A status other than 200 is always an error: its text is the ``Err`` field
        or else the raw body (Docker's ``"<Method>: <text>"``). A 200 reply is an
        error when its ``Error`` field is not empty (Docker's ``"remote: <text>"``;
        an activation reply's is not read); an ``Err`` field in it means nothing.
        A missing or null field is its zero value; a mistyped one, or a body
        that is no JSON object, is :class:`WireError`.
        """
        try:
            data = _parse_object(body)
        except WireError:
            if status == 200:
                raise
            data = {}
        if ERROR_FIELD in data or status != 200:
            error = self._reported_error(data, body, status)
            if error is not None:
                raise error
        return self._reply.read(data)

    def _reported_error(
        self, data: dict[str, object], body: bytes, status: int
    ) -> IpamError | None:
        if status == 200:
            text = data.get(ERROR_FIELD)
            if self is ACTIVATE or not isinstance(text, str) or not text:
                return None
            wording = f"remote: {text}"
        else:
            text = data.get(STATUS_ERROR_FIELD)
            if not isinstance(text, str) or not text:
                text = body.decode(errors="replace")
            wording = f"{self.method}: {text}"
        cls = _RESTORABLE.get(str(data.get(CLASS_FIELD)))
        message = data.get(MESSAGE_FIELD)
        if cls is not None:
            return cls(clip(message if isinstance(message, str) else text))
        well_known = WELL_KNOWN.get(text)
        if well_known is not None:
            return well_known(text)
        return PluginError(clip(wording), method=self.method, text=text)


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_MESSAGE` characters, saying how much was cut."""
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE} more characters)"


def has_misplaced_err(body: bytes) -> bool:
    """Whether a reply body has a non-empty ``Err`` and no non-empty ``Error``.

    In a 200 reply that is an error Docker's daemon never sees (it reads
    ``Error`` only): what a trace should point out.
    """
    try:
        data = _parse_object(body)
    except WireError:
        return False
    err, error = data.get(STATUS_ERROR_FIELD), data.get(ERROR_FIELD)
    return isinstance(err, str) and bool(err) and not (isinstance(error, str) and error)


_STR, _BOOL, _OPTIONS, _STRS = Kind.STR, Kind.BOOL, Kind.OPTIONS, Kind.STRS

ACTIVATE = Message("Plugin.Activate", reply=(("Implements", _STRS),))
GET_CAPABILITIES = Message(
    f"{PLUGIN_ENDPOINT_TYPE}.GetCapabilities",
    reply=(("RequiresMACAddress", _BOOL), ("RequiresRequestReplay", _BOOL)),
)
GET_DEFAULT_ADDRESS_SPACES = Message(
    f"{PLUGIN_ENDPOINT_TYPE}.GetDefaultAddressSpaces",
    reply=(("LocalDefaultAddressSpace", _STR), ("GlobalDefaultAddressSpace", _STR)),
)
REQUEST_POOL = Message(
    f"{PLUGIN_ENDPOINT_TYPE}.RequestPool",
    request=(
        ("AddressSpace", _STR),
        ("Pool", _STR),
        ("SubPool", _STR),
        ("Options", _OPTIONS),
        ("V6", _BOOL),
    ),
    reply=(("PoolID", _STR), ("Pool", _STR), ("Data", _OPTIONS)),
)
RELEASE_POOL = Message(f"{PLUGIN_ENDPOINT_TYPE}.ReleasePool", request=(("PoolID", _STR),))
REQUEST_ADDRESS = Message(
    f"{PLUGIN_ENDPOINT_TYPE}.RequestAddress",
    request=(("PoolID", _STR), ("Address", _STR), ("Options", _OPTIONS)),
    reply=(("Address", _STR), ("Data", _OPTIONS)),
)
RELEASE_ADDRESS = Message(
    f"{PLUGIN_ENDPOINT_TYPE}.ReleaseAddress", request=(("PoolID", _STR), ("Address", _STR))
)

#: Every message by its HTTP path.
MESSAGES: Mapping[str, Message] = {
    m.path: m
    for m in (
        ACTIVATE,
        GET_CAPABILITIES,
        GET_DEFAULT_ADDRESS_SPACES,
        REQUEST_POOL,
        RELEASE_POOL,
        REQUEST_ADDRESS,
        RELEASE_ADDRESS,
    )
}

# Every field name of the protocol: a body's key that matches one
# case-insensitively is read as that field.
_FIELD_NAMES = frozenset(
    [ERROR_FIELD, STATUS_ERROR_FIELD, CLASS_FIELD, MESSAGE_FIELD]
    + [name for m in MESSAGES.values() for name, _ in (*m.request, *m.reply)]
)
_FOLDED = {name.lower(): name for name in _FIELD_NAMES}
# Else a body spelt as one field would be taken as it is, and read as the other.
assert len(_FOLDED) == len(_FIELD_NAMES), "two fields differ only in case"
_EMPTY_OBJECT = b"{}\n"

#: Docker's nine well-known messages and the classes they stand for.
WELL_KNOWN: Mapping[str, type[IpamError]] = {
    cls.default_message: cls
    for cls in (
        errors.InvalidAddressSpaceError,
        errors.InvalidPoolError,
        errors.InvalidSubPoolError,
        errors.NoAvailableIPsError,
        errors.NoIPReturnedError,
        errors.IPAlreadyAllocatedError,
        errors.IPOutOfRangeError,
        errors.PoolOverlapError,
        errors.BadPoolError,
    )
}

# The classes a driver may raise, by name: only these are restored from
# CLASS_FIELD, so a reply cannot make the client build an arbitrary class.
_GENERAL: tuple[type[IpamError], ...] = (
    IpamError,
    errors.InvalidParameterError,
    errors.NotFoundError,
    errors.ForbiddenError,
    errors.UnavailableError,
    errors.NoMoreSubnetsError,
)
_RESTORABLE: Mapping[str, type[IpamError]] = {
    cls.__name__: cls for cls in (*_GENERAL, *WELL_KNOWN.values())
}


def error_reply(error: IpamError) -> dict[str, str]:
    """The fields of a reply that reports ``error``.

    ``Error`` holds Docker's exact well-known message when the class is one of
    the nine, so that any client can map it; the exact class and message ride
    along in fields Docker ignores.
    """
    well_known = type(error).default_message
    text = well_known if WELL_KNOWN.get(well_known) is type(error) else error.message
    return {ERROR_FIELD: text, CLASS_FIELD: type(error).__name__, MESSAGE_FIELD: error.message}
