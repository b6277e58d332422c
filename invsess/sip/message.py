"""SIP requests and responses, parsed lazily.

The parser finds the start line and the header boundaries once; a header's value is parsed the
first time it is read (``msg.via``, ``msg.headers.parsed("CSeq")``) and cached. An unmodified
received message serialises back to exactly the bytes it came from; once modified it serialises
canonically (full header names, one header per line, Content-Length matching the body).

Messages are :class:`~invsess.memory.Block` s, so a received message is accounted in the pool
it was parsed into and dies with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar, overload

import attrs

from invsess.memory import Block
from invsess.sip.errors import LocalProtocolError, ParseError
from invsess.sip.grammar import is_token, split_commas
from invsess.sip.headers import (
    HEADER_SPECS,
    REPEATABLE_UNSPLIT,
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
    canonical_name,
)
from invsess.sip.uri import Uri, parse_uri

_T = TypeVar("_T")
_UNPARSED: Any = object()

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


@attrs.define(eq=False)
class HeaderField:
    """One header line: the name as written, its canonical name, the raw value, its parse cache."""

    name: str
    key: str
    value: str
    parsed: Any = _UNPARSED


class Headers:
    """The ordered header list of one message, with lazy typed access.

    Names are case-insensitive and compact forms are equivalent to full names. Raw access
    (``get``, ``get_all``) never parses; ``parsed`` parses on first use, caches, and raises
    :class:`ParseError` for an invalid value or for a single-valued header that appears twice.
    """

    __slots__ = ("_cache", "_dirty", "_fields", "_index")

    def __init__(self, fields: list[HeaderField] | None = None) -> None:
        self._fields: list[HeaderField] = fields if fields is not None else []
        self._dirty = False
        self._cache: dict[str, Any] = {}  # name asked for -> typed value; cleared on change
        self._index: dict[str, list[HeaderField]] | None = None  # built on first typed read

    @property
    def dirty(self) -> bool:
        """True once the header list was modified (the message then serialises canonically)."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value
        self._cache.clear()
        self._index = None

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for f in self._fields:
            yield f.key, f.value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._first(canonical_name(name)) is not None

    def __repr__(self) -> str:
        return f"Headers({[(f.key, f.value) for f in self._fields]!r})"

    @property
    def fields(self) -> tuple[HeaderField, ...]:
        """The header lines in order (read-only view)."""
        return tuple(self._fields)

    def _first(self, key: str) -> HeaderField | None:
        for f in self._fields:
            if f.key == key:
                return f
        return None

    def get(self, name: str) -> str | None:
        """The raw value of the first ``name`` header, or None."""
        f = self._first(canonical_name(name))
        return None if f is None else f.value

    def get_all(self, name: str) -> list[str]:
        """The raw values of every ``name`` header line, in order."""
        key = canonical_name(name)
        return [f.value for f in self._fields if f.key == key]

    def count(self, name: str) -> int:
        """How many lines carry ``name``."""
        key = canonical_name(name)
        return sum(1 for f in self._fields if f.key == key)

    def parsed(self, name: str) -> Any:
        """The typed value: a list for list headers, a single value (or None) otherwise.

        Lists are returned as fresh copies only when built; treat them as read-only.
        """
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        key = name if name in HEADER_SPECS else canonical_name(name)
        value = self._parse(key)
        if value is not None:
            self._cache[name] = value
        return value

    def _parse(self, key: str) -> Any:
        spec = HEADER_SPECS.get(key)
        if spec is None:
            raise LocalProtocolError(f"no parser for header {key!r}; use get()/get_all()")
        index = self._index
        if index is None:
            index = {}
            for f in self._fields:
                index.setdefault(f.key, []).append(f)
            self._index = index
        fields = index.get(key, [])
        if spec.multi or key in REPEATABLE_UNSPLIT:
            out: list[Any] = []
            for f in fields:
                if f.parsed is _UNPARSED:
                    if spec.multi:
                        f.parsed = [spec.parse(part, key) for part in split_commas(f.value, key)]
                    else:
                        f.parsed = [spec.parse(f.value, key)]
                out.extend(f.parsed)
            return out
        if not fields:
            return None
        if len(fields) > 1 and len({f.value.strip() for f in fields}) > 1:
            raise ParseError(f"{key} appears {len(fields)} times with different values", header=key)
        f = fields[0]
        if f.parsed is _UNPARSED:
            f.parsed = spec.parse(f.value, key)
        return f.parsed

    def first(self, name: str) -> Any:
        """The first element of a list header (the top Via), parsing nothing after it."""
        key = canonical_name(name)
        spec = HEADER_SPECS.get(key)
        if spec is None or not spec.multi:
            raise LocalProtocolError(f"{key!r} is not a list header")
        cache_key = "first:" + key
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        field = self._first(key)
        if field is None:
            return None
        if field.parsed is not _UNPARSED:
            value = field.parsed[0]
        else:
            first_element = split_commas(field.value, key)[0] if "," in field.value else field.value
            value = spec.parse(first_element, key)
        self._cache[cache_key] = value
        return value

    def parse_all(self) -> None:
        """Parse every known header now (raises the first :class:`ParseError`)."""
        for key in dict.fromkeys(f.key for f in self._fields):  # in order: errors are deterministic
            if key in HEADER_SPECS:
                self.parsed(key)

    # -- modification ----------------------------------------------------------------------

    def _field(self, name: str, value: object) -> HeaderField:
        key = canonical_name(name)
        if not is_token(key):
            raise LocalProtocolError(f"invalid header name {name!r}")
        text = str(value)
        if "\r" in text or "\n" in text:
            raise LocalProtocolError(f"header {key} value contains a line break")
        field = HeaderField(key, key, text)
        if not isinstance(value, str):
            spec = HEADER_SPECS.get(key)
            if spec is not None:
                field.parsed = [value] if (spec.multi or key in REPEATABLE_UNSPLIT) else value
        return field

    def add(self, name: str, value: object) -> None:
        """Append a header line (a string, or a typed value serialised with ``str``)."""
        self._fields.append(self._field(name, value))
        self.dirty = True

    def insert(self, index: int, name: str, value: object) -> None:
        """Insert a header line at ``index`` (0: before all others, as a new top Via)."""
        self._fields.insert(index, self._field(name, value))
        self.dirty = True

    def prepend(self, name: str, value: object) -> None:
        """Insert a header line before the first line of the same name (or at the top)."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self.insert(i, name, value)
                return
        self.insert(0, name, value)

    def set(self, name: str, value: object) -> None:
        """Replace every ``name`` line with one line, where the first one stood."""
        key = canonical_name(name)
        new = self._field(name, value)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields[i] = new
                self._fields = [g for j, g in enumerate(self._fields) if j <= i or g.key != key]
                break
        else:
            self._fields.append(new)
        self.dirty = True

    def remove(self, name: str) -> int:
        """Remove every ``name`` line; returns how many were removed."""
        key = canonical_name(name)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f.key != key]
        removed = before - len(self._fields)
        if removed:
            self.dirty = True
        return removed

    def remove_first(self, name: str) -> None:
        """Remove the first element of a list header (e.g. the top Via), or its whole line."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                parts = split_commas(f.value, key)
                if len(parts) == 1:
                    del self._fields[i]
                else:
                    self._fields[i] = HeaderField(f.name, key, ", ".join(parts[1:]))
                self.dirty = True
                return

    def copy(self) -> Headers:
        """An independent copy (parse caches shared: parsed values are immutable)."""
        return Headers([attrs.evolve(f) for f in self._fields])

    def serialize(self) -> str:
        """``Name: value\\r\\n`` lines with canonical names."""
        return "".join(f"{f.key}: {f.value}\r\n" for f in self._fields)


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
