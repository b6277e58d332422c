"""SIP requests and responses, parsed lazily.

The parser finds the start line and the header boundaries once; a header's value is parsed the
first time it is read (``msg.via``, ``msg.headers.parsed("CSeq")``) and cached. An unmodified
received message serialises back to exactly the bytes it came from; once modified it serialises
canonically (full header names, one header per line, Content-Length matching the body).

Messages are :class:`~invsess.memory.Block` s, so a received message is accounted in the pool
it was parsed into and dies with it. This module is never compiled (docs/performance-parsing.md):
MALLOC_DEBUG poisons a freed block by swapping its class, which needs interpreted classes; the
header list it holds (:mod:`invsess.sip.fields`) is.
"""

from __future__ import annotations

from typing import Generic, TypeVar, overload

from invsess.memory import Block
from invsess.sip.errors import LocalProtocolError
from invsess.sip.fields import HeaderField, Headers
from invsess.sip.grammar import is_token
from invsess.sip.headers import (
    ContactStar,
    Credentials,
    CSeq,
    MediaType,
    MinSE,
    NameAddress,
    RAck,
    RetryAfter,
    SessionExpires,
    Via,
)
from invsess.sip.uri import Uri, parse_uri

_T = TypeVar("_T")

#: Accounted bytes per header field on top of its text (name, value, cache slot).
_FIELD_OVERHEAD = 48

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(code: int) -> str:
    """The RFC reason phrase for ``code`` (a generic one for unknown codes)."""
    return REASON_PHRASES.get(code) or REASON_PHRASES.get(code // 100 * 100, "Unknown")


class _Header(Generic[_T]):
    """A typed, lazily parsed header exposed as a read-only attribute of a message."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __set_name__(self, owner: type, attr: str) -> None:
        self.__doc__ = f"The parsed ``{self.name}`` header (parsed on first read)."

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Header[_T]: ...
    @overload
    def __get__(self, obj: Message, objtype: type | None = None) -> _T: ...
    def __get__(self, obj: Message | None, objtype: type | None = None) -> _T | _Header[_T]:
        if obj is None:
            return self
        headers = obj.headers
        value = headers._cache.get(self.name)
        if value is None:
            value = headers.parsed(self.name)  # canonical already: parsed() caches under it
        result: _T = value
        return result


class Message(Block):
    """What requests and responses share: headers, body, and the original bytes."""

    __slots__ = ("_body", "_raw", "headers", "version")

    def __init__(
        self,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        version: str = "SIP/2.0",
        raw: bytes | None = None,
    ) -> None:
        self.headers = headers if headers is not None else Headers()
        self._body = bytes(body)
        self.version = version
        self._raw = raw

    def block_size(self) -> int:
        """Accounted size: the object, its header lines and its body (deterministic)."""
        size = 64 + len(self._body)
        for f in self.headers.fields:
            size += _FIELD_OVERHEAD + len(f.name) + len(f.value)
        return size

    @property
    def body(self) -> bytes:
        """The message body."""
        return self._body

    @body.setter
    def body(self, value: bytes) -> None:
        self._body = bytes(value)
        self._raw = None

    @property
    def modified(self) -> bool:
        """True when the message no longer serialises to its received bytes."""
        return self._raw is None or self.headers.dirty

    def start_line(self) -> str:
        """The first line, without CRLF."""
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The wire form: the received bytes if unmodified, else the canonical form."""
        if self._raw is not None and not self.headers.dirty:
            return self._raw
        headers = self.headers
        if headers.get("Content-Length") != str(len(self._body)):
            headers.set("Content-Length", str(len(self._body)))
        text = f"{self.start_line()}\r\n{headers.serialize()}\r\n"
        return text.encode("utf-8", "surrogateescape") + self._body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def parse_all(self) -> None:
        """Parse every known header (and the Request-URI) now; raises the first ParseError."""
        self.headers.parse_all()

    via: _Header[list[Via]] = _Header("Via")
    from_: _Header[NameAddress | None] = _Header("From")
    to: _Header[NameAddress | None] = _Header("To")
    call_id: _Header[str | None] = _Header("Call-ID")
    cseq: _Header[CSeq | None] = _Header("CSeq")
    contact: _Header[list[NameAddress | ContactStar]] = _Header("Contact")
    route: _Header[list[NameAddress]] = _Header("Route")
    record_route: _Header[list[NameAddress]] = _Header("Record-Route")
    max_forwards: _Header[int | None] = _Header("Max-Forwards")
    content_length: _Header[int | None] = _Header("Content-Length")
    content_type: _Header[MediaType | None] = _Header("Content-Type")
    accept: _Header[list[MediaType]] = _Header("Accept")
    expires: _Header[int | None] = _Header("Expires")
    require: _Header[list[str]] = _Header("Require")
    proxy_require: _Header[list[str]] = _Header("Proxy-Require")
    supported: _Header[list[str]] = _Header("Supported")
    unsupported: _Header[list[str]] = _Header("Unsupported")
    allow: _Header[list[str]] = _Header("Allow")
    rseq: _Header[int | None] = _Header("RSeq")
    rack: _Header[RAck | None] = _Header("RAck")
    session_expires: _Header[SessionExpires | None] = _Header("Session-Expires")
    min_se: _Header[MinSE | None] = _Header("Min-SE")
    retry_after: _Header[RetryAfter | None] = _Header("Retry-After")
    authorization: _Header[list[Credentials]] = _Header("Authorization")
    www_authenticate: _Header[list[Credentials]] = _Header("WWW-Authenticate")

    @property
    def top_via(self) -> Via | None:
        """The first Via, or None; parses only that one element."""
        top: Via | None = self.headers.first("Via")
        return top


class Request(Message):
    """A SIP request. ``uri`` accepts a parsed URI or its text (parsed on first read)."""

    __slots__ = ("_uri", "_uri_text", "method")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        version: str = "SIP/2.0",
        raw: bytes | None = None,
    ) -> None:
        super().__init__(headers, body, version=version, raw=raw)
        if not is_token(method):
            raise LocalProtocolError(f"invalid method {method!r}")
        self.method = method
        self._uri_text = uri if isinstance(uri, str) else str(uri)
        self._uri: Uri | None = None if isinstance(uri, str) else uri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"

    @property
    def uri(self) -> Uri:
        """The Request-URI, parsed on first read."""
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self._uri_text = str(value)
        self._raw = None

    @property
    def uri_text(self) -> str:
        """The Request-URI as written."""
        return self._uri_text

    def start_line(self) -> str:
        """``METHOD uri SIP/2.0``."""
        return f"{self.method} {self._uri_text} {self.version}"

    def parse_all(self) -> None:
        """Parse the Request-URI and every known header now."""
        _ = self.uri
        super().parse_all()


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status_code")

    def __init__(
        self,
        status_code: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        version: str = "SIP/2.0",
        raw: bytes | None = None,
    ) -> None:
        super().__init__(headers, body, version=version, raw=raw)
        if not 100 <= status_code <= 699:
            raise LocalProtocolError(f"status code {status_code} is not in 100..699")
        self.status_code = status_code
        self.reason = reason_phrase(status_code) if reason is None else reason

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"

    def start_line(self) -> str:
        """``SIP/2.0 code reason``."""
        return f"{self.version} {self.status_code} {self.reason}"

    @property
    def provisional(self) -> bool:
        """True for 1xx."""
        return self.status_code < 200


__all__ = [
    "REASON_PHRASES",
    "HeaderField",
    "Headers",
    "Message",
    "Request",
    "Response",
    "reason_phrase",
]
