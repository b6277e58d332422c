"""From bytes to a lazily parsed :class:`Request` or :class:`Response`.

This module finds the start line, the header boundaries and the body, once; it never parses a
header value (that happens on first read). Every failure is a :class:`ParseError` carrying the
response it deserves; no other exception escapes, whatever the bytes (the fuzz tests hold it to
that). When a pool is given, the message is a block of that pool: the caller releases the pool
on every path, success or failure.
"""

from __future__ import annotations

import re

import attrs

from invsess.memory import Pool
from invsess.sip.errors import ParseError
from invsess.sip.grammar import is_digits, is_token
from invsess.sip.headers import canonical_name
from invsess.sip.message import HeaderField, Headers, Request, Response

_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_STATUS_RE = re.compile(r"[1-6][0-9][0-9]\Z")

#: raw header name -> canonical name; bounded, since names come from the network.
_name_cache: dict[str, str] = {}
_NAME_CACHE_MAX = 4096


@attrs.frozen
class ParserLimits:
    """Limits enforced while parsing (and framing). Going past one is a ParseError.

    ``max_message_size`` answers 513 Message Too Large; the others 400.
    """

    max_message_size: int = 65535
    max_headers: int = 256
    max_line_length: int = 16384


DEFAULT_LIMITS = ParserLimits()


