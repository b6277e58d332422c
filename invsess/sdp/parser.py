"""SDP text to :class:`SessionDescription` (RFC 8866 §5 and §9 grammar, leniently where safe).

Strict where a negotiator depends on it (``v=0`` first, ``o=`` with six fields, numeric ports,
``m=`` with a proto), lenient where real stacks differ (bare LF line ends, a trailing blank line,
unknown line types kept). Raises only :class:`SdpParseError`.
"""

from __future__ import annotations

import attrs

from invsess.sdp.model import Attribute, Connection, MediaDescription, Origin, SessionDescription, Timing
from invsess.sip.errors import ParseError
from invsess.sip.grammar import is_digits

_KNOWN_SESSION = frozenset("vosiuepcbtrzka")
_MAX_LINES = 4096


class SdpParseError(ParseError):
    """The body is not valid SDP; an INVITE carrying it deserves 488 or 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=400, reason="Bad Request")


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpParseError(f"SDP is not UTF-8: {exc}") from None
    else:
        text = data
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line != ""]
    if len(lines) > _MAX_LINES:
        raise SdpParseError(f"more than {_MAX_LINES} lines")
    if not lines or lines[0].strip() != "v=0":
        raise SdpParseError("SDP must start with v=0")
    session: dict[str, list[str]] = {}
    extra: list[tuple[str, str]] = []
    timings: list[Timing] = []
    media: list[MediaDescription] = []
    current: dict[str, list[str]] | None = None
    current_extra: list[tuple[str, str]] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpParseError(f"malformed SDP line {line[:60]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if current is not None:
                media.append(_media(current, current_extra))
            current, current_extra = {"m": [value]}, []
            continue
        if current is None:
            if kind == "t":
                timings.append(_timing(value))
            elif kind == "r" and timings:
                timings[-1] = attrs.evolve(timings[-1], repeats=(*timings[-1].repeats, value))
            elif kind in _KNOWN_SESSION and kind not in "rzk":
                session.setdefault(kind, []).append(value)
            else:
                extra.append((kind, value))
        elif kind in "icba":
            current.setdefault(kind, []).append(value)
        else:
            current_extra.append((kind, value))
    if current is not None:
        media.append(_media(current, current_extra))
    description = _session(session, timings, media, extra)
    if isinstance(data, bytes):  # kept for SessionDescription.received_bytes
        object.__setattr__(description, "_source", data)
    return description


def _one(section: dict[str, list[str]], kind: str, required: bool = False) -> str | None:
    values = section.get(kind, [])
    if len(values) > 1:
        raise SdpParseError(f"more than one {kind}= line")
    if required and not values:
        raise SdpParseError(f"missing {kind}= line")
    return values[0] if values else None


def _session(
    section: dict[str, list[str]],
    timings: list[Timing],
    media: list[MediaDescription],
    extra: list[tuple[str, str]],
) -> SessionDescription:
    origin_text = _one(section, "o", required=True) or ""
    fields = origin_text.split()
    if len(fields) != 6 or not is_digits(fields[2]):
        raise SdpParseError(f"malformed o= line {origin_text!r}")
    origin = Origin(fields[0], fields[1], int(fields[2]), fields[3], fields[4], fields[5])
    connection_text = _one(section, "c")
    return SessionDescription(
        origin=origin,
        session_name=_one(section, "s") or " ",
        information=_one(section, "i"),
        uri=_one(section, "u"),
        emails=tuple(section.get("e", ())),
        phones=tuple(section.get("p", ())),
        connection=_connection(connection_text) if connection_text is not None else None,
        bandwidths=tuple(section.get("b", ())),
        timings=tuple(timings) or (Timing(),),
        attributes=tuple(_attribute(a) for a in section.get("a", ())),
        media=tuple(media),
        extra=tuple(extra),
    )


# Lines that recur in every call (a=rtpmap:0 PCMU/8000, c=IN IP4 ..., t=0 0) are immutable
# values: one object per distinct line is shared by the descriptions that carry it. The tables
# are bounded, so what a peer sends cannot grow them past this.
_MAX_SHARED = 1024
_shared_timings: dict[str, Timing] = {}
_shared_connections: dict[str, Connection] = {}
_shared_attributes: dict[str, Attribute] = {}


def _timing(value: str) -> Timing:
    timing = _shared_timings.get(value)
    if timing is not None:
        return timing
    parts = value.split()
    if len(parts) != 2 or not all(is_digits(p) for p in parts):
        raise SdpParseError(f"malformed t= line {value!r}")
    timing = Timing(int(parts[0]), int(parts[1]))
    if len(_shared_timings) < _MAX_SHARED:
        _shared_timings[value] = timing
    return timing


def _connection(value: str) -> Connection:
    connection = _shared_connections.get(value)
    if connection is not None:
        return connection
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError(f"malformed c= line {value!r}")
    connection = Connection(*parts)
    if len(_shared_connections) < _MAX_SHARED:
        _shared_connections[value] = connection
    return connection


def _attribute(value: str) -> Attribute:
    attribute = _shared_attributes.get(value)
    if attribute is not None:
        return attribute
    name, colon, rest = value.partition(":")
    if not name:
        raise SdpParseError(f"malformed a= line {value!r}")
    attribute = Attribute(name, rest if colon else None)
    if len(_shared_attributes) < _MAX_SHARED:
        _shared_attributes[value] = attribute
    return attribute


def _media(section: dict[str, list[str]], extra: list[tuple[str, str]]) -> MediaDescription:
    value = section["m"][0]
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError(f"malformed m= line {value!r}")
    port_text, slash, count_text = parts[1].partition("/")
    if not is_digits(port_text) or int(port_text) > 65535 or (slash and not is_digits(count_text)):
        raise SdpParseError(f"malformed port in m= line {value!r}")
    return MediaDescription(
        media=parts[0],
        port=int(port_text),
        proto=parts[2],
        formats=tuple(parts[3:]),
        port_count=int(count_text) if slash else None,
        information=_one(section, "i"),
        connections=tuple(_connection(c) for c in section.get("c", ())),
        bandwidths=tuple(section.get("b", ())),
        attributes=tuple(_attribute(a) for a in section.get("a", ())),
        extra=tuple(extra),
    )
