"""The session layer's 100rel flows (RFC 3262): reliable 1xx out and PRACKs in as the callee,
PRACKs out as the caller. The rules and counters are in :mod:`invsess.inv.prack`."""

from __future__ import annotations

from invsess.dialog import Dialog
from invsess.inv.core import SDP, LayerCore
from invsess.inv.session import InviteSession, InviteState
from invsess.sdp import SdpNegotiationError, parse_sdp
from invsess.sip import (
    ParseError,
    Request,
    Response,
    make_response,
)
from invsess.transaction import (
    ServerInviteTransaction,
    ServerTransaction,
    Transaction,
)


class Rel100Flows(LayerCore):
    """Reliable provisional responses, mixed into :class:`~invsess.inv.layer.SessionLayer`."""

    def _send_reliable_1xx(
        self, session: InviteSession, tx: ServerInviteTransaction, code: int, reason: str | None, now: float
    ) -> None:
        sender = session.rel_sender
        assert sender is not None
        body = b""
        offer = False
        neg = session.negotiator
        if not session.early_sdp:
            # RFC 3262 §5: the first reliable 1xx completes the INVITE's offer (or makes one).
            try:
                if neg.state.name == "DONE" and neg.active_local is not None:
                    body = neg.active_local.serialize()
                elif neg.state.name == "NULL":
                    body, offer = neg.create_offer().serialize(), True
            except SdpNegotiationError as exc:
                session.log.warning("no SDP for the reliable provisional", error=str(exc))
            session.early_sdp = bool(body)
        rseq = sender.take_rseq()
        headers: list[tuple[str, object]] = [("Require", "100rel"), ("RSeq", str(rseq))]
        response = self._uas_response(session, tx.request, code, reason, body=body, extra=headers)
        self.endpoint.respond(tx, response, now)
        t1 = self.endpoint.config.timers.t1
        sender.sent(
            rseq,
            response.serialize(),
            with_sdp=bool(body),
            offer=offer,
            now=now,
            t1=t1,
            retransmit=not tx.reliable,
        )
        self._set_state(session, "send 1xx")
        if body and neg.state.name == "DONE":
            self._media_updated(session)

    def _on_prack(self, session: InviteSession, tx: ServerTransaction, request: Request, now: float) -> None:
        """RFC 3262 §3: the PRACK of our outstanding reliable 1xx (else 481), with the answer to
        an offer that 1xx carried, or a new offer of its own (§5); then what waited behind it."""
        sender = session.rel_sender
        invite = session.invite_tx
        cseq = invite.request.cseq if invite is not None else None
        if sender is None or cseq is None or not sender.matches(request.rack, cseq.number):
            self.endpoint.respond(tx, make_response(request, 481), now)
            return
        neg = session.negotiator
        offered = sender.outstanding is not None and sender.outstanding.offer
        if request.body and not offered and neg.state.name != "DONE":
            # An offer in the PRACK while another exchange is in progress (our UPDATE, say).
            self.endpoint.respond(tx, make_response(request, 491), now)
            return
        body = b""
        try:
            if offered and neg.state.name == "LOCAL_OFFER":  # our 1xx offered (the INVITE had no SDP)
                if request.body:
                    neg.receive_answer(parse_sdp(request.body))
                    neg.negotiate()
                    self._media_updated(session)
                else:  # no answer: the offer is void, the 2xx offers again
                    neg.cancel_offer()
                    session.early_sdp = False
            elif request.body:
                neg.receive_offer(parse_sdp(request.body))
                body = neg.create_answer().serialize()
                self._media_updated(session)
        except (ParseError, SdpNegotiationError) as exc:
            if offered and neg.state.name == "LOCAL_OFFER":
                neg.cancel_offer()
                session.early_sdp = False
            code = 488 if isinstance(exc, SdpNegotiationError) else 400
            self.endpoint.respond(tx, make_response(request, code), now)
        else:
            self.endpoint.respond(
                tx, make_response(request, 200, body=body, content_type=SDP if body else None), now
            )
        sender.acknowledged()
        self._drain_reliable(session, now)

    def _drain_reliable(self, session: InviteSession, now: float) -> None:
        """Send what waited behind a PRACKed 1xx, in order, until something must wait again."""
        sender, tx = session.rel_sender, session.invite_tx
        while (
            sender is not None
            and sender.queue
            and isinstance(tx, ServerInviteTransaction)
            and session.state in (InviteState.INCOMING, InviteState.EARLY)
            and not sender.must_wait(sender.queue[0][0])
        ):
            code, reason = sender.queue.popleft()
            if code < 200:
                self._send_reliable_1xx(session, tx, code, reason, now)
            else:
                self._send_final_2xx(session, tx, code, reason, now)

    def _on_reliable_1xx(
        self, session: InviteSession, leg: Dialog, tx: Transaction, response: Response, now: float
    ) -> None:
        """RFC 3262 §4: PRACK the next reliable 1xx of each early dialog, once; the first one
        of the session's own dialog completes (or starts) the INVITE's offer/answer."""
        receiver, rseq = session.rel_receiver, response.rseq
        if receiver is None or rseq is None or not receiver.accept(leg.remote_tag, rseq):
            return  # a retransmission (its PRACK is already on its way) or out of order
        body = b""
        neg = session.negotiator
        if leg is session.dialog and response.body and not session.early_sdp:
            try:
                if neg.state.name == "LOCAL_OFFER":
                    neg.receive_answer(parse_sdp(response.body))
                    neg.negotiate()
                    self._media_updated(session)
                elif neg.state.name == "NULL":  # we sent no offer: the 1xx offers, the PRACK answers
                    neg.receive_offer(parse_sdp(response.body))
                    body = neg.create_answer().serialize()
                    self._media_updated(session)
                session.early_sdp = True
            except (ParseError, SdpNegotiationError) as exc:
                session.log.warning("unusable SDP in a reliable 1xx", error=str(exc))
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        host, port, transport = self._next_hop(session, leg)
        prack = leg.create_request(
            "PRACK",
            via=self.endpoint.via(transport),
            headers=[("RAck", f"{rseq} {cseq} INVITE")],
            body=body,
            content_type=SDP if body else None,
        )
        self._track(self.endpoint.send_request(prack, (host, port), transport, now), session, "prack", leg)

    def _reliable_timers(self, session: InviteSession, now: float) -> None:
        """Retransmit the reliable 1xx awaiting its PRACK; after 64*T1, 504 (RFC 3262 §3)."""
        sender, tx = session.rel_sender, session.invite_tx
        if sender is None or not isinstance(tx, ServerInviteTransaction):
            return
        due = sender.due(now)
        if due is True:
            sender.clear()
            if not tx.terminated and session.state in (InviteState.INCOMING, InviteState.EARLY):
                self.endpoint.respond(tx, self._uas_response(session, tx.request, 504, "No PRACK"), now)
            self._disconnect(session, 504, now)
        elif due is not None:
            self.endpoint.send_stateless_bytes(due, tx.response_destination, tx.transport)
