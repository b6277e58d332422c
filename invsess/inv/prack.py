"""Reliable provisional responses (RFC 3262, PJSIP ``sip_100rel.c``): the two parts of a session.

:class:`ReliableSender` is the callee's part: RSeq numbering, one reliable 1xx outstanding at a
time (the next ones, and a 2xx that must not overtake an unacknowledged offer or answer, wait
in a queue), retransmission at T1, 2*T1, 4*T1 ... and the 64*T1 give-up (504); the PRACKs that
acknowledge them, with the offer or answer they may carry. :class:`ReliableReceiver` is the
caller's part: which reliable 1xx to PRACK, per early dialog (To tag), so that forked reliable
1xx are each acknowledged in their own dialog, and the first one's SDP negotiated.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

import attrs

from invsess.inv.answer import Answer
from invsess.inv.answers import take_answer
from invsess.inv.context import Purpose
from invsess.inv.settings import Rel100
from invsess.inv.states import InviteState, RequestRefusedError, SessionInput
from invsess.sdp import NegotiatorState, SdpNegotiationError, parse_sdp
from invsess.sip import ParseError, RAck, Request, Response, make_response
from invsess.transaction import ServerInviteTransaction

if TYPE_CHECKING:
    from invsess.dialog import Dialog
    from invsess.inv.session import InviteSession
    from invsess.transaction import Transaction

SDP = "application/sdp"

#: RFC 3262 §3: the first RSeq is chosen at random between 1 and 2**31 - 1.
MAX_INITIAL_RSEQ = 2**31 - 1


def peer_offers_100rel(message: Request | Response) -> bool:
    """True if the message's sender supports (or requires) reliable provisional responses."""
    return "100rel" in message.supported or "100rel" in message.require


def is_reliable(response: Response) -> bool:
    """True for a 1xx (other than 100) sent reliably: Require: 100rel and an RSeq. An unreadable
    Require or RSeq means "not reliable": there is nothing we could PRACK."""
    try:
        return 100 < response.status_code < 200 and "100rel" in response.require and response.rseq is not None
    except ParseError:
        return False


@attrs.define(slots=True)
class Outstanding:
    """The reliable 1xx waiting for its PRACK."""

    rseq: int
    wire: bytes
    with_sdp: bool
    offer: bool  # the SDP it carried was our offer: its PRACK brings the answer
    next_at: float | None
    interval: float
    give_up_at: float


