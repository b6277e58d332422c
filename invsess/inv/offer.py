"""Offers inside the dialog: re-INVITE and UPDATE, ours and the peer's (RFC 3261 §14, RFC 3311).

:class:`OfferExchange` keeps the one request of ours in progress and the randomised retry after
a 491 (RFC 3261 §14.1), a 503 or a 422 to a session refresh. It answers the peer's re-INVITEs
and UPDATEs — or refuses them with 491 while an exchange is under way, 500 before the ACK of
the INVITE (§14.2) — and completes late offers (a re-INVITE without SDP: our offer in the 2xx,
the answer in the ACK). Session refreshes are re-INVITEs and UPDATEs too: every one we send
carries our session timer, and every one we answer restarts it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from invsess.inv.answers import take_answer
from invsess.inv.context import Purpose, methods_of
from invsess.inv.lock import lock_codec
from invsess.inv.states import InviteState, RequestRefusedError, SessionInput
from invsess.inv.timer import TimerDecision, response_headers
from invsess.inv.uas import send_2xx
from invsess.sdp import NegotiatorState, SdpNegotiationError, SessionDescription, parse_sdp
from invsess.sip import LocalProtocolError, ParseError, Request, Response, make_response
from invsess.transaction import ClientInviteTransaction, ServerInviteTransaction

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession
    from invsess.inv.timer import SessionTimer
    from invsess.transaction import Transaction

SDP = "application/sdp"


class Retry(enum.Enum):
    """What to send again when the back-off ends."""

    REINVITE = "INVITE"
    UPDATE = "UPDATE"
    REFRESH = "refresh"  # a session refresh: UPDATE or re-INVITE, whichever the peer allows


@attrs.define(slots=True)
class OfferExchange:
    """Our re-INVITE or UPDATE in progress, and the retry after a 491; see the module docstring."""

    #: Our re-INVITE or UPDATE waiting for its final response.
    pending: Transaction[Any] | None = None
    retry_at: float | None = None
    retry: Retry = Retry.REINVITE

    @property
    def busy(self) -> bool:
        """True while a request of ours is in progress or waits to be sent again."""
        return self.pending is not None or self.retry_at is not None

    def next_deadline(self) -> float | None:
        """The end of the back-off."""
        return self.retry_at

    # -- ours --------------------------------------------------------------------------------

    def reinvite(self, session: InviteSession, now: float, direction: str | None = None) -> None:
        """Send a re-INVITE with a new offer (``direction``: "sendonly" holds, "sendrecv" resumes)."""
        session.process(SessionInput.REINVITE, now)
        if session.bye_sent:
            raise LocalProtocolError("the session is ending: a BYE was sent")
        if self.pending is not None or session.ack_wait is not None:
            raise LocalProtocolError("an INVITE transaction is already in progress in this dialog")
        if direction is not None:
            session.negotiator.set_direction(direction)
        self.send(session, "INVITE", now, with_offer=True)

    def update(
        self, session: InviteSession, now: float, direction: str | None = None, *, with_offer: bool = True
    ) -> None:
        """Send an UPDATE: with a new offer, or without (a refresh that changes no media)."""
        session.process(SessionInput.UPDATE, now)
        if session.bye_sent:
            raise LocalProtocolError("the session is ending: a BYE was sent")
        if self.pending is not None or session.negotiator.state is not NegotiatorState.DONE:
            raise LocalProtocolError("an offer/answer exchange is already in progress in this dialog")
        if direction is not None:
            session.negotiator.set_direction(direction)
        self.send(session, "UPDATE", now, with_offer=with_offer)

    def send(
        self,
        session: InviteSession,
        method: str,
        now: float,
        *,
        with_offer: bool,
        body: SessionDescription | None = None,
    ) -> None:
        """A re-INVITE or UPDATE, carrying our session timer (every one of them is a refresh);
        with our offer (``body``, or what our capabilities make) or without."""
        ctx = session.ctx
        self.retry_at = None
        body_bytes = session.negotiator.create_offer(body).serialize() if with_offer else b""
        headers: list[tuple[str, object]] = []
        if session.timer is not None:
            headers += [("Supported", "timer"), *session.timer.request_headers()]
        host, port, transport = session.next_hop()
        request = session.dialog.create_request(
            method, via=ctx.endpoint.via(transport), headers=headers, body=body_bytes,
            content_type=SDP if body_bytes else None,
        )  # fmt: skip
        tx = ctx.endpoint.send_request(request, (host, port), transport, now)
        self.pending = tx
        purpose = Purpose.REINVITE if method == "INVITE" else Purpose.UPDATE
        ctx.track(tx, session, purpose, session.dialog)

    def on_response(
        self, session: InviteSession, tx: Transaction[Any], response: Response, now: float
    ) -> None:
        """The peer's answer to our re-INVITE or UPDATE."""
        code = response.status_code
        if code < 200:
            return
        if self.pending is not tx:
            # A retransmitted 2xx (our ACK was lost): acknowledge it again, negotiate nothing.
            if code < 300 and isinstance(tx, ClientInviteTransaction):
                self._ack(session, tx)
            return
        self.pending = None
        neg = session.negotiator
        timer = session.timer
        refresh = timer is not None and timer.refresh_tx is tx
        if code < 300:
            ok = True
            if tx.request.body and response.body:  # a refresh without SDP negotiates nothing
                try:
                    neg.receive_answer(parse_sdp(response.body))
                    neg.negotiate()
                except (ParseError, SdpNegotiationError):
                    ok = False
            elif tx.request.body and neg.state is NegotiatorState.LOCAL_OFFER:
                neg.cancel_offer()  # a 2xx without the answer: our offer came to nothing
            if isinstance(tx, ClientInviteTransaction):  # an UPDATE's 2xx is not acknowledged
                self._ack(session, tx)
            if timer is not None and session.state is InviteState.CONFIRMED:
                timer.restart(timer.granted(response), now)
            if not ok:
                session.cause = 488  # RFC 3264: an unacceptable answer ends the session
                session.send_bye(now)
            elif tx.request.body:
                session.media_updated()
                lock_codec(session, now)
            return
        if neg.state is NegotiatorState.LOCAL_OFFER:
            neg.cancel_offer()
        retry = (
            Retry.REFRESH if refresh else Retry.REINVITE if tx.request.method == "INVITE" else Retry.UPDATE
        )
        if code == 422 and timer is not None and timer.raise_interval(response):
            self.retry_at, self.retry = now, retry  # RFC 4028 §7.3: at once
        elif code == 491 or (refresh and code == 503):
            # §14.1: the Call-ID's owner waits 2.1-4 s, the other side 0-2 s, then tries again;
            # a 503 says when (Retry-After), or gets the same back-off.
            low, high = (2.1, 4.0) if session.uac is not None else (0.0, 2.0)
            delay = session.ctx.random.uniform(low, high)
            if code == 503 and response.retry_after is not None:
                delay = float(response.retry_after.delta)
            self.retry_at, self.retry = now + delay, retry
        elif refresh and timer is not None and _wants_sdp(timer, tx, code):
            # A refresh without SDP refused with a 4xx (400 or 488 asking for a body, ...):
            # once more at once, and from now on, with our current SDP before giving up
            # (PJSIP's sip_timer.c does the same).
            timer.with_sdp = True
            self.retry_at, self.retry = now, Retry.REFRESH
        elif code in (408, 481) or refresh:
            # The dialog is gone or unreachable, or a session refresh failed (RFC 4028 §10):
            # BYE, and the session ends now.
            session.fail(code, now)

    def on_transport_error(self, session: InviteSession, tx: Transaction[Any], now: float) -> None:
        """Our re-INVITE or UPDATE could not be sent: a 503 (RFC 3261 §8.1.3.1). The offer is
        void; a session refresh is tried again after the back-off, as after a 503 response."""
        if self.pending is not tx:
            return
        self.pending = None
        if session.negotiator.state is NegotiatorState.LOCAL_OFFER:
            session.negotiator.cancel_offer()
        timer = session.timer
        if timer is not None and timer.refresh_tx is tx:
            low, high = (2.1, 4.0) if session.uac is not None else (0.0, 2.0)
            self.retry_at, self.retry = now + session.ctx.random.uniform(low, high), Retry.REFRESH

    def on_timeout(self, session: InviteSession, now: float) -> None:
        """Our re-INVITE or UPDATE got no final response: the dialog is unreachable."""
        self.pending = None
        if session.negotiator.state is NegotiatorState.LOCAL_OFFER:
            session.negotiator.cancel_offer()
        session.fail(408, now)

    def handle_timer(self, session: InviteSession, now: float) -> None:
        """The back-off is over: send again, if the session still wants it."""
        if self.retry_at is None or now < self.retry_at:
            return
        self.retry_at = None
        if session.state is not InviteState.CONFIRMED or self.pending is not None:
            return
        try:
            if self.retry is Retry.REFRESH:
                if session.timer is not None:
                    session.timer.refresh(session, now)
            elif self.retry is Retry.UPDATE:
                self.update(session, now)
            else:
                self.reinvite(session, now)
        except LocalProtocolError as exc:  # the session moved on (BYE sent, peer's offer, ...)
            session.log.info("retry dropped", reason=str(exc))

    @staticmethod
    def _ack(session: InviteSession, tx: ClientInviteTransaction) -> None:
        host, port, transport = session.next_hop()
        cseq = tx.request.cseq.number if tx.request.cseq else session.dialog.local_cseq
        endpoint = session.ctx.endpoint
        ack = session.dialog.create_request("ACK", via=endpoint.via(transport), cseq=cseq)
        endpoint.send_stateless(ack, (host, port), transport)

    # -- the peer's --------------------------------------------------------------------------

    def on_reinvite(
        self, session: InviteSession, tx: ServerInviteTransaction, request: Request, now: float
    ) -> None:
        """A re-INVITE: answered with 200 (our answer, or our offer when it has none)."""
        session.process(SessionInput.RECV_REINVITE, now)  # 500 before the INVITE's ACK (§14.2)
        neg = session.negotiator
        if (
            self.pending is not None
            or session.ack_wait is not None
            or neg.state not in (NegotiatorState.NULL, NegotiatorState.DONE)
        ):
            raise RequestRefusedError("an offer/answer exchange is in progress", 491)
        decision = session.timer.decide(request) if session.timer is not None else None
        if request.allow:
            session.peer_allow = methods_of(request.allow)
        try:
            if request.body:
                neg.receive_offer(parse_sdp(request.body))
                body = neg.create_answer().serialize()
            else:
                body = neg.create_offer().serialize()  # a late offer: the answer comes in the ACK
        except (ParseError, SdpNegotiationError) as exc:
            raise _unusable_offer(exc) from None
        timer_headers = response_headers(decision, request) if decision is not None else []
        send_2xx(session, tx, session.response(request, 200, body=body, extra=timer_headers), now)
        if session.timer is not None:
            session.timer.restart(decision, now)
        if request.body:
            session.media_updated()

    def on_update(self, session: InviteSession, tx: Any, request: Request, now: float) -> None:
        """RFC 3311: an offer outside the INVITE's own exchanges, or a mere refresh without SDP."""
        session.process(SessionInput.RECV_UPDATE, now)
        neg = session.negotiator
        if request.body and (
            self.pending is not None
            or neg.state
            in (NegotiatorState.LOCAL_OFFER, NegotiatorState.REMOTE_OFFER, NegotiatorState.WAIT_NEGO)
        ):
            raise RequestRefusedError("an offer is pending", 491)  # §5.2
        decision = session.timer.decide(request) if session.timer is not None else None
        answer = b""
        if request.body:
            try:
                neg.receive_offer(parse_sdp(request.body))
                answer = neg.create_answer().serialize()
            except (ParseError, SdpNegotiationError) as exc:
                raise _unusable_offer(exc) from None
        headers: list[tuple[str, object]] = [("Contact", session.dialog.local_contact)]
        if isinstance(decision, TimerDecision):
            headers += response_headers(decision, request)
        response = make_response(
            request, 200, headers=headers, body=answer, content_type=SDP if answer else None
        )
        session.ctx.endpoint.respond(tx, response, now)
        if session.timer is not None and session.state in (InviteState.CONNECTING, InviteState.CONFIRMED):
            session.timer.restart(decision, now)  # an UPDATE in an early dialog refreshes nothing
        if answer:
            session.media_updated()

    @staticmethod
    def answer_in_ack(session: InviteSession, ack: Request) -> bool:
        """The answer to the offer of our 2xx, in its ACK; False when there is none or it is
        unusable (the offer is void then: the negotiator is back in its stable state)."""
        neg = session.negotiator
        if not ack.body:
            if neg.state is NegotiatorState.LOCAL_OFFER:
                neg.cancel_offer()
            return False
        if not take_answer(session, ack.body):
            return False
        session.media_updated()
        return True


def _wants_sdp(timer: SessionTimer, tx: Transaction[Any], code: int) -> bool:
    """A 4xx to a refresh without SDP, not about the dialog (408/481) or a retry (491/422):
    the peer may want a body in it; worth one more try with SDP."""
    return not tx.request.body and not timer.with_sdp and 400 <= code < 500 and code not in _NOT_ABOUT_SDP


_NOT_ABOUT_SDP = frozenset({408, 481, 491, 422})


def _unusable_offer(exc: ParseError | SdpNegotiationError) -> RequestRefusedError:
    """488 for an offer we cannot accept, 400 for one we cannot read."""
    return RequestRefusedError(str(exc), 488 if isinstance(exc, SdpNegotiationError) else 400)


__all__ = ["OfferExchange", "Retry"]
