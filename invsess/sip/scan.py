"""The byte-level half of parsing: where the start line, the header lines and the body are.

Finds the end of the header section, splits it into lines once (CRLF, or bare LF tolerated),
joins folded lines, validates every header name (a cache of names already seen makes that one
dict look-up per line) and works out the body's extent from Content-Length. It never parses a
header value: that is :mod:`invsess.sip.fields`' job, on first read. Every failure is a
:class:`ParseError` carrying the response it deserves.

One of the hot modules that the compiled build compiles; :func:`invsess.sip.parser.parse_message`
calls it and builds the message (a pool block) from what it returns.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from invsess.sip.errors import ParseError
from invsess.sip.fields import HeaderField
from invsess.sip.grammar import is_digits, is_token
from invsess.sip.headers import canonical_name

_VERSION_RE: Final = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_STATUS_RE: Final = re.compile(r"[1-6][0-9][0-9]\Z")

#: raw header name -> canonical name; bounded, since names come from the network. Only names
#: that passed validation are ever stored, so a hit needs no further check.
_name_cache: Final[dict[str, str]] = {}
_NAME_CACHE_MAX: Final = 4096

_CONTENT_LENGTH: Final = "Content-Length"


@attrs.frozen
class ParserLimits:
    """Limits enforced while parsing (and framing). Going past one is a ParseError.

    ``max_message_size`` answers 513 Message Too Large; the others 400.
    """

    max_message_size: int = 65535
    max_headers: int = 256
    max_line_length: int = 16384


DEFAULT_LIMITS: Final = ParserLimits()


def find_header_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """(index of the blank line, its length) or (-1, 0). Bare-LF messages are accepted."""
    crlf = data.find(b"\r\n\r\n", start)
    if crlf >= 0:
        # A bare "\n\n" wins only if it starts before the CRLF pair: look no further than that.
        lf = data.find(b"\n\n", start, crlf + 1)
        return (crlf, 4) if lf < 0 else (lf, 2)
    lf = data.find(b"\n\n", start)
    if lf >= 0:
        return lf, 2
    return -1, 0


def scan_message(data: bytes, limits: ParserLimits) -> tuple[str, list[HeaderField], int, int, int]:
    """(start line, header fields, where the message starts, where its body starts and stops).

    Bytes after the body that Content-Length announces are ignored (RFC 3261 §18.3, RFC 4475
    dblreq); without Content-Length the body runs to the end of the data.
    """
    size = len(data)
    if size > limits.max_message_size:
        raise ParseError(
            f"message of {size} bytes exceeds the limit of {limits.max_message_size}",
            status_code=513,
            reason="Message Too Large",
        )
    start = 0
    while data.startswith((b"\r\n", b"\n"), start):  # RFC 3261 §7.5: ignore leading CRLFs
        start += 2 if data.startswith(b"\r\n", start) else 1
    lines, end, sep = _crlf_lines(data, start)
    if not lines:
        lines, end, sep = _lenient_lines(data, start)
    first = lines[0]
    if len(first) > limits.max_line_length:
        raise ParseError("start line too long")
    fields, lengths = _header_fields(lines, limits)
    body_start = end + sep
    if not lengths:
        return first, fields, start, body_start, size
    length = _content_length(lengths)
    stop = body_start + length
    if stop > size:
        raise ParseError(f"Content-Length {length} is larger than the {size - body_start} bytes received")
    return first, fields, start, body_start, stop


def _crlf_lines(data: bytes, start: int) -> tuple[list[str], int, int]:
    """The header lines, the blank line's index and length, in the usual case: CRLF line ends
    only; ``([], -1, 0)`` otherwise (then :func:`_lenient_lines` decides).

    The header section then ends at the first CRLFCRLF, and holds as many CRs and LFs as CRLF
    pairs (two counts of one character each, cheaper than counting pairs): so no bare LF, no
    bare CR, and no bare "\\n\\n" that would have ended it sooner.
    """
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return [], -1, 0
    head = data[start:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        return [], -1, 0
    return lines, end, 4


def _lenient_lines(data: bytes, start: int) -> tuple[list[str], int, int]:
    """The header lines when a bare LF (tolerated) or bare CR (refused) is somewhere in them."""
    end, sep = find_header_end(data, start)
    if end < 0:
        # A datagram that stops right after a header line has no body and, leniently, no
        # blank line either (RFC 4475 baddn.dat is such a datagram).
        if not data.endswith(b"\n") or len(data) <= start:
            raise ParseError("no empty line after the headers")
        sep = 2 if data.endswith(b"\r\n") else 1
        end = len(data) - sep
    head = data[start:end].decode("utf-8", "surrogateescape").replace("\r\n", "\n")
    if "\r" in head:
        raise ParseError("bare CR in the header section")
    return head.split("\n"), end, sep


def _header_fields(lines: list[str], limits: ParserLimits) -> tuple[list[HeaderField], list[HeaderField]]:
    """Header lines to fields (folded lines joined), and the Content-Length fields among them."""
    count = len(lines)
    if count - 1 > limits.max_headers:
        raise ParseError(f"more than {limits.max_headers} header lines")
    max_line = limits.max_line_length
    if count > 1 and max(map(len, lines)) > max_line:
        raise ParseError(f"header line longer than {max_line} characters")
    fields: list[HeaderField] = []
    lengths: list[HeaderField] = []
    cache = _name_cache
    for i in range(1, count):
        line = lines[i]
        name, colon, value = line.partition(":")
        key = cache.get(name)  # the fast path: a name seen (and validated) before
        if key is None:
            if line[:1] in (" ", "\t"):  # a folded line continues the previous header
                if not fields:
                    raise ParseError("continuation line before the first header")
                last = fields[-1]
                last.value = f"{last.value} {line.strip()}".strip()
                continue
            if not colon:
                raise ParseError(f"header line without ':' {line[:80]!r}")
            key = _validate_name(name)
        field = HeaderField(name, key, value.strip())
        fields.append(field)
        if key == _CONTENT_LENGTH:
            lengths.append(field)
    return fields, lengths


def _validate_name(name: str) -> str:
    stripped = name.rstrip(" \t")
    if not is_token(stripped):
        raise ParseError(f"invalid header name {stripped[:80]!r}")
    key = canonical_name(stripped)
    if len(_name_cache) < _NAME_CACHE_MAX:
        _name_cache[name] = key
    return key


def _content_length(fields: list[HeaderField]) -> int:
    value = fields[0].value
    for f in fields:
        if f.value != value:
            values = sorted({g.value for g in fields})
            raise ParseError(f"several different Content-Length values: {values}", header=_CONTENT_LENGTH)
    if not is_digits(value):
        raise ParseError(f"invalid Content-Length {value!r}", header=_CONTENT_LENGTH)
    return int(value)


def request_line(line: str) -> tuple[str, str, str]:
    """``Method SP Request-URI SP SIP-Version`` -> (method, URI text, upper-cased version)."""
    parts = line.split()  # several SP between elements are tolerated (RFC 4475 lwsstart)
    if len(parts) != 3:
        raise ParseError(f"malformed request line {line!r}")
    method, uri, version = parts
    if not is_token(method):
        raise ParseError(f"invalid method {method!r}")
    if _VERSION_RE.match(version) is None:
        raise ParseError(f"invalid SIP version {version!r}")
    return method, uri, version.upper()


def status_line(line: str) -> tuple[str, int, str]:
    """``SIP-Version SP Status-Code SP Reason-Phrase`` -> (upper-cased version, code, reason)."""
    parts = line.split(" ", 2)
    if len(parts) < 2 or _VERSION_RE.match(parts[0]) is None:
        raise ParseError(f"malformed status line {line!r}")
    if _STATUS_RE.match(parts[1]) is None:
        raise ParseError(f"invalid status code {parts[1]!r}")
    return parts[0].upper(), int(parts[1]), parts[2] if len(parts) == 3 else ""


def valid_version(text: str) -> bool:
    """True for ``SIP/<digits>.<digits>`` in any case."""
    return _VERSION_RE.match(text) is not None
