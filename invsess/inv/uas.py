"""The callee's side of a session: the INVITE we answer, and our 2xx until its ACK.

:func:`accept_invite` turns a new INVITE into a session, after everything that can refuse it
without one (an extension we lack, 100rel or a session timer we require, a too-short
Session-Expires) has been checked, so a refused INVITE costs no dialog and no pool.
:class:`UasInvite` answers it (provisional, reliable provisional, 2xx, failure; CANCEL, an
early BYE), and :class:`AckWait` retransmits any 2xx of ours — to the INVITE or to a
re-INVITE — until its ACK comes, ending the session when it never does (RFC 3261 §13.3.1.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from invsess.address import Address
from invsess.dialog import Dialog
from invsess.inv.answer import Answer
from invsess.inv.context import Purpose, methods_of
from invsess.inv.events import IncomingCall
from invsess.inv.prack import ReliableSender, peer_offers_100rel
from invsess.inv.settings import Rel100
from invsess.inv.states import InviteState, RequestRefusedError, SessionInput
from invsess.inv.timer import SessionTimer, TimerDecision, TimerRejection, response_headers, uas_decide
from invsess.memory import PoolExhaustedError
from invsess.sdp import NegotiatorState, SdpNegotiationError, SessionDescription, parse_sdp
from invsess.sip import LocalProtocolError, ParseError, Request, Response
from invsess.transaction import ServerInviteState, ServerInviteTransaction

if TYPE_CHECKING:
    from invsess.inv.context import SessionContext
    from invsess.inv.session import InviteSession


@attrs.define(slots=True)
class AckWait:
    """Our 2xx to an INVITE (the first or a re-INVITE), retransmitted at T1, 2*T1 ... T2 over
    UDP until the ACK comes; after 64*T1 without one, BYE and the session ends. A session has
    one only while it waits (``session.ack_wait`` is None otherwise)."""

    wire: bytes
    destination: Address
    transport: str
    next_at: float | None
    interval: float
    deadline: float

    @classmethod
    def start(cls, tx: ServerInviteTransaction, wire: bytes, now: float) -> AckWait:
        """Our 2xx went out through ``tx``: retransmit it (over UDP) and wait for the ACK."""
        t1 = tx.timers.t1
        next_at = None if tx.reliable else now + t1
        return cls(wire, tx.response_destination, tx.transport, next_at, t1, now + 64 * t1)

    def next_deadline(self) -> float | None:
        """The next retransmission or the end of the wait."""
        return self.deadline if self.next_at is None else min(self.next_at, self.deadline)

    def handle_timer(self, session: InviteSession, now: float) -> None:
        """Retransmit the 2xx, or, with no ACK after 64*T1, BYE and end the session."""
        if now >= self.deadline:
            session.ack_wait = None
            session.cause = 408
            session.send_bye(now)
            session.end(SessionInput.ACK_TIMEOUT, 408, now)
        elif self.next_at is not None and now >= self.next_at:
            session.ctx.endpoint.send_stateless_bytes(self.wire, self.destination, self.transport)
            session.ctx.endpoint.retransmissions.inc("2xx_sent")
            self.interval = min(self.interval * 2, session.ctx.endpoint.config.timers.t2)
            self.next_at = now + self.interval


def check_invite(ctx: SessionContext, request: Request) -> tuple[ReliableSender | None, TimerDecision | None]:
    """What a new INVITE gets of 100rel and session timers, or :class:`RequestRefusedError` with the
    420, 421 or 422 that turns it away (RFC 3261 §8.2.2.3, RFC 3262, RFC 4028)."""
    settings = ctx.settings
    unsupported = [tag for tag in request.require if tag not in settings.supported]
    if unsupported:  # the endpoint lists it, this layer does not do it
        raise RequestRefusedError(
            "a required extension we do not do", 420, headers=(("Unsupported", ", ".join(unsupported)),)
        )
    sender = None
    if settings.rel100 is not Rel100.OFF:
        if peer_offers_100rel(request):
            sender = ReliableSender.create(ctx.random)
        elif settings.rel100 is Rel100.REQUIRED:
            raise RequestRefusedError("100rel is required", 421, headers=(("Require", "100rel"),))
    decision = None
    if settings.timer is not None:
        verdict = uas_decide(request, settings.timer, min_se=settings.timer.min_se, initial=True)
        if isinstance(verdict, TimerRejection):
            raise RequestRefusedError("session timer refused", verdict.status_code, headers=verdict.headers)
        decision = verdict
    return sender, decision


def accept_invite(
    ctx: SessionContext, tx: ServerInviteTransaction, request: Request, now: float
) -> InviteSession:
    """A new INVITE: a dialog and a session of their own, the offer checked at once against our
    capabilities (as PJSIP's ``verify_request`` does: an unacceptable one gets 488 before the
    application is bothered), then :class:`~invsess.inv.events.IncomingCall`. The answer itself
    is made when the application answers, so that it may bring its own SDP then."""
    endpoint = ctx.endpoint
    # Everything that reads the request (and may find a header unreadable) comes first:
    # refusals go out before anything is allocated.
    sender, decision = check_invite(ctx, request)
    peer_allow = methods_of(request.allow)
    try:
        dialog = Dialog.create_uas(
            endpoint.factory,
            request,
            local_tag=endpoint.new_tag(),
            local_contact=ctx.contact(tx.transport),
            transport=tx.transport,
            now=now,
            gauge=ctx.dialog_states,
        )
    except PoolExhaustedError:
        raise RequestRefusedError("out of memory", 503, headers=(("Retry-After", "5"),)) from None
    session = ctx.new_session(dialog)
    session.uas = UasInvite(pending_timer=decision)
    session.rel_sender = sender
    if ctx.settings.timer is not None:
        session.timer = SessionTimer(ctx.settings.timer)
    session.invite_tx = tx
    session.peer = tx.response_destination
    ctx.track(tx, session, Purpose.INVITE, dialog)
    session.peer_allow = peer_allow
    session.process(SessionInput.RECV_INVITE, now)
    neg = session.negotiator
    if request.body:
        try:
            neg.receive_offer(parse_sdp(request.body))
            if neg.has_capabilities:
                neg.check_offer()  # the answer itself waits for the 1xx/2xx that carries it
        except (ParseError, SdpNegotiationError) as exc:
            code = 488 if isinstance(exc, SdpNegotiationError) else 400
            endpoint.respond(tx, session.response(request, code), now)
            session.end(SessionInput.REJECT, code, now)
            return session
    ctx.emit(IncomingCall(session, request, neg.remote_offer))
    return session


@attrs.define(slots=True)
class UasInvite:
    """The INVITE we answer: what its 2xx will carry, and how each answer goes out."""

    #: The session timer agreed for the 2xx we have yet to send.
    pending_timer: TimerDecision | None = None

    def _tx(self, session: InviteSession) -> ServerInviteTransaction:
        tx = session.invite_tx
        if not isinstance(tx, ServerInviteTransaction) or tx.terminated:
            raise LocalProtocolError("answer() is for a ringing incoming call")
        return tx

    def answer(self, session: InviteSession, answer: Answer, now: float) -> None:
        """1xx (ringing), 2xx (with our SDP, or the application's), or a failure.

        With 100rel in use, a 1xx goes reliably (RSeq, retransmitted until its PRACK) unless
        ``answer.reliable`` is False; the first one carries our answer (or, for an INVITE
        without an offer, our offer). A 1xx or a 2xx answered while an earlier reliable 1xx
        awaits its PRACK goes out after it (RFC 3262 §3): the state changes when it does. An
        unreliable 1xx carries SDP only when the application gives it (early media; the 2xx
        then repeats it, RFC 3261 §13.2.1).
        """
        tx = self._tx(session)
        session.process(SessionInput.ANSWER, now)
        code = answer.code
        sender = session.rel_sender
        if answer.reliable and code < 200 and (sender is None or code == 100):
            raise LocalProtocolError("a reliable provisional needs 100rel on both sides (and not 100)")
        if answer.sdp is None and 100 < code < 300 and not self._can_make_sdp(session, code):
            raise LocalProtocolError("no local SDP: give the answer (or offer) to send")
        reliable = sender is not None and code != 100 and answer.reliable is not False
        endpoint = session.ctx.endpoint
        if code < 200 and not reliable:
            body = b""
            if answer.sdp is not None and not session.early_sdp:
                body = self._sdp(session, tx, now, answer.sdp) or b""
                if session.state is InviteState.DISCONNECTED:
                    return  # the answer did not fit the offer: 488 went out
            extra = list(answer.headers)
            endpoint.respond(
                tx, session.response(tx.request, code, answer.reason, body=body, extra=extra), now
            )
            if code > 100:
                session.process(SessionInput.SEND_1XX, now)
        elif code < 300 and sender is not None and (sender.must_wait(code) or sender.queue):
            sender.queue.append(answer)  # goes out when the outstanding 1xx is PRACKed
        elif code < 200 and sender is not None:
            sender.send_1xx(session, tx, answer, now)
        elif code < 300:
            self.send_2xx(session, tx, answer, now)
        else:
            self.reject(session, tx, code, answer.reason, now, headers=answer.headers)

    @staticmethod
    def _can_make_sdp(session: InviteSession, code: int) -> bool:
        """Whether the layer can put SDP in this response without the application's: it has
        capabilities, or there is nothing to say (an answer went out already, a 1xx needs none)."""
        neg = session.negotiator
        if neg.has_capabilities or session.early_sdp or neg.state is NegotiatorState.DONE:
            return True
        return code < 200 and session.rel_sender is None  # an unreliable 1xx carries none

    @staticmethod
    def reject(
        session: InviteSession,
        tx: ServerInviteTransaction,
        code: int,
        reason: str | None,
        now: float,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """A final failure: the session ends with it."""
        response = session.response(tx.request, code, reason, extra=list(headers))
        session.ctx.endpoint.respond(tx, response, now)
        session.end(SessionInput.REJECT, code, now)

    def send_2xx(
        self, session: InviteSession, tx: ServerInviteTransaction, answer: Answer, now: float
    ) -> None:
        """Our 2xx: our answer (or, for an INVITE without SDP, our offer), the agreed timer."""
        # The answer already went in a reliable 1xx: the 2xx carries no SDP (RFC 3261 §13.2.1).
        body = b"" if session.early_sdp else self._sdp(session, tx, now, answer.sdp)
        if body is None:
            return  # the offer could not be answered: 488 went out, the session is over
        decision = self.pending_timer
        headers = response_headers(decision, tx.request) if decision is not None else []
        extra = [*headers, *answer.headers]
        response = session.response(tx.request, answer.code, answer.reason, body=body, extra=extra)
        send_2xx(session, tx, response, now)
        if session.rel_sender is not None:
            session.rel_sender.clear()
        if decision is not None and session.timer is not None:
            session.timer.start(decision, now)
            self.pending_timer = None
        session.process(SessionInput.SEND_2XX, now)

    @staticmethod
    def _sdp(
        session: InviteSession, tx: ServerInviteTransaction, now: float, sdp: SessionDescription | None = None
    ) -> bytes | None:
        """The SDP our response to the INVITE carries: the answer (made now, from ``sdp`` or
        our capabilities; or the one made for an earlier response), or, for an INVITE without
        an offer, our offer. None when the answer does not fit the offer: 488 went out."""
        neg = session.negotiator
        try:
            agreed = neg.active_local_bytes
            if neg.state is NegotiatorState.REMOTE_OFFER:
                return neg.create_answer(sdp).serialize()
            if neg.state is NegotiatorState.DONE and agreed is not None:
                return agreed  # the answer of an earlier response
            if neg.state is NegotiatorState.LOCAL_OFFER and neg.local_offer is not None:
                return neg.local_offer.serialize()  # our offer, in an unreliable 1xx already
            return neg.create_offer(sdp=sdp).serialize()  # late offer: the answer comes in the ACK
        except SdpNegotiationError:
            session.ctx.endpoint.respond(tx, session.response(tx.request, 488), now)
            session.end(SessionInput.REJECT, 488, now)
            return None

    def on_cancel(self, session: InviteSession, now: float) -> None:
        """The INVITE was CANCELled (the endpoint said 200 to the CANCEL): 487 ends it."""
        tx = session.invite_tx
        if isinstance(tx, ServerInviteTransaction) and session.state in (
            InviteState.INCOMING,
            InviteState.EARLY,
        ):
            self.reject(session, tx, 487, None, now)

    def bye_received(self, session: InviteSession, now: float) -> None:
        """A BYE in the early dialog ends the INVITE too, with 487 (RFC 3261 §15.1.2)."""
        tx = session.invite_tx
        if isinstance(tx, ServerInviteTransaction) and session.state in (
            InviteState.INCOMING,
            InviteState.EARLY,
        ):
            session.ctx.endpoint.respond(tx, session.response(tx.request, 487), now)

    def end(self, session: InviteSession, now: float) -> None:
        """The session ended before any final response: the INVITE still gets one (500) — a
        callee may not BYE an early dialog (RFC 3261 §15)."""
        tx = session.invite_tx
        if isinstance(tx, ServerInviteTransaction) and tx.state is ServerInviteState.PROCEEDING:
            session.ctx.endpoint.respond(tx, session.response(tx.request, 500, "Session Ended"), now)


def send_2xx(session: InviteSession, tx: ServerInviteTransaction, response: Response, now: float) -> None:
    """Send a 2xx to an INVITE and wait for its ACK, retransmitting it meanwhile."""
    session.ctx.endpoint.respond(tx, response, now)
    # The bytes the transaction sent (and keeps): the 2xx is not written out a second time.
    session.ack_wait = AckWait.start(tx, tx.last_response or response.serialize(), now)


__all__ = ["AckWait", "UasInvite", "accept_invite", "check_invite", "send_2xx"]
