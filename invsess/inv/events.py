"""What a :class:`~invsess.inv.layer.SessionLayer` tells the application (``next_event``).

Events are named in the past tense and frozen; a session in an event is the application's to
read until it reads the next event (hold references to keep it longer). A response carried by
an event is a copy of its own (the received one goes with the endpoint's next event); a request
lives in its transaction's pool, so until the application has answered it."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from invsess.inv.states import InviteState
from invsess.sdp import SessionDescription, parse_sdp
from invsess.sip import Request, Response, parse_message
from invsess.transaction import RequestReceived

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession
    from invsess.transaction import Transaction


def detached(response: Response) -> Response:
    """A copy of ``response`` in no pool: it lives as long as the application keeps it."""
    copy = parse_message(response.serialize())
    if not isinstance(copy, Response):  # pragma: no cover - a response serialises as one
        raise TypeError("a response did not parse back as a response")
    return copy


def detached_request(request: Request) -> Request:
    """A copy of ``request`` in no pool (see :func:`detached`)."""
    copy = parse_message(request.serialize())
    if not isinstance(copy, Request):  # pragma: no cover - a request serialises as one
        raise TypeError("a request did not parse back as a request")
    return copy


@attrs.frozen
class IncomingCall:
    """A new INVITE: answer it with :meth:`SessionLayer.answer` (its request lives while it
    rings). ``offer`` is the caller's SDP (None for a late offer: our answer must offer)."""

    session: InviteSession
    request: Request
    offer: SessionDescription | None = None


class OfferKind(enum.Enum):
    """Where the peer's offer came, and so where our answer goes."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    REINVITE = "re-INVITE"  # answered in its 2xx (an INVITE without SDP: our offer goes there)
    UPDATE = "UPDATE"  # answered in its 2xx
    ACK = "2xx"  # the offer in the 2xx to our INVITE without SDP: answered in our ACK


@attrs.frozen
class OfferReceived:
    """An offer of the peer inside a session whose offers the application answers itself
    (:meth:`SessionLayer.defer_offers`): answer it with :meth:`SessionLayer.answer_offer` or
    refuse it with :meth:`SessionLayer.reject_offer`. ``offer`` is None for a re-INVITE
    without SDP (our answer is then an offer; the peer's answer comes in its ACK). ``request``
    is the re-INVITE or UPDATE (None for an offer in a 2xx)."""

    session: InviteSession
    offer: SessionDescription | None
    kind: OfferKind
    request: Request | None = None


@attrs.frozen
class OfferWithdrawn:
    """The offer of an :class:`OfferReceived` is no longer waiting: the peer CANCELled the
    re-INVITE or ended the session, or the application took longer than ``offer_timeout``
    (then the request got 504). An answer given now is refused."""

    session: InviteSession
    code: int


@attrs.frozen
class OfferRefused:
    """Our re-INVITE or UPDATE was refused for good (``code``: its final response, 408 when none
    came; a 491 is retried first, RFC 3261 §14.1): the media agreed before stay."""

    session: InviteSession
    code: int
    reason: str


@attrs.frozen
class SessionRefreshed:
    """A refresh (ours or the peer's re-INVITE/UPDATE) restarted the session timer, RFC 4028."""

    session: InviteSession
    interval: int


@attrs.frozen
class InviteResponseReceived:
    """A response (other than 100) to the INVITE of a call we placed: ``response`` is a copy,
    the application's to keep (the ringing, the early media SDP, the final failure)."""

    session: InviteSession
    response: Response


@attrs.frozen
class DialogRequestReceived(RequestReceived):
    """A request of the peer inside the session's dialog that the layer does not handle itself
    (INFO, MESSAGE, NOTIFY, ...): answer it with :meth:`SessionLayer.respond` (or, as any
    ``RequestReceived``, with ``endpoint.respond``). ``session`` is the call it came in."""

    session: InviteSession


@attrs.frozen
class DialogResponseReceived:
    """The final response to a request sent with :meth:`SessionLayer.send_request` (a copy),
    or None when it timed out or could not be sent."""

    session: InviteSession
    transaction: Transaction[Any]
    response: Response | None


@attrs.frozen
class SessionStateChanged:
    """The session moved; ``cause`` is the status code behind a DISCONNECTED."""

    session: InviteSession
    old: InviteState
    new: InviteState
    cause: int | None


@attrs.frozen
class ForkedCall:
    """Another fork answered our INVITE and the layer keeps forks (``keep_forks``): ``session``
    is that fork's call, confirmed in a dialog of its own; ``original`` is the one we placed."""

    session: InviteSession
    original: InviteSession


@attrs.frozen
class MediaUpdated:
    """An offer/answer exchange completed: ``local`` and ``remote`` are the SDPs agreed then.

    The event carries the agreed SDPs as bytes (``local_sdp``, ``remote_sdp``, as sent and
    received) and parses them when ``local`` or ``remote`` is read. ``generation`` counts the
    session's negotiations: it equals ``session.negotiator.generation`` while this agreement is
    the one in force.
    """

    session: InviteSession
    local_sdp: bytes
    remote_sdp: bytes
    generation: int

    @property
    def local(self) -> SessionDescription:
        """Our side of the agreement."""
        return parse_sdp(self.local_sdp)

    @property
    def remote(self) -> SessionDescription:
        """The peer's side of the agreement."""
        return parse_sdp(self.remote_sdp)


SessionEvent = (
    IncomingCall
    | SessionStateChanged
    | MediaUpdated
    | ForkedCall
    | OfferReceived
    | OfferWithdrawn
    | OfferRefused
    | InviteResponseReceived
    | SessionRefreshed
    | DialogRequestReceived
    | DialogResponseReceived
    | RequestReceived
)

__all__ = [
    "DialogRequestReceived",
    "DialogResponseReceived",
    "ForkedCall",
    "IncomingCall",
    "InviteResponseReceived",
    "MediaUpdated",
    "OfferKind",
    "OfferReceived",
    "OfferRefused",
    "OfferWithdrawn",
    "SessionEvent",
    "SessionRefreshed",
    "SessionStateChanged",
    "detached",
    "detached_request",
]
