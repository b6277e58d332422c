"""Offers inside the dialog: re-INVITE and UPDATE, ours and the peer's (RFC 3261 §14, RFC 3311).

:class:`OfferExchange` keeps the one request of ours in progress and the randomised retry after
a 491 (RFC 3261 §14.1), a 503 or a 422 to a session refresh. It answers the peer's re-INVITEs
and UPDATEs — or refuses them with 491 while an exchange is under way, 500 before the ACK of
the INVITE (§14.2) — and completes late offers (a re-INVITE without SDP: our offer in the 2xx,
the answer in the ACK). Session refreshes are re-INVITEs and UPDATEs too: every one we send
carries our session timer, and every one we answer restarts it.

In a session whose offers the application answers itself (``deferred``: a B2BUA asks the other
leg first), the peer's offer waits in :class:`IncomingOffer` — a machine of its own,
:data:`INCOMING_TRANSITIONS` — until the application answers or refuses it, the peer
withdraws it (CANCEL, BYE: 487), or ``offer_timeout`` passes (504). Meanwhile the server
transaction keeps the peer's re-INVITE alive with its own 100 Trying; another offer of the
peer gets 500 with Retry-After (RFC 3261 §14.2, RFC 3311 §5.2), ours waits (LocalProtocolError
for the application, a later try for a session refresh). The offer in the 2xx to an INVITE we
sent without SDP waits the same way, with our ACK held back until the answer can go in it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from invsess.auth import credentials_of
from invsess.errors import InternalError
from invsess.inv.answers import take_answer
from invsess.inv.context import Purpose, methods_of
from invsess.inv.events import OfferKind, OfferReceived, OfferRefused, OfferWithdrawn, SessionRefreshed
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
    from invsess.transaction import ServerTransaction, Transaction

SDP = "application/sdp"


class IncomingState(enum.Enum):
    """Whether an offer of the peer waits for the application's answer."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    IDLE = "idle"
    WAITING = "waiting"


