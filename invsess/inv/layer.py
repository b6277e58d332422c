"""The session layer: INVITE sessions and their dialogs on top of an :class:`Endpoint`. Sans-IO.

:class:`SessionLayer` is this module's INVITE flows (the application's calls, requests and
responses, the session's own timers) on top of :class:`~invsess.inv.core.LayerCore` (state and
shared helpers), with the extensions mixed in: :mod:`~invsess.inv.flows_timer` (RFC 4028),
:mod:`~invsess.inv.flows_100rel` (RFC 3262) and :mod:`~invsess.inv.flows_fork` (forking).

It is driven exactly like the endpoint it wraps (``receive``, ``datagrams_to_send``,
``next_deadline``, ``handle_timers``), so the asyncio driver and the simulated network run it
unchanged. The application calls :meth:`invite`, :meth:`answer`, :meth:`hangup` and
:meth:`reinvite`, and pulls :class:`IncomingCall`, :class:`SessionStateChanged` and
:class:`MediaUpdated` events with :meth:`next_event` (plus ``RequestReceived`` for requests
outside any dialog other than INVITE, which the application answers with ``endpoint.respond``).

What it does by itself: the ACK for a 2xx (and again for each retransmitted 2xx); the UAS's 2xx
retransmission until the ACK, and BYE when the ACK never comes (64*T1); a CANCEL held until a
provisional response arrives (RFC 3261 §9.1); 487 to a cancelled INVITE; 200 to a BYE; 491 to
an INVITE that overlaps ours and the randomised retry after a 491 of our own (§14.1); BYE after
a 408 or 481 to an in-dialog request; ACK + BYE for the 2xx of a second fork (or a call of its
own); with the extensions on, session refreshes and expiry, reliable 1xx and their PRACKs.
"""

from __future__ import annotations

import contextlib
from typing import Any

from invsess.dialog import Dialog, DialogState
from invsess.endpoint import CancelReceived
from invsess.inv.core import SDP, Address, host_in_uri
from invsess.inv.events import ForkedCall, IncomingCall, MediaUpdated, SessionEvent, SessionStateChanged
from invsess.inv.flows_100rel import Rel100Flows
from invsess.inv.flows_fork import ForkFlows
from invsess.inv.prack import Rel100, ReliableReceiver, ReliableSender, is_reliable, peer_offers_100rel
from invsess.inv.session import InviteSession, InviteState
from invsess.inv.timer import (
    SessionTimer,
    TimerDecision,
    TimerRejection,
    response_headers,
    uas_decide,
)
from invsess.memory import LeakReport, PoolExhaustedError
from invsess.sdp import SdpNegotiationError, parse_sdp
from invsess.sip import (
    LocalProtocolError,
    NameAddress,
    ParseError,
    RemoteProtocolError,
    Request,
    Response,
    make_request,
    make_response,
    parse_uri,
)
from invsess.transaction import (
    AckReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    ServerTransaction,
    Transaction,
    TransactionTerminated,
    TransactionTimedOut,
)


