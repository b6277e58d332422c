"""Splitting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3, RFC 5626 §3.5.1).

Feed bytes in any chunking, byte by byte included; get whole messages (as bytes, to be parsed
by :func:`~invsess.sip.parser.parse_message`) and keep-alive pings out. A framing error (no
valid Content-Length, a message over the size limit) leaves the stream unusable: the framer says
so on every later call, and the transport must close the connection.
"""

from __future__ import annotations

import attrs

from invsess.sip.errors import FramingError
from invsess.sip.scan import DEFAULT_LIMITS, ParserLimits, find_header_end


@attrs.frozen
class KeepAlivePing:
    """A double-CRLF keep-alive ping (RFC 5626); the transport answers with a single CRLF."""


PING = KeepAlivePing()
PONG = b"\r\n"

Frame = bytes | KeepAlivePing


class StreamFramer:
    """Cuts one connection's byte stream into messages. No I/O; one instance per connection."""

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._scan_from = 0
        self._pending_total: int | None = None  # length of a message whose headers are complete
        self._broken: FramingError | None = None

    @property
    def broken(self) -> bool:
        """True after a framing error: the connection must be closed."""
        return self._broken is not None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every message (and ping) now complete, in order."""
        if self._broken is not None:
            raise FramingError(f"stream already failed: {self._broken}")
        self._buffer += data
        try:
            return self._drain()
        except FramingError as exc:
            self._broken = exc
            raise

    def _drain(self) -> list[Frame]:
        out: list[Frame] = []
        buf = self._buffer
        while buf:
            if buf[0] in (13, 10):  # CR or LF: keep-alive, or CRLF between messages
                if buf.startswith(b"\r\n\r\n"):
                    out.append(PING)
                    del buf[:4]
                elif len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    break  # maybe the start of a ping: wait for more
                elif buf.startswith(b"\r\n"):
                    del buf[:2]  # a pong, or a stray CRLF between messages (RFC 3261 §7.5)
                elif buf.startswith(b"\n"):
                    del buf[:1]
                else:
                    raise FramingError("stray CR in the stream")
                self._scan_from = 0
                continue
            total = self._pending_total
            if total is None:
                end, sep = find_header_end(buf, max(0, self._scan_from - 3))
                if end < 0:
                    if len(buf) > self.limits.max_message_size:
                        error = FramingError(
                            f"no end of headers within {self.limits.max_message_size} bytes",
                            status_code=513,
                            reason="Message Too Large",
                        )
                        error.head = bytes(buf[: self.limits.max_message_size])
                        raise error
                    self._scan_from = len(buf)
                    break
                total = end + sep + self._content_length(bytes(buf[:end]))
                if total > self.limits.max_message_size:
                    error = FramingError(
                        f"message of {total} bytes exceeds the limit of {self.limits.max_message_size}",
                        status_code=513,
                        reason="Message Too Large",
                    )
                    error.head = bytes(buf[: end + sep])
                    raise error
            if len(buf) < total:
                self._pending_total = total
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._pending_total = None
            self._scan_from = 0
        return out

    @staticmethod
    def _content_length(head: bytes) -> int:
        """Content-Length from the raw header block; absent means 0 (logged upstream)."""
        values: set[bytes] = set()
        for line in head.split(b"\n"):
            if line[:1] in (b" ", b"\t"):
                continue  # a folded continuation, not a header name
            name, colon, value = line.partition(b":")
            if colon and name.rstrip(b" \t").lower() in (b"content-length", b"l"):
                values.add(value.strip())
        if not values:
            return 0
        if len(values) > 1:
            raise FramingError(f"several different Content-Length values {sorted(values)!r}")
        value = values.pop()
        if not value.isdigit():
            raise FramingError(f"invalid Content-Length {value!r}")
        return int(value)