def find_header_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """(index of the blank line, its length) or (-1, 0). Bare-LF messages are accepted."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def parse_message(
    data: bytes,
    *,
    limits: ParserLimits = DEFAULT_LIMITS,
    pool: Pool | None = None,
) -> Request | Response:
    """Parse one message from a datagram (or a frame cut by :class:`StreamFramer`).

    Bytes after the body that Content-Length announces are ignored (RFC 3261 §18.3, RFC 4475
    dblreq); without Content-Length the body runs to the end of the data.
    """
    if len(data) > limits.max_message_size:
        raise ParseError(
            f"message of {len(data)} bytes exceeds the limit of {limits.max_message_size}",
            status_code=513,
            reason="Message Too Large",
        )
    start = 0
    while data.startswith((b"\r\n", b"\n"), start):  # RFC 3261 §7.5: ignore leading CRLFs
        start += 2 if data.startswith(b"\r\n", start) else 1
    end, sep = find_header_end(data, start)
    if end < 0:
        # A datagram that stops right after a header line has no body and, leniently, no
        # blank line either (RFC 4475 baddn.dat is such a datagram).
        if not data.endswith(b"\n") or len(data) <= start:
            raise ParseError("no empty line after the headers")
        sep = 2 if data.endswith(b"\r\n") else 1
        end = len(data) - sep
    head = data[start:end].decode("utf-8", "surrogateescape")
    crlf = head.count("\r\n")
    if crlf == head.count("\n"):  # the usual case: CRLF only, one split
        if crlf != head.count("\r"):
            raise ParseError("bare CR in the header section")
        lines = head.split("\r\n")
    else:  # bare LF line ends (tolerated)
        head = head.replace("\r\n", "\n")
        if "\r" in head:
            raise ParseError("bare CR in the header section")
        lines = head.split("\n")
    first = lines[0]
    if len(first) > limits.max_line_length:
        raise ParseError("start line too long")
    fields = _header_fields(lines, limits)
    body_start = end + sep
    length = _content_length(fields)
    if length is None:
        stop = len(data)
    else:
        stop = body_start + length
        if stop > len(data):
            raise ParseError(
                f"Content-Length {length} is larger than the {len(data) - body_start} bytes received"
            )
    body = data[body_start:stop]
    raw = data[start:stop]
    headers = Headers(fields)
    if first.startswith("SIP/"):
        version, code, reason = _status_line(first)
        if pool is not None:
            return pool.alloc(Response, code, reason, headers, body, version=version, raw=raw)
        return Response(code, reason, headers, body, version=version, raw=raw)
    method, uri, version = _request_line(first)
    if pool is not None:
        return pool.alloc(Request, method, uri, headers, body, version=version, raw=raw)
    return Request(method, uri, headers, body, version=version, raw=raw)


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split()  # several SP between elements are tolerated (RFC 4475 lwsstart)
    if len(parts) != 3:
        raise ParseError(f"malformed request line {line!r}")
    method, uri, version = parts
    if not is_token(method):
        raise ParseError(f"invalid method {method!r}")
    if _VERSION_RE.match(version) is None:
        raise ParseError(f"invalid SIP version {version!r}")
    return method, uri, version.upper()


def _status_line(line: str) -> tuple[str, int, str]:
    parts = line.split(" ", 2)
    if len(parts) < 2 or _VERSION_RE.match(parts[0]) is None:
        raise ParseError(f"malformed status line {line!r}")
    if _STATUS_RE.match(parts[1]) is None:
        raise ParseError(f"invalid status code {parts[1]!r}")
    return parts[0].upper(), int(parts[1]), parts[2] if len(parts) == 3 else ""


def _header_fields(lines: list[str], limits: ParserLimits) -> list[HeaderField]:
    """Header lines to fields (folded lines joined); names validated once, then cached."""
    if len(lines) - 1 > limits.max_headers:
        raise ParseError(f"more than {limits.max_headers} header lines")
    max_line = limits.max_line_length
    if len(lines) > 1 and max(map(len, lines)) > max_line:
        raise ParseError(f"header line longer than {max_line} characters")
    fields: list[HeaderField] = []
    append = fields.append
    cache = _name_cache
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(":")
        key = cache.get(name)  # only validated names are ever cached: the fast path
        if key is not None:
            append(HeaderField(name, key, value.strip()))
            continue
        line = lines[i]
        if line[:1] in (" ", "\t"):  # a folded line continues the previous header
            if not fields:
                raise ParseError("continuation line before the first header")
            last = fields[-1]
            last.value = f"{last.value} {line.strip()}".strip()
            continue
        if not colon:
            raise ParseError(f"header line without ':' {line[:80]!r}")
        append(HeaderField(name, _validate_name(name), value.strip()))
    return fields


def _validate_name(name: str) -> str:
    stripped = name.rstrip(" \t")
    if not is_token(stripped):
        raise ParseError(f"invalid header name {stripped[:80]!r}")
    key = canonical_name(stripped)
    if len(_name_cache) < _NAME_CACHE_MAX:
        _name_cache[name] = key
    return key


def _content_length(fields: list[HeaderField]) -> int | None:
    values = {f.value for f in fields if f.key == "Content-Length"}
    if not values:
        return None
    if len(values) > 1:
        raise ParseError(
            f"several different Content-Length values: {sorted(values)}", header="Content-Length"
        )
    value = values.pop()
    if not is_digits(value):
        raise ParseError(f"invalid Content-Length {value!r}", header="Content-Length")
    return int(value)


def salvage_request(data: bytes, *, limits: ParserLimits = DEFAULT_LIMITS) -> Request | None:
    """Best effort, for answering a request that :func:`parse_message` refused.

    Keeps the request line and every well-formed header line, ignores Content-Length and the
    body. Returns None when not even a request line can be read (then nothing can be answered,
    and the message is dropped). The result exists only to build a 400 from its raw values.
    """
    if len(data) > limits.max_message_size:
        data = data[: limits.max_message_size]
    text = data.lstrip(b"\r\n").decode("utf-8", "surrogateescape")
    end = text.find("\r\n\r\n")
    lines = (text if end < 0 else text[:end]).replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    # Tolerate white space inside the Request-URI (RFC 4475 lwsruri): only method and version matter.
    if len(parts) < 3 or not is_token(parts[0]) or _VERSION_RE.match(parts[-1]) is None:
        return None
    method, uri, version = parts[0], "".join(parts[1:-1]), parts[-1].upper()
    fields: list[HeaderField] = []
    for line in lines[1 : limits.max_headers + 1]:
        if line[:1] in (" ", "\t") and fields:
            if "\r" not in line:
                fields[-1].value = f"{fields[-1].value} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if colon and is_token(name) and "\r" not in value:
            fields.append(HeaderField(name, canonical_name(name), value.strip()))
    return Request(method, uri, Headers(fields), b"", version=version)
