"""The SDP model (RFC 8866): frozen values that serialise back to SDP text.

Lines of a type this model does not name (and ``r=``, ``z=``, ``k=``) are kept in ``extra`` of
their section and written back after the known lines of that section, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from invsess.sip.grammar import is_digits

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@attrs.frozen
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        fields = (self.username, self.session_id, str(self.session_version), self.nettype, self.addrtype)
        return " ".join((*fields, self.address))


@attrs.frozen
class Connection:
    """``c=<nettype> <addrtype> <connection-address>``."""

    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@attrs.frozen
class Timing:
    """``t=<start> <stop>`` and its ``r=`` repeat lines."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@attrs.frozen
class Attribute:
    """``a=<name>[:<value>]``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@attrs.frozen
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock>[/<channels>]``."""

    payload_type: str
    encoding: str
    clock_rate: int
    channels: int | None = None


def parse_rtpmap(value: str) -> RtpMap | None:
    """The value of an ``a=rtpmap`` line (``<pt> <encoding>/<clock>[/<channels>]``), or None
    when it is malformed."""
    pt, _, spec = value.partition(" ")
    parts = spec.strip().split("/")
    if len(parts) < 2 or not is_digits(parts[1]):
        return None
    channels = int(parts[2]) if len(parts) > 2 and is_digits(parts[2]) else None
    return RtpMap(pt, parts[0], int(parts[1]), channels)


def _attr(attributes: Iterable[Attribute], name: str) -> list[str | None]:
    return [a.value for a in attributes if a.name == name]


def _direction(attributes: Iterable[Attribute]) -> str | None:
    for a in attributes:
        if a.name in DIRECTIONS:
            return a.name
    return None


#: The four direction attributes (values: one object each, shared).
DIRECTION_ATTRIBUTES = {direction: Attribute(direction) for direction in DIRECTIONS}


def _with_direction(attributes: tuple[Attribute, ...], direction: str) -> tuple[Attribute, ...]:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    kept = tuple(a for a in attributes if a.name not in DIRECTIONS)
    return (*kept, DIRECTION_ATTRIBUTES[direction])


@attrs.frozen
class MediaDescription:
    """One ``m=`` section."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    #: What :func:`invsess.sdp.negotiator` derives from the section (its codecs), computed once:
    #: the section is immutable, and the same one (our capabilities) is negotiated in every call.
    _derived: tuple[object, ...] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @property
    def rejected(self) -> bool:
        """A port of 0 rejects (or disables) the stream (RFC 3264 §6)."""
        return self.port == 0

    @property
    def direction(self) -> str:
        """``sendrecv`` unless an attribute of this section says otherwise (no session default)."""
        return _direction(self.attributes) or "sendrecv"

    def attribute(self, name: str) -> list[str | None]:
        """Values of every ``a=name`` line of this section."""
        return _attr(self.attributes, name)

    def rtpmaps(self) -> dict[str, RtpMap]:
        """``a=rtpmap`` lines by payload type (malformed ones are skipped)."""
        out: dict[str, RtpMap] = {}
        for value in self.attribute("rtpmap"):
            rtpmap = parse_rtpmap(value) if value else None
            if rtpmap is not None:
                out[rtpmap.payload_type] = rtpmap
        return out

    def fmtp(self, payload_type: str) -> str | None:
        """The ``a=fmtp`` parameters for a payload type."""
        for value in self.attribute("fmtp"):
            if value and value.split(" ", 1)[0] == payload_type:
                return value.split(" ", 1)[1] if " " in value else ""
        return None

    def with_direction(self, direction: str) -> MediaDescription:
        """A copy whose direction attribute is ``direction``."""
        return attrs.evolve(self, attributes=_with_direction(self.attributes, direction))

    def lines(self) -> list[str]:
        """The section as ``x=value`` lines."""
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}".rstrip()]
        if self.information is not None:
            out.append(f"i={self.information}")
        out += [f"c={c}" for c in self.connections]
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"{k}={v}" for k, v in self.extra]
        out += [f"a={a}" for a in self.attributes]
        return out


@attrs.frozen
class SessionDescription:
    """A whole SDP body."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    #: The serialised form, made once (the description is immutable): a negotiator keeps it,
    #: compares it and sends it, so it would otherwise be written out several times.
    _wire: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)
    #: The bytes this description was parsed from (None for one made in code): what the peer
    #: sent, kept as sent (``received_bytes``).
    _source: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, if any."""
        return _direction(self.attributes)

    def attribute(self, name: str) -> list[str | None]:
        """Values of every session-level ``a=name`` line."""
        return _attr(self.attributes, name)

    def media_direction(self, index: int) -> str:
        """The effective direction of stream ``index`` (media level, else session level)."""
        return _direction(self.media[index].attributes) or self.direction or "sendrecv"

    def lines(self) -> list[str]:
        """The description as ``x=value`` lines."""
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out += [f"e={e}" for e in self.emails]
        out += [f"p={p}" for p in self.phones]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        for t in self.timings:
            out.append(f"t={t.start} {t.stop}")
            out += [f"r={r}" for r in t.repeats]
        out += [f"{k}={v}" for k, v in self.extra]
        out += [f"a={a}" for a in self.attributes]
        for m in self.media:
            out += m.lines()
        return out

    def serialize(self) -> bytes:
        """SDP text with CRLF line ends."""
        wire = self._wire
        if wire is None:
            wire = ("\r\n".join(self.lines()) + "\r\n").encode("utf-8")
            object.__setattr__(self, "_wire", wire)  # a cache of an immutable value
        return wire

    def __str__(self) -> str:
        return self.serialize().decode("utf-8")

    @property
    def received_bytes(self) -> bytes | None:
        """The bytes :func:`~invsess.sdp.parse_sdp` read this description from, exactly as
        received (None for a description made in code, or parsed from text)."""
        return self._source

    def with_version(self, session_version: int) -> SessionDescription:
        """A copy with ``o=`` session version replaced (RFC 3264 §8: +1 on every change)."""
        if session_version == self.origin.session_version:
            return self
        copy = attrs.evolve(self, origin=attrs.evolve(self.origin, session_version=session_version))
        wire = self._wire
        if wire is not None:  # the o= line is the only one that differs: not written again
            object.__setattr__(copy, "_wire", self._with_origin_line(wire, copy.origin))
        return copy

    def content_key(self) -> int:
        """A hash of the description with its ``o=`` version left out: equal for descriptions
        that differ at most in that version (what RFC 3264 §8 compares to decide whether a
        new offer or answer is a change)."""
        wire = self.serialize()
        if self.origin.session_version:
            wire = self._with_origin_line(wire, attrs.evolve(self.origin, session_version=0))
        return hash(wire)

    def _with_origin_line(self, wire: bytes, origin: Origin) -> bytes:
        # lines() writes the o= line second, right after v=: its first occurrence.
        old, new = f"\no={self.origin}\r\n", f"\no={origin}\r\n"
        return wire.replace(old.encode("utf-8"), new.encode("utf-8"), 1)
