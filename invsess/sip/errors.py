"""Errors of the SIP syntax layer, split by whose fault they are (h11's habit).

A :class:`RemoteProtocolError` is the peer's fault and carries the SIP response it deserves
(``status_code`` and ``reason``); a :class:`LocalProtocolError` is ours (the application built
something invalid). Parsing never raises anything else.
"""

from __future__ import annotations

from invsess.errors import InvsessError, UsageError


class ProtocolError(InvsessError):
    """Base of protocol errors; ``status_code``/``reason`` say what response fits."""

    def __init__(self, message: str, *, status_code: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid."""


class ParseError(RemoteProtocolError):
    """A message, header or URI could not be parsed.

    ``header`` names the header whose value failed (None for the start line, framing or URI).
    """

    def __init__(
        self,
        message: str,
        *,
        header: str | None = None,
        status_code: int = 400,
        reason: str = "Bad Request",
    ) -> None:
        super().__init__(message, status_code=status_code, reason=reason)
        self.header = header


class FramingError(ParseError):
    """A byte stream cannot be split into messages; the connection cannot be used any more.

    ``head`` holds the start of the message that failed (its header block, when complete) so
    that a 513 can still be answered along its Via; empty when there is nothing to answer.
    """

    head: bytes = b""


class LocalProtocolError(ProtocolError, UsageError):
    """The application asked for something the protocol does not allow."""
