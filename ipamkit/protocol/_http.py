"""The server's side of HTTP/1.1: requests parsed with httptools, limits, and replies.

httptools (llhttp, the parser of Node.js) does the parsing; this module holds
what Docker's protocol adds on top: the size limits, POST only, no upgrades,
and the refusal of anything a browser sends (``Origin``, ``Sec-Fetch-*``).
"""

from __future__ import annotations

from http import HTTPStatus

import httptools

from ipamkit.protocol import wire

__all__ = ["MAX_BODY", "MAX_HEAD", "MAX_PATH", "Refused", "Request", "RequestParser", "response"]

#: Largest request body accepted; Docker's largest requests are a few hundred bytes.
MAX_BODY = 1 << 20
#: Largest request line and headers accepted, and longest path.
MAX_HEAD = 64 << 10
MAX_PATH = 8 << 10

# Headers that every request of Docker's daemon (or ipamkit's client) carries
# and nothing here checks, as they spell them: passed over at once, since
# lowering and comparing each costs as much as llhttp's parsing of a request.
_HARMLESS = frozenset({b"Host", b"Accept", b"User-Agent", b"Accept-Encoding", b"Content-Type"})

# Longest Content-Length value read: MAX_BODY has 7 digits, and leading zeros
# (valid HTTP) are no reason to turn a number of thousands of digits into an int.
_MAX_LENGTH_DIGITS = 20


class Refused(Exception):
    """A request the connection cannot go on after: answered with ``status``, then closed."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class Request:
    """One complete request: its path, body and whether the connection stays open."""

    __slots__ = ("body", "keep_alive", "path", "size")

    def __init__(self) -> None:
        self.path = b""
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = False


class RequestParser:
    """Feeds bytes to httptools; collects complete requests, refuses what breaks the limits."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._current = Request()
        #: Requests parsed completely and not yet taken.
        self.complete: list[Request] = []
        #: Whether part of a request has arrived and the rest has not.
        self.mid_request = False
        # Bytes received while a head is unfinished count against its limit, so
        # that an endless request line or header cannot fill the memory.
        self._in_head = True
        self._head_bytes = 0

    def feed(self, data: bytes | memoryview) -> None:
        """Parse ``data``; raise :class:`Refused` for what cannot be served.

        The requests completed before what is refused stay in :attr:`complete`.
        """
        # Never more than MAX_HEAD at once, so that the head's limit does not
        # hide the more precise ones (a path too long, a body too large).
        if len(data) > MAX_HEAD:
            for start in range(0, len(data), MAX_HEAD):
                self.feed(data[start : start + MAX_HEAD])
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                raise Refused(431, f"request head larger than {MAX_HEAD} bytes")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, Refused):
                raise exc.__context__ from None
            raise Refused(400, f"malformed HTTP request: {exc.__context__!r}") from None
        except httptools.HttpParserUpgrade:
            self.complete[-1:] = []  # the request that asks for the upgrade
            raise Refused(400, "protocol upgrades are not supported") from None
        except httptools.HttpParserError as exc:
            raise Refused(400, f"malformed HTTP request: {exc}") from None

    # httptools' callbacks: it begins every message before any other.

    def on_message_begin(self) -> None:
        self._current = Request()
        self.mid_request = True

    def on_url(self, url: bytes) -> None:
        request = self._current
        request.path += url
        if len(request.path) > MAX_PATH:
            raise Refused(414, f"request path longer than {MAX_PATH} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if name in _HARMLESS:
            return
        name = name.lower()
        if name == b"content-length":
            if len(value) > _MAX_LENGTH_DIGITS or not value.isdigit():
                raise Refused(400, f"malformed Content-Length of {len(value)} characters")
            if int(value) > MAX_BODY:
                raise Refused(413, f"request body of {int(value)} bytes exceeds {MAX_BODY}")
        elif name == b"origin" or name.startswith(b"sec-fetch-"):
            # Docker's daemon never sends these; a web page's request always
            # does: a page must not reach the driver through a TCP listener.
            raise Refused(403, f"a browser's request ({name.decode(errors='replace')} header)")

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        method = self._parser.get_method()
        if method != b"POST":
            raise Refused(405, f"method {method.decode(errors='replace')} not allowed: use POST")

    def on_body(self, body: bytes) -> None:
        request = self._current
        request.size += len(body)
        if request.size > MAX_BODY:
            raise Refused(413, f"request body exceeds {MAX_BODY} bytes")
        request.body.append(body)

    def on_message_complete(self) -> None:
        request = self._current
        # The parser forgets the connection's fate once the message is over.
        request.keep_alive = self._parser.should_keep_alive()
        self.complete.append(request)
        self.mid_request = False
        self._in_head = True


# Every reply's head up to its length, built once: building one costs more
# than the rest of the reply.
_HEADS = {
    status.value: b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: "
    % (status.value, status.phrase.encode(), wire.MEDIA_TYPE.encode())
    for status in HTTPStatus
}


def response(status: int, body: bytes, *, close: bool) -> bytes:
    """An HTTP/1.1 reply carrying ``body`` in the protocol's media type."""
    return b"%s%d\r\n%s\r\n%s" % (
        _HEADS[status],
        len(body),
        b"Connection: close\r\n" if close else b"",
        body,
    )