class SessionLayer(Rel100Flows, ForkFlows):
    """INVITE sessions over one endpoint; see the module docstring (and ``LayerCore.__init__``
    for the constructor's options)."""

    # -- the node interface (what drivers call) ----------------------------------------------

    def add_listener(self, transport: str, address: Address) -> None:
        """Forwarded to the endpoint."""
        self.endpoint.add_listener(transport, address)

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """Feed bytes, then run the session logic on what the endpoint made of them."""
        self.endpoint.receive(data, source, transport, now)
        self._process(now)

    def datagrams_to_send(self) -> list[Outgoing]:
        """What to send (sessions send through the endpoint)."""
        return self.endpoint.datagrams_to_send()

    def next_deadline(self) -> float | None:
        """The earliest of the endpoint's and the sessions' timers."""
        due = [
            t
            for t in (
                self.endpoint.next_deadline(),
                *(s.next_deadline() for s in self._sessions),
                min((deadline for deadline, _ in self._abandoned), default=None),
            )
            if t is not None
        ]
        return min(due) if due else None

    def handle_timers(self, now: float) -> None:
        """Fire transaction timers, then session timers."""
        self.endpoint.handle_timers(now)
        self._process(now)
        for session in list(self._sessions):
            self._session_timers(session, now)
        self._give_up_invites(now)
        self._process(now)

    def next_event(self) -> SessionEvent | None:
        """The next session event. A DISCONNECTED session's own references go at the next call."""
        if self._after_event is not None:
            after, self._after_event = self._after_event, None
            after()
        if not self._events:
            return None
        event, after_event = self._events.popleft()
        self._after_event = after_event
        return event

    def close(self, now: float = 0.0) -> LeakReport:
        """End every transaction through the layer (so dialogs see them go), run the releases
        due, then close the endpoint; returns its leak report. Sessions still up stay leaked:
        hang them up first."""
        self.endpoint.terminate_all()
        self._process(now)
        while self.next_event() is not None:  # the last call runs the releases still due
            pass
        return self.endpoint.close()

    @property
    def sessions(self) -> list[InviteSession]:
        """Sessions not yet disconnected and released."""
        return list(self._sessions)

    # -- the application's calls -------------------------------------------------------------

    def invite(
        self,
        target: str,
        *,
        destination: Address,
        now: float,
        transport: str = "udp",
        from_uri: str | None = None,
        with_offer: bool = True,
    ) -> InviteSession:
        """Place a call: an INVITE with our offer (or none, for a late offer)."""
        ep = self.endpoint
        host, port = ep.listeners.get(transport.lower(), ("127.0.0.1", 5060))
        local = from_uri or f"sip:{self.user}@{host_in_uri(host)}:{port}"
        request = make_request(
            "INVITE",
            target,
            via=ep.via(transport),
            from_=NameAddress(parse_uri(local), None, (("tag", ep.new_tag()),)),
            to=NameAddress(parse_uri(target)),
            call_id=f"{ep.new_tag()}{ep.new_tag()}@{host}",
            cseq=1,
            contact=self._contact(transport),
        )
        dialog = Dialog.create_uac_initial(ep.factory, request, transport=transport)
        session = self._new_session(dialog, "UAC")
        if self.rel100 is not Rel100.OFF:
            session.rel_receiver = ReliableReceiver()
        if self.timer_settings is not None:
            session.timer = SessionTimer(self.timer_settings)
        for name, value in self._invite_headers(session):
            request.headers.add(name, value)
        if with_offer:
            offer = session.negotiator.create_offer()
            request.body = offer.serialize()
            request.headers.set("Content-Type", SDP)
        self._send_invite(session, request, destination, transport, now)
        self._set_state(session, "send INVITE")
        return session

    def answer(self, session: InviteSession, code: int, now: float, *, reason: str | None = None) -> None:
        """Answer an incoming call: 1xx (ringing), 2xx (with our SDP), or a failure.

        With 100rel in use, a 1xx goes reliably (RSeq, retransmitted until its PRACK); the
        first one carries our answer (or, for an INVITE without an offer, our offer). A 1xx or
        a 2xx answered while an earlier reliable 1xx awaits its PRACK goes out after it
        (RFC 3262 §3): the state changes when it does.
        """
        tx = session.invite_tx
        if session.role != "UAS" or not isinstance(tx, ServerInviteTransaction) or tx.terminated:
            raise LocalProtocolError("answer() is for a ringing incoming call")
        if session.state not in (InviteState.INCOMING, InviteState.EARLY):
            raise LocalProtocolError(f"cannot answer in state {session.state.name}")
        if not 100 <= code < 700:
            raise LocalProtocolError(f"{code} is not a status code")
        sender = session.rel_sender
        if code < 200 and (sender is None or code == 100):
            self.endpoint.respond(tx, self._uas_response(session, tx.request, code, reason), now)
            if code > 100:
                self._set_state(session, "send 1xx")
        elif code < 300 and sender is not None and (sender.must_wait(code) or sender.queue):
            sender.queue.append((code, reason))  # goes out when the outstanding 1xx is PRACKed
        elif code < 200:
            self._send_reliable_1xx(session, tx, code, reason, now)
        elif code < 300:
            self._send_final_2xx(session, tx, code, reason, now)
        else:
            self.endpoint.respond(tx, self._uas_response(session, tx.request, code, reason), now)
            self._disconnect(session, code, now)
        self._process(now)

    def hangup(self, session: InviteSession, now: float, *, code: int = 603) -> None:
        """End the call the way its state calls for: CANCEL, reject, or BYE."""
        state = session.state
        if state is InviteState.DISCONNECTED:
            return
        if session.role == "UAC" and state in (InviteState.CALLING, InviteState.EARLY):
            if session.provisional_seen:
                self._send_cancel(session, now)
            else:
                session.cancel_pending = True  # RFC 3261 §9.1: wait for a provisional response
        elif session.role == "UAS" and state in (InviteState.INCOMING, InviteState.EARLY):
            self.answer(session, code, now)
        elif session.role == "UAS" and state is InviteState.CONNECTING:
            session.bye_pending = True  # a UAS's BYE waits for the ACK
        else:
            self._send_bye(session, now)
        self._process(now)

    def reinvite(self, session: InviteSession, now: float, *, direction: str | None = None) -> None:
        """Send a re-INVITE with a new offer (``direction``: "sendonly" holds, "sendrecv" resumes)."""
        if session.state is not InviteState.CONFIRMED or session.bye_sent:
            raise LocalProtocolError(f"re-INVITE needs a confirmed session, not {session.state.name}")
        if session.pending_reinvite is not None or session.uas_2xx is not None:
            raise LocalProtocolError("an INVITE transaction is already in progress in this dialog")
        if direction is not None:
            session.negotiator.set_direction(direction)
        self._send_in_dialog_offer(session, "INVITE", now, with_offer=True)

    def update(
        self, session: InviteSession, now: float, *, direction: str | None = None, with_offer: bool = True
    ) -> None:
        """Send an UPDATE (RFC 3311): no INVITE transaction, no ACK. With a new offer, or, with
        ``with_offer=False``, none: a session refresh that changes no media."""
        if session.state not in (InviteState.CONFIRMED, InviteState.EARLY) or session.bye_sent:
            raise LocalProtocolError(f"UPDATE needs an early or confirmed session, not {session.state.name}")
        if session.pending_reinvite is not None or session.negotiator.state.name != "DONE":
            raise LocalProtocolError("an offer/answer exchange is already in progress in this dialog")
        if direction is not None:
            session.negotiator.set_direction(direction)
        self._send_in_dialog_offer(session, "UPDATE", now, with_offer=with_offer)

    # -- inside: event dispatch --------------------------------------------------------------

    def _process(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self._handle(event, now)

    def _handle(self, event: Any, now: float) -> None:
        if isinstance(event, RequestReceived):
            try:
                self._on_request(event.transaction, event.request, now)
            except RemoteProtocolError as exc:  # e.g. a header the endpoint's checks did not parse
                self._refuse(event.transaction, event.request, exc, now)
        elif isinstance(event, ResponseReceived):
            owner = self._tx.get(event.transaction)
            if owner is not None and owner[0] is not None:
                try:
                    self._on_response(owner[0], owner[1], event.transaction, event.response, now)
                except RemoteProtocolError as exc:  # §18.1.2: a malformed response is discarded
                    owner[0].log.warning("malformed response discarded", error=str(exc))
        elif isinstance(event, AckReceived):
            self._on_ack(event.request, now)
        elif isinstance(event, CancelReceived):
            self._on_cancel(event.invite, now)
        elif isinstance(event, TransactionTimedOut):
            owner = self._tx.get(event.transaction)
            if owner is not None and owner[0] is not None:
                self._on_timeout(owner[0], owner[1], now)
        elif isinstance(event, TransactionTerminated):
            owner = self._tx.pop(event.transaction, None)
            if owner is None:
                return
            session, purpose, dialog = owner
            if (
                purpose == "invite"
                and session is not None
                and event.transaction is session.invite_tx
                and session.state in (InviteState.CALLING, InviteState.EARLY)
                and session.role == "UAC"
            ):
                # The INVITE ended without a final response we could use (a malformed one was
                # discarded): the session must not wait for ever.
                session.log.warning("INVITE transaction ended without a usable final response")
                self._disconnect(session, 408, now)
            dialog.dec_tsx()

    def _refuse(self, tx: ServerTransaction, request: Request, exc: RemoteProtocolError, now: float) -> None:
        """400 to a request whose header we could not read (unless it was answered already)."""
        if request.method == "ACK" or tx.terminated:
            return
        with contextlib.suppress(LocalProtocolError):  # a final response went out already
            self.endpoint.respond(tx, make_response(request, exc.status_code or 400, str(exc)[:80]), now)

    # -- requests ----------------------------------------------------------------------------

    def _on_request(self, tx: ServerTransaction, request: Request, now: float) -> None:
        to_tag = request.to.tag if request.to else None
        if to_tag is None:
            if request.method == "INVITE" and isinstance(tx, ServerInviteTransaction):
                self._new_incoming(tx, request, now)
            elif request.method in ("BYE", "PRACK", "UPDATE"):  # only meaningful in a dialog
                self.endpoint.respond(tx, make_response(request, 481), now)
            else:  # MESSAGE, OPTIONS when not auto-answered, ...: the application answers
                self._events.append((RequestReceived(tx, request, tx.peer), None))
            return
        from_tag = request.from_.tag if request.from_ else ""
        session = self._by_dialog.get((request.call_id or "", to_tag, from_tag or ""))
        if session is None or session.state is InviteState.DISCONNECTED:
            # A stray BYE for a session that just ended still gets its 200.
            code = 200 if request.method == "BYE" else 481
            self.endpoint.respond(tx, make_response(request, code), now)
            return
        try:
            session.dialog.receive_request(request)
        except RemoteProtocolError as exc:  # e.g. a CSeq that went backwards: 500, the session goes on
            self.endpoint.respond(tx, make_response(request, exc.status_code, exc.reason), now)
            return
        self._track(tx, session, request.method.lower(), session.dialog)
        if request.method == "BYE":
            self.endpoint.respond(tx, make_response(request, 200), now)
            invite = session.invite_tx
            if session.state in (InviteState.INCOMING, InviteState.EARLY) and isinstance(
                invite, ServerInviteTransaction
            ):
                # RFC 3261 §15.1.2: a BYE in an early dialog ends the INVITE too.
                self.endpoint.respond(invite, self._uas_response(session, invite.request, 487, None), now)
            self._disconnect(session, 200, now)
        elif request.method == "INVITE" and isinstance(tx, ServerInviteTransaction):
            self._on_reinvite(session, tx, request, now)
        elif request.method == "UPDATE":
            self._on_update(session, tx, request, now)
        elif request.method == "PRACK":
            self._on_prack(session, tx, request, now)
        else:
            self.endpoint.respond(tx, make_response(request, 501), now)

    def _new_incoming(self, tx: ServerInviteTransaction, request: Request, now: float) -> None:
        ep = self.endpoint
        try:
            dialog = Dialog.create_uas(
                ep.factory,
                request,
                local_tag=ep.new_tag(),
                local_contact=self._contact(tx.transport),
                transport=tx.transport,
            )
        except RemoteProtocolError as exc:  # no Contact, ...
            ep.respond(tx, make_response(request, exc.status_code, exc.reason), now)
            return
        except PoolExhaustedError:
            ep.respond(tx, make_response(request, 503, headers=[("Retry-After", "5")]), now)
            return
        session = self._new_session(dialog, "UAS")
        session.invite_tx = tx
        self._track(tx, session, "invite", dialog)
        session.peer_allow = tuple(m.upper() for m in request.allow)
        refusal = self._uas_extensions(session, request)
        if refusal is not None:
            code, headers = refusal
            ep.respond(tx, make_response(request, code, to_tag=dialog.local_tag, headers=headers), now)
            self._set_state(session, "receive INVITE")
            self._disconnect(session, code, now)
            return
        if request.body:
            try:
                # Answered now, as PJSIP's verify_request does: an unacceptable offer gets 488
                # before the application is bothered; the answer waits for the 183/2xx.
                session.negotiator.receive_offer(parse_sdp(request.body))
                session.negotiator.create_answer()
            except (ParseError, SdpNegotiationError) as exc:
                ep.respond(tx, make_response(request, 488 if isinstance(exc, SdpNegotiationError) else 400,
                                             to_tag=dialog.local_tag), now)  # fmt: skip
                self._set_state(session, "receive INVITE")
                self._disconnect(session, 488, now)
                return
        self._set_state(session, "receive INVITE")
        self._events.append((IncomingCall(session, request), None))

    def _uas_extensions(
        self, session: InviteSession, request: Request
    ) -> tuple[int, list[tuple[str, object]]] | None:
        """100rel and session timers for a new INVITE: what we use, or the 420/421/422 refusing it."""
        unsupported = [tag for tag in request.require if tag not in self.supported]
        if unsupported:  # the endpoint lists it, this layer does not do it (RFC 3261 §8.2.2.3)
            return 420, [("Unsupported", ", ".join(unsupported))]
        if self.rel100 is not Rel100.OFF:
            if peer_offers_100rel(request):
                session.rel_sender = ReliableSender.create(self._random)
            elif self.rel100 is Rel100.REQUIRED:
                return 421, [("Require", "100rel")]
        if self.timer_settings is not None:
            session.timer = SessionTimer(self.timer_settings)
            decision = uas_decide(request, self.timer_settings, min_se=session.timer.min_se, initial=True)
            if isinstance(decision, TimerRejection):
                return decision.status_code, list(decision.headers)
            session.pending_timer = decision
        return None

    def _on_reinvite(
        self, session: InviteSession, tx: ServerInviteTransaction, request: Request, now: float
    ) -> None:
        if session.state is not InviteState.CONFIRMED:
            # An INVITE in an early dialog, or before our 2xx was acknowledged (§14.2): 500.
            retry = [("Retry-After", str(self._random.randint(0, 10)))]
            self.endpoint.respond(tx, make_response(request, 500, headers=retry), now)
            return
        if (
            session.pending_reinvite is not None
            or session.uas_2xx is not None
            or session.negotiator.state.name not in ("NULL", "DONE")
        ):
            self.endpoint.respond(tx, make_response(request, 491, to_tag=session.dialog.local_tag), now)
            return
        decision = self._timer_for_request(session, tx, request, now)
        if decision is False:
            return
        if request.allow:
            session.peer_allow = tuple(m.upper() for m in request.allow)
        neg = session.negotiator
        try:
            if request.body:
                neg.receive_offer(parse_sdp(request.body))
                body = neg.create_answer().serialize()
            else:
                body = neg.create_offer().serialize()  # a late offer: the answer comes in the ACK
        except (ParseError, SdpNegotiationError) as exc:
            code = 488 if isinstance(exc, SdpNegotiationError) else 400
            self.endpoint.respond(tx, make_response(request, code, to_tag=session.dialog.local_tag), now)
            return
        timer_headers = response_headers(decision, request) if isinstance(decision, TimerDecision) else []
        response = self._uas_response(session, request, 200, None, body=body, extra=timer_headers)
        session.invite_tx = tx
        self._send_uas_2xx(session, tx, response, now)
        self._restart_timer(session, decision, now)
        if request.body:
            self._media_updated(session)

    def _on_update(self, session: InviteSession, tx: ServerTransaction, request: Request, now: float) -> None:
        """RFC 3311: an offer outside the INVITE's own exchanges, or a mere refresh without SDP."""
        neg = session.negotiator
        if request.body and (
            session.pending_reinvite is not None
            or neg.state.name in ("LOCAL_OFFER", "REMOTE_OFFER", "WAIT_NEGO")
        ):
            self.endpoint.respond(tx, make_response(request, 491), now)  # §5.2: an offer is pending
            return
        decision = self._timer_for_request(session, tx, request, now)
        if decision is False:
            return
        answer = b""
        if request.body:
            try:
                neg.receive_offer(parse_sdp(request.body))
                answer = neg.create_answer().serialize()
            except (ParseError, SdpNegotiationError) as exc:
                code = 488 if isinstance(exc, SdpNegotiationError) else 400
                self.endpoint.respond(tx, make_response(request, code), now)
                return
        headers: list[tuple[str, object]] = [("Contact", session.dialog.local_contact)]
        if isinstance(decision, TimerDecision):
            headers += response_headers(decision, request)
        response = make_response(
            request, 200, headers=headers, body=answer, content_type=SDP if answer else None
        )
        self.endpoint.respond(tx, response, now)
        if session.state in (InviteState.CONNECTING, InviteState.CONFIRMED):
            self._restart_timer(session, decision, now)  # an UPDATE in an early dialog refreshes nothing
        if answer:
            self._media_updated(session)

    def _on_ack(self, ack: Request, now: float) -> None:
        to_tag = ack.to.tag if ack.to else ""
        from_tag = ack.from_.tag if ack.from_ else ""
        session = self._by_dialog.get((ack.call_id or "", to_tag or "", from_tag or ""))
        if session is None or session.uas_2xx is None:
            return  # a retransmitted ACK, or one for a session already gone
        session.uas_2xx = None
        session.uas_2xx_next = session.uas_ack_deadline = None
        if ack.body and session.negotiator.state.name == "LOCAL_OFFER":
            try:
                session.negotiator.receive_answer(parse_sdp(ack.body))
                session.negotiator.negotiate()
                self._media_updated(session)
            except (ParseError, SdpNegotiationError):
                session.cause = 488
                self._send_bye(session, now)
                return
        if session.state is InviteState.CONNECTING:
            self._set_state(session, "receive ACK")
            if not session.early_sdp:  # else agreed at the reliable 1xx already
                self._media_updated(session)
        if session.bye_pending:
            self._send_bye(session, now)

    def _on_cancel(self, invite_tx: ServerInviteTransaction, now: float) -> None:
        owner = self._tx.get(invite_tx)
        if owner is None or owner[0] is None:
            return
        session: InviteSession = owner[0]
        if session.state in (InviteState.INCOMING, InviteState.EARLY):
            response = make_response(invite_tx.request, 487, to_tag=session.dialog.local_tag)
            self.endpoint.respond(invite_tx, response, now)
            self._disconnect(session, 487, now)

    # -- responses ---------------------------------------------------------------------------

    def _on_response(self, owner: Any, purpose: str, tx: Transaction, response: Response, now: float) -> None:
        code = response.status_code
        if purpose == "invite":
            self._on_invite_response(owner, tx, response, now)
        elif purpose in ("reinvite", "update"):
            self._on_reinvite_response(owner, tx, response, now)
        elif purpose == "bye" and code >= 200:
            if owner.state is not InviteState.DISCONNECTED:
                self._disconnect(owner, owner.cause or 200, now)
        elif purpose in ("cancel", "prack") and code >= 300:
            owner.log.info(f"{purpose.upper()} refused", status=code)

    def _on_invite_response(
        self, session: InviteSession, tx: Transaction, response: Response, now: float
    ) -> None:
        if tx is not session.invite_tx:
            return  # the INVITE a 422 made us send again has taken over
        code = response.status_code
        dialog = session.dialog
        to_tag = response.to.tag if response.to else None
        with contextlib.suppress(ParseError):  # an unreadable Allow tells us nothing
            session.peer_allow = tuple(m.upper() for m in response.allow) or session.peer_allow
        if code < 200:
            session.provisional_seen = True
            leg = self._early_leg(session, tx, response) if to_tag and code > 100 else None
            if leg is not None and session.rel_receiver is not None and is_reliable(response):
                self._on_reliable_1xx(session, leg, tx, response, now)
            if code > 100 and session.can("receive 1xx") and to_tag:
                self._set_state(session, "receive 1xx")
            if session.cancel_pending:
                session.cancel_pending = False
                self._send_cancel(session, now)
            return
        if code >= 300:
            if code == 422 and self._retry_422(session, tx, response, now):
                return
            if session.state is not InviteState.DISCONNECTED:
                self._disconnect(session, code, now)
            return
        # 2xx
        if dialog.state is not DialogState.NULL and to_tag and to_tag != dialog.remote_tag:
            if dialog.state is not DialogState.EARLY or session.state not in (
                InviteState.CALLING,
                InviteState.EARLY,
            ):
                self._fork_2xx(session, response, now)
                return
            # Rung at one fork, answered at another: the session goes on with the one that answered.
            self._unregister(session)
            dialog.adopt(response)
            self._register(session)
        if session.state in (InviteState.CONFIRMED, InviteState.DISCONNECTED):
            if session.ack_wire is not None:  # a retransmitted 2xx: our ACK was lost
                host, port, transport = self._next_hop(session)
                self.endpoint.send_stateless_bytes(session.ack_wire, (host, port), transport)
            return
        if dialog.state is DialogState.NULL:
            dialog.establish(response)
            self._register(session)
        else:
            dialog.confirm(response)
        self._release_forks(session)  # RFC 3261 §13.2.2.4: the other early dialogs are over
        answer_body = self._uac_sdp(session, response)
        self._set_state(session, "receive 2xx")
        self._send_ack(session, tx, answer_body)
        self._set_state(session, "send ACK")
        if not session.early_sdp:  # else agreed at the reliable 1xx already
            self._media_updated(session)
        if session.timer is not None:
            self._restart_timer(session, self._granted(session.timer, response), now)
        if session.cause == 488:
            self._send_bye(session, now)
        elif session.cancel_pending or session.bye_pending:
            session.cancel_pending = session.bye_pending = False
            self._send_bye(session, now)

    def _on_reinvite_response(
        self, session: InviteSession, tx: Transaction, response: Response, now: float
    ) -> None:
        code = response.status_code
        if code < 200:
            return
        if session.pending_reinvite is not tx:
            # A retransmitted 2xx (our ACK was lost): acknowledge it again, negotiate nothing.
            if code < 300 and tx.request.method == "INVITE":
                self._ack_reinvite(session, tx)
            return
        session.pending_reinvite = None
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
            elif tx.request.body and neg.state.name == "LOCAL_OFFER":
                neg.cancel_offer()  # a 2xx without the answer: our offer came to nothing
            if tx.request.method == "INVITE":  # an UPDATE's 2xx is not acknowledged
                self._ack_reinvite(session, tx)
            if timer is not None and session.state is InviteState.CONFIRMED:
                self._restart_timer(session, self._granted(timer, response), now)
            if not ok:
                session.cause = 488  # RFC 3264: an unacceptable answer ends the session
                self._send_bye(session, now)
            elif tx.request.body:
                self._media_updated(session)
            return
        if neg.state.name == "LOCAL_OFFER":
            neg.cancel_offer()
        retry_method = "refresh" if refresh else tx.request.method
        if code == 422 and timer is not None and timer.raise_interval(response):
            session.retry_at, session.retry_method = now, retry_method  # RFC 4028 §7.3: at once
        elif code == 491 or (refresh and code == 503):
            # §14.1: the Call-ID's owner waits 2.1-4 s, the other side 0-2 s, then tries again;
            # a 503 says when (Retry-After), or gets the same back-off.
            low, high = (2.1, 4.0) if session.role == "UAC" else (0.0, 2.0)
            delay = self._random.uniform(low, high)
            if code == 503 and response.retry_after is not None:
                delay = float(response.retry_after.delta)
            session.retry_at, session.retry_method = now + delay, retry_method
        elif code in (408, 481) or refresh:
            # The dialog is gone or unreachable, or a session refresh failed (RFC 4028 §10):
            # BYE, and the session ends now.
            session.cause = code
            self._send_bye(session, now)
            self._disconnect(session, code, now)

    def _ack_reinvite(self, session: InviteSession, tx: Transaction) -> None:
        host, port, transport = self._next_hop(session)
        cseq = tx.request.cseq.number if tx.request.cseq else session.dialog.local_cseq
        ack = session.dialog.create_request("ACK", via=self.endpoint.via(transport), cseq=cseq)
        self.endpoint.send_stateless(ack, (host, port), transport)

    def _on_timeout(self, owner: Any, purpose: str, now: float) -> None:
        if purpose == "invite" and owner.state is not InviteState.DISCONNECTED:
            self._disconnect(owner, 408, now)
        elif purpose in ("reinvite", "update"):
            owner.pending_reinvite = None
            if owner.negotiator.state.name == "LOCAL_OFFER":
                owner.negotiator.cancel_offer()
            owner.cause = 408
            self._send_bye(owner, now)
            self._disconnect(owner, 408, now)
        elif purpose == "bye" and owner.state is not InviteState.DISCONNECTED:
            self._disconnect(owner, owner.cause or 408, now)

    # -- sending -----------------------------------------------------------------------------

    def _session_timers(self, session: InviteSession, now: float) -> None:
        tx = session.invite_tx
        if session.uas_ack_deadline is not None and now >= session.uas_ack_deadline:
            session.uas_2xx = None
            session.uas_2xx_next = session.uas_ack_deadline = None
            session.cause = 408  # no ACK: RFC 3261 §13.3.1.4 says end the session with BYE
            self._send_bye(session, now)
            self._disconnect(session, 408, now)
        elif session.uas_2xx_next is not None and now >= session.uas_2xx_next:
            if isinstance(tx, ServerInviteTransaction) and session.uas_2xx is not None:
                self.endpoint.send_stateless_bytes(session.uas_2xx, tx.response_destination, tx.transport)
            session.uas_2xx_interval = min(session.uas_2xx_interval * 2, self.endpoint.config.timers.t2)
            session.uas_2xx_next = now + session.uas_2xx_interval
        self._reliable_timers(session, now)
        if session.retry_at is not None and now >= session.retry_at:
            session.retry_at = None
            if session.state is InviteState.CONFIRMED and session.pending_reinvite is None:
                try:
                    if session.retry_method == "refresh":
                        self._refresh(session, now)
                    elif session.retry_method == "UPDATE":
                        self.update(session, now)
                    else:
                        self.reinvite(session, now)
                except LocalProtocolError as exc:  # the session moved on (BYE sent, peer's offer, ...)
                    session.log.info("retry dropped", reason=str(exc))
        self._timer_due(session, now)

    # -- helpers -----------------------------------------------------------------------------

    def _uac_sdp(self, session: InviteSession, response: Response) -> bytes | None:
        """Negotiate with a 2xx; returns our answer when the 2xx carried the (late) offer."""
        neg = session.negotiator
        if session.early_sdp:
            return None  # done in a reliable 1xx and its PRACK: an SDP in the 2xx repeats it
        if not response.body:
            if neg.state.name == "LOCAL_OFFER":
                neg.cancel_offer()
                session.cause = 488  # an offer went unanswered: nothing to talk over
            return None
        try:
            sdp = parse_sdp(response.body)
            if neg.state.name == "LOCAL_OFFER":
                neg.receive_answer(sdp)
                neg.negotiate()
                return None
            neg.receive_offer(sdp)
            return neg.create_answer().serialize()
        except (ParseError, SdpNegotiationError):
            session.cause = 488
            return None


__all__ = [
    "ForkedCall",
    "IncomingCall",
    "MediaUpdated",
    "SessionEvent",
    "SessionLayer",
    "SessionStateChanged",
]