class IncomingInput(enum.Enum):
    """What moves :class:`IncomingOffer`; ``origin`` says whose fault a missing entry is."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    label: str
    refusal: int

    def __new__(cls, label: str, refusal: int = 0) -> IncomingInput:
        member = object.__new__(cls)
        member._value_ = label
        member.label = label
        member.refusal = refusal
        return member

    #: The peer's offer, for the application (while one waits: 500 + Retry-After, §14.2).
    RECEIVE = ("receive an offer", 500)
    ANSWER = "answer the offer"
    REJECT = "refuse the offer"
    WITHDRAW = "the peer withdrew the offer"  # CANCEL of its re-INVITE, or BYE: 487
    TIMEOUT = "the application did not answer in time"  # 504


_W, _IDLE, _II = IncomingState.WAITING, IncomingState.IDLE, IncomingInput
INCOMING_TRANSITIONS: dict[tuple[IncomingState, IncomingInput], IncomingState] = {
    (_IDLE, _II.RECEIVE): _W,
    (_W, _II.ANSWER): _IDLE,
    (_W, _II.REJECT): _IDLE,
    (_W, _II.WITHDRAW): _IDLE,
    (_W, _II.TIMEOUT): _IDLE,
}


@attrs.define(slots=True)
class IncomingOffer:
    """The peer's offer the application answers itself; see the module docstring.

    ``tx`` and ``request`` are the re-INVITE or UPDATE (their transaction keeps them while we
    have not answered); ``cseq`` is the INVITE's, for the ACK an offer in a 2xx waits on.
    """

    TRANSITIONS: ClassVar[dict[tuple[IncomingState, IncomingInput], IncomingState]] = INCOMING_TRANSITIONS

    state: IncomingState = IncomingState.IDLE
    kind: OfferKind = OfferKind.REINVITE
    tx: ServerTransaction[Any] | None = None
    request: Request | None = None
    decision: Any = None  # the session-timer decision for the 2xx (TimerDecision | None)
    cseq: int = 0
    deadline: float | None = None

    def go(self, event: IncomingInput) -> None:
        """Take ``event`` through the table; a missing key raises by whose move it was."""
        nxt = self.TRANSITIONS.get((self.state, event))
        if nxt is None:
            what = f"{event.label} is not possible while the offer is {self.state.value}"
            if event is IncomingInput.RECEIVE:
                raise RequestRefusedError(what, event.refusal, headers=(("Retry-After", "1"),))
            if event in (IncomingInput.ANSWER, IncomingInput.REJECT):
                raise LocalProtocolError(f"no offer of the peer is waiting: {what}")
            raise InternalError(what)
        self.state = nxt
        if nxt is IncomingState.IDLE:
            self.tx = self.request = self.decision = None
            self.deadline = None

    @property
    def waiting(self) -> bool:
        """True while an offer waits for the application."""
        return self.state is IncomingState.WAITING


class Retry(enum.Enum):
    """What to send again when the back-off ends."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

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
    #: The application's own offer and headers, sent again after a 491 (a B2BUA's other leg's).
    retry_sdp: SessionDescription | None = None
    retry_headers: tuple[tuple[str, str], ...] = ()
    #: The application answers the peer's offers itself (``SessionLayer.defer_offers``).
    deferred: bool = False
    incoming: IncomingOffer = attrs.field(factory=IncomingOffer)

    @property
    def busy(self) -> bool:
        """True while a request of ours is in progress or waits to be sent again, or an offer
        of the peer waits for the application's answer."""
        return self.pending is not None or self.retry_at is not None or self.incoming.waiting

    def next_deadline(self) -> float | None:
        """The end of the back-off, or of the wait for the application's answer."""
        due = self.incoming.deadline
        if self.retry_at is not None and (due is None or self.retry_at < due):
            return self.retry_at
        return due

    # -- ours --------------------------------------------------------------------------------

    def reinvite(
        self,
        session: InviteSession,
        now: float,
        direction: str | None = None,
        *,
        sdp: SessionDescription | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Send a re-INVITE with a new offer (``direction``: "sendonly" holds, "sendrecv"
        resumes; ``sdp``: this offer instead of one made from our capabilities)."""
        session.process(SessionInput.REINVITE, now)
        if session.bye_sent:
            raise LocalProtocolError("the session is ending: a BYE was sent")
        if self.pending is not None or session.ack_wait is not None:
            raise LocalProtocolError("an INVITE transaction is already in progress in this dialog")
        if self.incoming.waiting or session.negotiator.state is not NegotiatorState.DONE:
            raise LocalProtocolError("an offer of the peer is waiting for our answer")
        if direction is not None:
            session.negotiator.set_direction(direction)
        self.send(session, "INVITE", now, with_offer=True, sdp=sdp, extra=headers)

    def update(
        self,
        session: InviteSession,
        now: float,
        direction: str | None = None,
        *,
        with_offer: bool = True,
        sdp: SessionDescription | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Send an UPDATE: with a new offer, or without (a refresh that changes no media)."""
        session.process(SessionInput.UPDATE, now)
        if session.bye_sent:
            raise LocalProtocolError("the session is ending: a BYE was sent")
        if (
            self.pending is not None
            or self.incoming.waiting
            or session.negotiator.state is not NegotiatorState.DONE
        ):
            raise LocalProtocolError("an offer/answer exchange is already in progress in this dialog")
        if direction is not None:
            session.negotiator.set_direction(direction)
        self.send(session, "UPDATE", now, with_offer=with_offer, sdp=sdp, extra=headers)

    def send(
        self,
        session: InviteSession,
        method: str,
        now: float,
        *,
        with_offer: bool,
        body: SessionDescription | None = None,
        sdp: SessionDescription | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """A re-INVITE or UPDATE, carrying our session timer (every one of them is a refresh);
        with our offer (``body``, or what our capabilities make; ``sdp``: the application's, as
        it is) or without; ``extra`` headers (the application's)."""
        ctx = session.ctx
        self.retry_at = None
        self.retry_sdp, self.retry_headers = sdp, extra
        neg = session.negotiator
        body_bytes = neg.create_offer(body, sdp=sdp).serialize() if with_offer else b""
        headers: list[tuple[str, object]] = [*extra]
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
                _restarted(session, timer.granted(response), now)
            if not ok:
                session.cause = 488  # RFC 3264: an unacceptable answer ends the session
                session.send_bye(now)
            elif tx.request.body:
                session.media_updated()
                lock_codec(session, now)
            return
        if code in (401, 407) and self._send_authenticated(session, tx, response, now):
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
        else:
            if not refresh:
                session.ctx.emit(OfferRefused(session, code, response.reason))
            if code in (408, 481) or refresh:
                # The dialog is gone or unreachable, or a session refresh failed (RFC 4028 §10):
                # BYE, and the session ends now.
                session.fail(code, now)

    def on_transport_error(self, session: InviteSession, tx: Transaction[Any], now: float) -> None:
        """Our re-INVITE or UPDATE could not be sent: a 503 (RFC 3261 §8.1.3.1). The offer is
        void; a session refresh is tried again after the back-off, as after a 503 response."""
        if self.pending is not tx:
            return
        self.abandon(session)
        timer = session.timer
        if timer is not None and timer.refresh_tx is tx:
            low, high = (2.1, 4.0) if session.uac is not None else (0.0, 2.0)
            self.retry_at, self.retry = now + session.ctx.random.uniform(low, high), Retry.REFRESH
        else:
            session.ctx.emit(OfferRefused(session, 503, "Service Unavailable"))

    def _send_authenticated(
        self, session: InviteSession, tx: Transaction[Any], response: Response, now: float
    ) -> bool:
        """A proxy (or the peer) challenged our re-INVITE or UPDATE: the same request, offer
        included, again with credentials; it is the pending one now (a refresh stays one)."""
        request = session.authenticated_retry(tx, response, session.dialog)
        if request is None:
            return False
        ctx = session.ctx
        again = ctx.endpoint.send_request(request, tx.peer, tx.transport, now)
        self.pending = again
        purpose = Purpose.REINVITE if request.method == "INVITE" else Purpose.UPDATE
        ctx.track(again, session, purpose, session.dialog)
        if session.timer is not None and session.timer.refresh_tx is tx:
            session.timer.refresh_tx = again
        return True

    def on_timeout(self, session: InviteSession, now: float) -> None:
        """Our re-INVITE or UPDATE got no final response: the dialog is unreachable."""
        session.ctx.emit(OfferRefused(session, 408, "Request Timeout"))
        self.abandon(session)
        session.fail(408, now)

    def abandon(self, session: InviteSession) -> None:
        """Our re-INVITE or UPDATE is void (unsent, unanswered, or sent in a dialog that is
        over): a response to it is ignored, and the negotiator goes back to the agreed session
        if it was waiting for the answer."""
        self.pending = None
        if session.negotiator.state is NegotiatorState.LOCAL_OFFER:
            session.negotiator.cancel_offer()

    def handle_timer(self, session: InviteSession, now: float) -> None:
        """The back-off is over: send again, if the session still wants it. Or the application
        kept the peer's offer waiting too long: 504 (the ACK case: ACK, then BYE)."""
        incoming = self.incoming
        if incoming.deadline is not None and now >= incoming.deadline:
            self._refuse(session, 504, "Offer Not Answered In Time", now, IncomingInput.TIMEOUT)
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
                self.update(session, now, sdp=self.retry_sdp, headers=self.retry_headers)
            else:
                self.reinvite(session, now, sdp=self.retry_sdp, headers=self.retry_headers)
        except LocalProtocolError as exc:  # the session moved on (BYE sent, peer's offer, ...)
            session.log.info("retry dropped", reason=str(exc))

    @staticmethod
    def _ack(session: InviteSession, tx: ClientInviteTransaction) -> None:
        host, port, transport = session.next_hop()
        cseq = tx.request.cseq.number if tx.request.cseq else session.dialog.local_cseq
        endpoint = session.ctx.endpoint
        ack = session.dialog.create_request(
            "ACK", via=endpoint.via(transport), cseq=cseq, headers=credentials_of(tx.request)
        )
        endpoint.send_stateless(ack, (host, port), transport)

    # -- the peer's --------------------------------------------------------------------------

    def on_reinvite(
        self, session: InviteSession, tx: ServerInviteTransaction, request: Request, now: float
    ) -> None:
        """A re-INVITE: answered with 200 (our answer, or our offer when it has none) — at once,
        or, when the application answers offers itself, once it has."""
        session.process(SessionInput.RECV_REINVITE, now)  # 500 before the INVITE's ACK (§14.2)
        neg = session.negotiator
        if self.incoming.waiting:
            self.incoming.go(IncomingInput.RECEIVE)  # refused: 500 with Retry-After
        if (
            self.pending is not None
            or session.ack_wait is not None
            or neg.state not in (NegotiatorState.NULL, NegotiatorState.DONE)
        ):
            raise RequestRefusedError("an offer/answer exchange is in progress", 491)
        decision = session.timer.decide(request) if session.timer is not None else None
        if request.allow:
            session.peer_allow = methods_of(request.allow)
        if request.body:
            try:
                neg.receive_offer(parse_sdp(request.body))
            except (ParseError, SdpNegotiationError) as exc:
                raise _unusable_offer(exc) from None
        if self.deferred:
            self._wait(session, OfferKind.REINVITE, tx, request, decision=decision, now=now)
            return
        self._answer_reinvite(session, tx, request, decision=decision, sdp=None, now=now)

    @staticmethod
    def _answer_reinvite(
        session: InviteSession,
        tx: ServerInviteTransaction,
        request: Request,
        *,
        decision: TimerDecision | None,
        sdp: SessionDescription | None,
        now: float,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        neg = session.negotiator
        try:
            if request.body:
                body = neg.create_answer(sdp).serialize()
            else:
                body = neg.create_offer(sdp=sdp).serialize()  # a late offer: the answer comes in the ACK
        except (ParseError, SdpNegotiationError) as exc:
            raise _unusable_offer(exc) from None
        timer_headers = response_headers(decision, request) if decision is not None else []
        response = session.response(request, 200, body=body, extra=[*timer_headers, *headers])
        send_2xx(session, tx, response, now)
        if session.timer is not None:
            _restarted(session, decision, now)
        if request.body:
            session.media_updated()

    def on_update(self, session: InviteSession, tx: Any, request: Request, now: float) -> None:
        """RFC 3311: an offer outside the INVITE's own exchanges, or a mere refresh without SDP."""
        session.process(SessionInput.RECV_UPDATE, now)
        neg = session.negotiator
        if request.body and self.incoming.waiting:
            self.incoming.go(IncomingInput.RECEIVE)  # refused: 500 with Retry-After (§5.2)
        if request.body and neg.state is NegotiatorState.REMOTE_OFFER:
            # An offer of the peer not answered yet (the INVITE's, say): RFC 3311 §5.2.
            raise RequestRefusedError(
                "an offer of yours is not answered yet", 500, headers=(("Retry-After", "1"),)
            )
        if request.body and (
            self.pending is not None or neg.state in (NegotiatorState.LOCAL_OFFER, NegotiatorState.WAIT_NEGO)
        ):
            raise RequestRefusedError("an offer is pending", 491)  # §5.2
        decision = session.timer.decide(request) if session.timer is not None else None
        if request.body:
            try:
                neg.receive_offer(parse_sdp(request.body))
            except (ParseError, SdpNegotiationError) as exc:
                raise _unusable_offer(exc) from None
            if self.deferred:
                self._wait(session, OfferKind.UPDATE, tx, request, decision=decision, now=now)
                return
        self._answer_update(session, tx, request, decision=decision, sdp=None, now=now)

    @staticmethod
    def _answer_update(
        session: InviteSession,
        tx: Any,
        request: Request,
        *,
        decision: Any,
        sdp: SessionDescription | None,
        now: float,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        neg = session.negotiator
        answer = b""
        if request.body:
            try:
                answer = neg.create_answer(sdp).serialize()
            except (ParseError, SdpNegotiationError) as exc:
                raise _unusable_offer(exc) from None
        extra: list[tuple[str, object]] = [("Contact", session.dialog.local_contact), *headers]
        if isinstance(decision, TimerDecision):
            extra += response_headers(decision, request)
        response = make_response(
            request, 200, headers=extra, body=answer, content_type=SDP if answer else None
        )
        session.ctx.endpoint.respond(tx, response, now)
        if session.timer is not None and session.state in (InviteState.CONNECTING, InviteState.CONFIRMED):
            _restarted(session, decision, now)  # an UPDATE in an early dialog refreshes nothing
        if answer:
            session.media_updated()

    # -- offers the application answers ------------------------------------------------------

    def _wait(
        self,
        session: InviteSession,
        kind: OfferKind,
        tx: ServerTransaction[Any] | None,
        request: Request | None,
        *,
        decision: Any,
        now: float,
        cseq: int = 0,
    ) -> None:
        """Keep the peer's offer for the application (OfferReceived) until it answers."""
        incoming = self.incoming
        incoming.go(IncomingInput.RECEIVE)
        incoming.kind, incoming.tx, incoming.request = kind, tx, request
        incoming.decision, incoming.cseq = decision, cseq
        wait = session.ctx.settings.offer_timeout
        if kind is not OfferKind.REINVITE:
            # The peer's UPDATE gives up at Timer F, its 2xx retransmissions at 64*T1: answer before.
            wait = min(wait, 32 * session.ctx.endpoint.config.timers.t1)
        incoming.deadline = now + wait
        offer = session.negotiator.remote_offer
        session.ctx.emit(OfferReceived(session, offer, kind, request))

    def hold_ack(self, session: InviteSession, cseq: int, now: float) -> None:
        """The 2xx to our INVITE without SDP carries the peer's offer, which the application
        answers: our ACK waits for that answer (the peer retransmits its 2xx meanwhile)."""
        self._wait(session, OfferKind.ACK, None, None, decision=None, now=now, cseq=cseq)

    def answer_offer(
        self,
        session: InviteSession,
        sdp: SessionDescription | None,
        now: float,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """The application's answer to the waiting offer (``sdp``; None: from our capabilities).
        For a re-INVITE without SDP, ``sdp`` is our offer. An answer that does not answer the
        offer gets the request a 488 (and the session goes on as it was)."""
        incoming = self.incoming
        if not incoming.waiting:
            incoming.go(IncomingInput.ANSWER)  # raises: nothing waits
        session.process(SessionInput.ANSWER_OFFER, now)
        if sdp is None and not session.negotiator.has_capabilities:  # a misuse changes nothing
            raise LocalProtocolError("no local SDP: give the answer")
        kind, tx, request, decision, cseq = (
            incoming.kind, incoming.tx, incoming.request, incoming.decision, incoming.cseq,
        )  # fmt: skip
        incoming.go(IncomingInput.ANSWER)
        if kind is OfferKind.ACK:
            self._answer_in_ack(session, sdp, cseq, now)
            return
        if tx is None or request is None or tx.terminated:  # pragma: no cover - the table's invariant
            raise InternalError("a waiting offer without its request")
        try:
            if kind is OfferKind.REINVITE and isinstance(tx, ServerInviteTransaction):
                self._answer_reinvite(
                    session, tx, request, decision=decision, sdp=sdp, now=now, headers=headers
                )
            else:
                self._answer_update(
                    session, tx, request, decision=decision, sdp=sdp, now=now, headers=headers
                )
        except RequestRefusedError as exc:
            session.log.info("the application's answer does not answer the offer", error=str(exc))
            session.ctx.endpoint.respond(tx, session.response(request, exc.status_code), now)

    def _answer_in_ack(
        self, session: InviteSession, sdp: SessionDescription | None, cseq: int, now: float
    ) -> None:
        neg = session.negotiator
        try:
            body: bytes | None = neg.create_answer(sdp).serialize()
        except SdpNegotiationError:
            body = None
        if session.uac is not None:
            session.uac.send_ack(session, cseq, body)
        if body is not None:
            session.media_updated()
        session.process(SessionInput.SEND_ACK, now)
        if body is None:
            session.fail(488, now, text="No usable answer to the offer")
            return
        if session.bye_pending:
            session.send_bye(now)

    def reject_offer(self, session: InviteSession, code: int, reason: str | None, now: float) -> None:
        """The application refuses the waiting offer: the re-INVITE or UPDATE gets ``code`` and
        the session goes on with the media agreed before; an offer in a 2xx cannot be refused
        but by ending the session (ACK, then BYE with ``code`` as the Reason)."""
        if not 300 <= code < 700:
            raise LocalProtocolError(f"an offer is refused with 3xx-6xx, not {code}")
        if not self.incoming.waiting:
            self.incoming.go(IncomingInput.REJECT)  # raises: nothing waits
        session.process(SessionInput.ANSWER_OFFER, now)
        self._refuse(session, code, reason, now, IncomingInput.REJECT)

    def withdraw(self, session: InviteSession, now: float) -> None:
        """The peer CANCELled its waiting re-INVITE, or ended the session: 487 to it."""
        if self.incoming.waiting:
            self._refuse(session, 487, None, now, IncomingInput.WITHDRAW)

    def _refuse(
        self, session: InviteSession, code: int, reason: str | None, now: float, event: IncomingInput
    ) -> None:
        incoming = self.incoming
        kind, tx, request, cseq = incoming.kind, incoming.tx, incoming.request, incoming.cseq
        incoming.go(event)
        neg = session.negotiator
        if neg.state is NegotiatorState.REMOTE_OFFER:
            neg.cancel_offer()
        if event is not IncomingInput.REJECT:
            session.ctx.emit(OfferWithdrawn(session, code))
        if kind is OfferKind.ACK:
            if session.uac is not None:
                session.uac.send_ack(session, cseq, None)
            session.process(SessionInput.SEND_ACK, now)
            session.fail(code if event is IncomingInput.REJECT else 488, now, text="No answer to the offer")
            return
        if tx is not None and request is not None and not tx.terminated:
            session.ctx.endpoint.respond(tx, session.response(request, code, reason), now)

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


def _restarted(session: InviteSession, decision: TimerDecision | None, now: float) -> None:
    """A refresh went through: the session timer runs again (SessionRefreshed), or stops."""
    timer = session.timer
    if timer is None:
        return
    timer.restart(decision, now)
    if decision is not None:
        session.ctx.emit(SessionRefreshed(session, decision.interval))


def _wants_sdp(timer: SessionTimer, tx: Transaction[Any], code: int) -> bool:
    """A 4xx to a refresh without SDP, not about the dialog (408/481) or a retry (491/422):
    the peer may want a body in it; worth one more try with SDP."""
    return not tx.request.body and not timer.with_sdp and 400 <= code < 500 and code not in _NOT_ABOUT_SDP


_NOT_ABOUT_SDP = frozenset({408, 481, 491, 422})


def _unusable_offer(exc: ParseError | SdpNegotiationError) -> RequestRefusedError:
    """488 for an offer we cannot accept, 400 for one we cannot read."""
    return RequestRefusedError(str(exc), 488 if isinstance(exc, SdpNegotiationError) else 400)


__all__ = [
    "INCOMING_TRANSITIONS",
    "IncomingInput",
    "IncomingOffer",
    "IncomingState",
    "OfferExchange",
    "Retry",
]
