"""From bytes to a lazily parsed :class:`Request` or :class:`Response`.

:mod:`invsess.sip.scan` finds the start line, the header boundaries and the body, once; nothing
parses a header value before it is read (:mod:`invsess.sip.fields`). Every failure is a
:class:`ParseError` carrying the response it deserves; no other exception escapes, whatever the
bytes (the fuzz tests hold it to that). When a pool is given, the message is a block of that
pool: the caller releases the pool on every path, success or failure.

This module is never compiled (docs/performance-parsing.md): the pool records the function that
allocated a block, and a MALLOC_DEBUG report must keep naming ``parse_message`` as that site.
"""

from __future__ import annotations

from invsess.memory import Pool
from invsess.sip.fields import HeaderField, Headers
from invsess.sip.grammar import is_token
from invsess.sip.headers import canonical_name
from invsess.sip.message import Request, Response
from invsess.sip.scan import (
    DEFAULT_LIMITS,
    ParserLimits,
    find_header_end,
    request_line,
    scan_message,
    status_line,
    valid_version,
)


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
    first, fields, start, body_start, stop = scan_message(data, limits)
    headers = Headers(fields)
    body = data[body_start:stop]
    raw = data[start:stop]
    if first.startswith("SIP/"):
        version, code, reason = status_line(first)
        if pool is not None:
            return pool.alloc(Response, code, reason, headers, body, version=version, raw=raw)
        return Response(code, reason, headers, body, version=version, raw=raw)
    method, uri, version = request_line(first)
    if pool is not None:
        return pool.alloc(Request, method, uri, headers, body, version=version, raw=raw)
    return Request(method, uri, headers, body, version=version, raw=raw)


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
    if len(parts) < 3 or not is_token(parts[0]) or not valid_version(parts[-1]):
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


__all__ = [
    "DEFAULT_LIMITS",
    "ParserLimits",
    "find_header_end",
    "parse_message",
    "salvage_request",
]
