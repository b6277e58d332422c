"""What a :class:`~invsess.aio.Call` tells the application, and the errors it raises.

``async for event in call.events()`` yields these, in order, from the call's first state to
:class:`CallEnded`; each is a frozen value the application may keep (messages in them are
copies of their own). The errors say what ended a call that the application waited on:
:class:`CallFailed` with the final response, :class:`CallTimedOut` when none came,
:class:`TransportFailed` when it could not be sent (or its host resolved).
"""

from __future__ import annotations

import attrs

from invsess.inv import InviteState, OfferKind
from invsess.sdp import SessionDescription
from invsess.sip import Request, Response


@attrs.frozen
class StateChanged:
    """The call moved from ``old`` to ``new`` (PJSIP's states); ``cause`` once it is ending."""

    old: InviteState
    new: InviteState
    cause: int | None


@attrs.frozen
class ProgressReceived:
    """A provisional response to our INVITE (ringing, early media: ``response.body``)."""

    response: Response


@attrs.frozen
class MediaChanged:
    """An offer/answer exchange completed: the SDP we sent and the one we got, agreed now."""

    local: SessionDescription
    remote: SessionDescription


@attrs.frozen
class OfferArrived:
    """The peer offered inside the call (``kind``: re-INVITE, UPDATE, or the 2xx to our INVITE
    without SDP); the call's offer handler answers it. ``sdp`` is None for a re-INVITE without
    SDP (the answer is then an offer)."""

    sdp: SessionDescription | None
    kind: OfferKind
    request: Request | None


@attrs.frozen
class OfferFailed:
    """Our re-INVITE or UPDATE was refused (``code``; 408: no answer): the media stay as they were."""

    code: int
    reason: str


@attrs.frozen
class RequestArrived:
    """A request of the peer inside the call (INFO, MESSAGE, NOTIFY ...), answered with
    ``status`` by the call's ``on_request`` handler (or 200 for INFO/MESSAGE, 501 otherwise)."""

    request: Request
    status: int


@attrs.frozen
class DtmfReceived:
    """A DTMF digit in an INFO (RFC 6086; ``application/dtmf-relay`` or ``application/dtmf``).
    ``duration`` in milliseconds when the body said."""

    digit: str
    duration: int | None
    request: Request


@attrs.frozen
class SessionRefreshed:
    """The session timer was restarted by a refresh (ours or the peer's), RFC 4028."""

    interval: int


@attrs.frozen
class CallEnded:
    """The call is over: ``cause`` is the status behind the end (200 for a BYE), ``response``
    the final failure response to our INVITE when there was one."""

    cause: int | None
    response: Response | None


CallEvent = (
    StateChanged
    | ProgressReceived
    | MediaChanged
    | OfferArrived
    | OfferFailed
    | RequestArrived
    | DtmfReceived
    | SessionRefreshed
    | CallEnded
)


@attrs.frozen
class Reject:
    """What an offer handler returns to refuse the peer's offer: the re-INVITE or UPDATE gets
    ``code`` and the call goes on with the media agreed before."""

    code: int = 488
    reason: str | None = None


@attrs.frozen
class Reply:
    """What an ``on_request`` handler may return instead of a bare status code."""

    code: int = 200
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None


class CallError(Exception):
    """A call did not go as the application waited for it to; ``cause`` is its status code."""

    def __init__(self, message: str, cause: int | None, reason: str = "") -> None:
        super().__init__(message)
        self.cause = cause
        self.reason = reason


class CallFailed(CallError):  # noqa: N818 - named as what happened, like h11's RemoteProtocolError
    """The call ended before the state waited for; ``response`` is the final response to our
    INVITE (code, reason, headers) when the peer sent one."""

    def __init__(
        self, message: str, cause: int | None, reason: str = "", response: Response | None = None
    ) -> None:
        super().__init__(message, cause, reason)
        self.response = response


class OfferRefusedError(CallError):
    """Our re-INVITE or UPDATE was refused by the peer (``cause``: its status code); the call
    goes on with the media agreed before."""


class CallTimedOut(CallFailed):
    """No final response came in time (Timer B, or no answer to our CANCEL): cause 408."""


class TransportFailed(CallFailed):
    """The INVITE could not be sent: its host did not resolve, or the transport refused it (RFC
    3261 §8.1.3.1 treats that as a 503)."""


def parse_dtmf(request: Request) -> tuple[str, int | None] | None:
    """The digit and duration of a DTMF INFO, or None when it carries none (RFC 6086 legacy
    INFO usage: ``application/dtmf-relay`` ``Signal=5`` / ``Duration=160``, or
    ``application/dtmf`` with the digit alone)."""
    ctype = request.content_type
    mime = ctype.mime if ctype is not None else ""
    text = request.body.decode("ascii", "replace").strip()
    if mime == "application/dtmf":
        digit = text[:1]
        return (digit.upper(), None) if digit and digit.upper() in _DIGITS else None
    if mime != "application/dtmf-relay":
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    digit = fields.get("signal", "").upper()
    if digit not in _DIGITS:
        return None
    duration = fields.get("duration", "")
    return digit, int(duration) if duration.isdigit() else None


_DIGITS = frozenset("0123456789*#ABCD")

__all__ = [
    "CallEnded",
    "CallError",
    "CallEvent",
    "CallFailed",
    "CallTimedOut",
    "DtmfReceived",
    "MediaChanged",
    "OfferArrived",
    "OfferFailed",
    "OfferRefusedError",
    "ProgressReceived",
    "Reject",
    "Reply",
    "RequestArrived",
    "SessionRefreshed",
    "StateChanged",
    "TransportFailed",
    "parse_dtmf",
]