@attrs.define(slots=True)
class ReliableSender:
    """The UAS side of one INVITE: RSeq, the outstanding 1xx and what waits behind it."""

    next_rseq: int
    outstanding: Outstanding | None = None
    queue: deque[Answer] = attrs.field(factory=deque)  # the application's answers, to send in order

    @classmethod
    def create(cls, rng: random.Random) -> ReliableSender:
        """A sender with a random first RSeq (small enough to leave room to count up)."""
        return cls(rng.randint(1, MAX_INITIAL_RSEQ // 2))

    def take_rseq(self) -> int:
        """The RSeq for the next reliable 1xx."""
        rseq = self.next_rseq
        self.next_rseq += 1
        return rseq

    def sent(
        self,
        rseq: int,
        wire: bytes,
        *,
        with_sdp: bool,
        offer: bool = False,
        now: float,
        t1: float,
        retransmit: bool,
    ) -> None:
        """A reliable 1xx went out: retransmit it (over UDP) until PRACK, give up after 64*T1."""
        self.outstanding = Outstanding(
            rseq, wire, with_sdp, offer, now + t1 if retransmit else None, t1, now + 64 * t1
        )

    def must_wait(self, status_code: int) -> bool:
        """True if a response must queue behind the outstanding 1xx (RFC 3262 §3).

        Another reliable 1xx always waits; a 2xx waits only if the outstanding 1xx carried an
        offer or answer (the PRACK may carry the other half). Unreliable 1xx never wait.
        """
        if self.outstanding is None:
            return False
        if status_code >= 200:
            return self.outstanding.with_sdp
        return True

    def matches(self, rack: RAck | None, invite_cseq: int) -> bool:
        """True if a PRACK's RAck acknowledges the outstanding 1xx."""
        out = self.outstanding
        return (
            out is not None
            and rack is not None
            and rack.rseq == out.rseq
            and rack.cseq == invite_cseq
            and rack.method == "INVITE"
        )

    def acknowledged(self) -> None:
        """The PRACK came: stop retransmitting (the queue is the layer's to drain)."""
        self.outstanding = None

    def next_deadline(self) -> float | None:
        """The next retransmission or the give-up time."""
        out = self.outstanding
        if out is None:
            return None
        return out.give_up_at if out.next_at is None else min(out.next_at, out.give_up_at)

    def due(self, now: float) -> bytes | Literal[True] | None:
        """What is due at ``now``: the bytes to retransmit, True to give up, or None."""
        out = self.outstanding
        if out is None:
            return None
        if now >= out.give_up_at:
            return True
        if out.next_at is not None and now >= out.next_at:
            out.interval *= 2  # RFC 3262 §3: doubling, with no T2 cap
            out.next_at = now + out.interval
            return out.wire
        return None

    def clear(self) -> None:
        """The INVITE is over: nothing outstanding, nothing queued."""
        self.outstanding = None
        self.queue.clear()

    # -- flows -------------------------------------------------------------------------------

    def send_1xx(
        self, session: InviteSession, tx: ServerInviteTransaction, answer: Answer, now: float
    ) -> None:
        """A reliable 1xx; the first completes the INVITE's offer (or makes one) (RFC 3262 §5),
        with the application's SDP when it gave one."""
        body = b""
        offer = False
        neg = session.negotiator
        if not session.early_sdp:
            try:
                agreed = neg.active_local_bytes
                if neg.state is NegotiatorState.REMOTE_OFFER:
                    body = neg.create_answer(answer.sdp).serialize()
                elif neg.state is NegotiatorState.DONE and agreed is not None:
                    body = agreed
                elif neg.state is NegotiatorState.NULL:
                    body, offer = neg.create_offer(sdp=answer.sdp).serialize(), True
            except SdpNegotiationError as exc:
                session.log.warning("no SDP for the reliable provisional", error=str(exc))
            session.early_sdp = bool(body)
        rseq = self.take_rseq()
        headers: list[tuple[str, object]] = [("Require", "100rel"), ("RSeq", str(rseq)), *answer.headers]
        response = session.response(tx.request, answer.code, answer.reason, body=body, extra=headers)
        session.ctx.endpoint.respond(tx, response, now)
        self.sent(
            rseq,
            tx.last_response or response.serialize(),  # as sent: not written out again
            with_sdp=bool(body),
            offer=offer,
            now=now,
            t1=tx.timers.t1,
            retransmit=not tx.reliable,
        )
        session.process(SessionInput.SEND_1XX, now)
        if body and neg.state is NegotiatorState.DONE:
            session.media_updated()

    def on_prack(self, session: InviteSession, tx: Any, request: Request, now: float) -> None:
        """RFC 3262 §3: the PRACK of our outstanding reliable 1xx (else 481), with the answer to
        an offer that 1xx carried, or a new offer of its own (§5); then what waited behind it."""
        invite = session.invite_tx
        cseq = invite.request.cseq if invite is not None else None
        if cseq is None or not self.matches(request.rack, cseq.number):
            raise RequestRefusedError("no reliable provisional response of ours matches", 481)
        neg = session.negotiator
        offered = self.outstanding is not None and self.outstanding.offer
        if request.body and not offered and neg.state is not NegotiatorState.DONE:
            # An offer in the PRACK while another exchange is in progress (our UPDATE, say).
            raise RequestRefusedError("an offer/answer exchange is in progress", 491)
        body = b""
        endpoint = session.ctx.endpoint
        try:
            if offered and neg.state is NegotiatorState.LOCAL_OFFER:  # our 1xx offered
                if request.body:
                    neg.receive_answer(parse_sdp(request.body))
                    neg.negotiate()
                    session.media_updated()
                else:  # no answer: the offer is void, the 2xx offers again
                    neg.cancel_offer()
                    session.early_sdp = False
            elif request.body:
                neg.receive_offer(parse_sdp(request.body))
                body = neg.create_answer().serialize()
                session.media_updated()
        except (ParseError, SdpNegotiationError) as exc:
            if offered and neg.state is NegotiatorState.LOCAL_OFFER:
                neg.cancel_offer()
                session.early_sdp = False
            code = 488 if isinstance(exc, SdpNegotiationError) else 400
            endpoint.respond(tx, make_response(request, code), now)
        else:
            response = make_response(request, 200, body=body, content_type=SDP if body else None)
            endpoint.respond(tx, response, now)
        self.acknowledged()
        self.drain(session, now)

    def drain(self, session: InviteSession, now: float) -> None:
        """Send what waited behind a PRACKed 1xx, in order, until something must wait again."""
        tx = session.invite_tx
        while (
            self.queue
            and isinstance(tx, ServerInviteTransaction)
            and session.uas is not None
            and session.state in (InviteState.INCOMING, InviteState.EARLY)
            and not self.must_wait(self.queue[0].code)
        ):
            answer = self.queue.popleft()
            if answer.code < 200:
                self.send_1xx(session, tx, answer, now)
            else:
                session.uas.send_2xx(session, tx, answer, now)

    def handle_timer(self, session: InviteSession, now: float) -> None:
        """Retransmit the reliable 1xx awaiting its PRACK; after 64*T1, 504 (RFC 3262 §3)."""
        due = self.due(now)
        if due is None:
            return
        tx = session.invite_tx
        if due is True:
            self.clear()
            ringing = session.state in (InviteState.INCOMING, InviteState.EARLY)
            if isinstance(tx, ServerInviteTransaction) and ringing and session.uas is not None:
                session.uas.reject(session, tx, 504, "No PRACK", now)
            else:
                session.end(SessionInput.REJECT, 504, now)
        elif isinstance(tx, ServerInviteTransaction):  # nothing to send with once it is gone
            session.ctx.endpoint.send_stateless_bytes(due, tx.response_destination, tx.transport)
            session.ctx.endpoint.retransmissions.inc("reliable_1xx_sent")


@attrs.define(slots=True)
class ReliableReceiver:
    """The UAC side: the last RSeq acknowledged in each early dialog (keyed by To tag)."""

    last_rseq: dict[str, int] = attrs.field(factory=dict)

    def accept(self, to_tag: str, rseq: int) -> bool:
        """True if this reliable 1xx is the next one of its dialog (and is now counted).

        RFC 3262 §4: the first one sets the sequence; later ones must be exactly one higher.
        Retransmissions (lower) and gaps (higher) are neither PRACKed nor processed.
        """
        last = self.last_rseq.get(to_tag)
        if last is not None and rseq != last + 1:
            return False
        self.last_rseq[to_tag] = rseq
        return True

    def on_1xx(
        self, session: InviteSession, leg: Dialog, tx: Transaction[Any], response: Response, now: float
    ) -> None:
        """RFC 3262 §4: PRACK the next reliable 1xx of each early dialog, once; the first one
        of the session's own dialog completes (or starts) the INVITE's offer/answer."""
        rseq = response.rseq
        if rseq is None or not self.accept(leg.remote_tag, rseq):
            return  # a retransmission (its PRACK is already on its way) or out of order
        body = b""
        neg = session.negotiator
        if leg is session.dialog and response.body and not session.early_sdp:
            session.early_sdp = True  # the first SDP is the answer (or offer): later ones are not
            if neg.state is NegotiatorState.LOCAL_OFFER:
                if take_answer(session, response.body):
                    session.media_updated()
                else:  # unusable: the caller cancels the INVITE (UacInvite, cause 488)
                    session.cause, session.cause_text = 488, "Not Acceptable Here"
            elif neg.state is NegotiatorState.NULL:  # we sent no offer: the 1xx offers
                try:
                    neg.receive_offer(parse_sdp(response.body))
                    body = neg.create_answer().serialize()
                    session.media_updated()
                except (ParseError, SdpNegotiationError) as exc:
                    session.log.warning("unusable SDP offer in a reliable 1xx", error=str(exc))
                    session.cause, session.cause_text = 488, "Not Acceptable Here"
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        host, port, transport = session.next_hop(leg)
        endpoint = session.ctx.endpoint
        prack = leg.create_request(
            "PRACK",
            via=endpoint.via(transport),
            headers=[("RAck", f"{rseq} {cseq} INVITE")],
            body=body,
            content_type=SDP if body else None,
        )
        session.ctx.track(
            endpoint.send_request(prack, (host, port), transport, now), session, Purpose.PRACK, leg
        )


__all__ = [
    "MAX_INITIAL_RSEQ",
    "Outstanding",
    "Rel100",
    "ReliableReceiver",
    "ReliableSender",
    "is_reliable",
    "peer_offers_100rel",
]
