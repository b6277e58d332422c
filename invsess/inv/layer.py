"""The session layer: INVITE sessions and their dialogs on top of an :class:`Endpoint`. Sans-IO.

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
a 408 or 481 to an in-dialog request; ACK + BYE for the 2xx of a second fork.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from invsess.dialog import Dialog, DialogState
from invsess.endpoint import CancelReceived, Endpoint
from invsess.endpoint.routing import is_ip
from invsess.inv.prack import Rel100, ReliableReceiver, ReliableSender, is_reliable, peer_offers_100rel
from invsess.inv.session import InviteSession, InviteState
from invsess.inv.timer import (
    DEFER_INTERVAL,
    SessionTimer,
    TimerDecision,
    TimerRejection,
    TimerSettings,
    response_headers,
    supports_timer,
    uac_decide,
    uas_decide,
)
from invsess.memory import LeakReport, PoolExhaustedError
from invsess.sdp import SdpNegotiationError, SdpNegotiator, SessionDescription, parse_sdp
from invsess.sip import (
    CSeq,
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
    ClientInviteTransaction,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    ServerTransaction,
    Transaction,
    TransactionTerminated,
    TransactionTimedOut,
)

SDP = "application/sdp"
Address = tuple[str, int]


@attrs.frozen
class IncomingCall:
    """A new INVITE: answer it with :meth:`SessionLayer.answer` (its request lives while it rings)."""

    session: InviteSession
    request: Request


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
    """An offer/answer exchange completed; ``local`` and ``remote`` are the SDPs agreed then."""

    session: InviteSession
    local: SessionDescription
    remote: SessionDescription


SessionEvent = IncomingCall | SessionStateChanged | MediaUpdated | ForkedCall | RequestReceived


class SessionLayer:
    """INVITE sessions over one endpoint; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        local_sdp: SessionDescription,
        *,
        user: str = "invsess",
        timer: TimerSettings | None = None,
        rel100: Rel100 | str = Rel100.OFF,
        keep_forks: bool = False,
    ) -> None:
        """``timer`` turns on session timers (RFC 4028) with those settings; ``rel100`` is
        "off", "supported" (reliable 1xx when the peer supports them too) or "required";
        ``keep_forks`` keeps the 2xx of a second fork as a call of its own (a
        :class:`ForkedCall` event) instead of ending it with BYE.

        The endpoint must be configured to match, or requests using these extensions would be
        turned away before reaching us: ``supported`` must list "timer" and "100rel", ``allow``
        must list PRACK. A mismatch raises ValueError naming the missing setting.
        """
        self.endpoint = endpoint
        self.local_sdp = local_sdp
        self.user = user
        self.timer_settings = timer
        self.rel100 = Rel100(rel100)
        self.keep_forks = keep_forks
        cfg = endpoint.config
        missing = [
            *(["supported: 'timer'"] if timer is not None and "timer" not in cfg.supported else []),
            *(
                ["supported: '100rel'"]
                if self.rel100 is not Rel100.OFF and "100rel" not in cfg.supported
                else []
            ),
            *(["allow: 'PRACK'"] if self.rel100 is not Rel100.OFF and "PRACK" not in cfg.allow else []),
        ]
        if missing:
            raise ValueError(f"the endpoint's EndpointConfig lacks {', '.join(missing)}")
        #: The extensions this layer implements (and says so in Supported).
        self.supported: tuple[str, ...] = (
            *(("100rel",) if self.rel100 is not Rel100.OFF else ()),
            *(("timer",) if timer is not None else ()),
        )
        self._random = random.Random(endpoint.config.seed)  # noqa: S311 - back-off jitter, seeded for replay
        self._tx: dict[Transaction, tuple[Any, str, Dialog]] = {}  # owner None: session released
        self._by_dialog: dict[tuple[str, str, str], InviteSession] = {}
        self._sessions: list[InviteSession] = []
        self._events: deque[tuple[SessionEvent, Callable[[], None] | None]] = deque()
        self._after_event: Callable[[], None] | None = None

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
            for t in (self.endpoint.next_deadline(), *(s.next_deadline() for s in self._sessions))
            if t is not None
        ]
        return min(due) if due else None

    def handle_timers(self, now: float) -> None:
        """Fire transaction timers, then session timers."""
        self.endpoint.handle_timers(now)
        self._process(now)
        for session in list(self._sessions):
            self._session_timers(session, now)
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
        local = from_uri or f"sip:{self.user}@{_host(host)}:{port}"
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

    def _invite_headers(self, session: InviteSession) -> list[tuple[str, object]]:
        """Allow, Supported, Require and the session timer of an initial INVITE."""
        timer = self.timer_settings
        required = [
            *(["100rel"] if self.rel100 is Rel100.REQUIRED else []),
            *(["timer"] if timer is not None and timer.required else []),
        ]
        headers: list[tuple[str, object]] = [("Allow", self.endpoint.config.allow_header)]
        if self.supported:
            headers.append(("Supported", ", ".join(self.supported)))
        if required:
            headers.append(("Require", ", ".join(required)))
        if session.timer is not None:
            headers += session.timer.request_headers()
        return headers

    def _send_invite(
        self, session: InviteSession, request: Request, destination: Address, transport: str, now: float
    ) -> None:
        tx = self.endpoint.send_request(request, destination, transport, now)
        if not isinstance(tx, ClientInviteTransaction):  # pragma: no cover - an INVITE makes one
            raise TypeError("send_request of an INVITE must give an INVITE client transaction")
        session.invite_tx = tx
        self._track(tx, session, "invite", session.dialog)

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
            self._disconnect(session, code)
        self._process(now)

    def _send_reliable_1xx(
        self, session: InviteSession, tx: ServerInviteTransaction, code: int, reason: str | None, now: float
    ) -> None:
        sender = session.rel_sender
        assert sender is not None
        body = b""
        neg = session.negotiator
        if not session.early_sdp:
            # RFC 3262 §5: the first reliable 1xx completes the INVITE's offer (or makes one).
            try:
                if neg.state.name == "DONE" and neg.active_local is not None:
                    body = neg.active_local.serialize()
                elif neg.state.name == "NULL":
                    body = neg.create_offer().serialize()
            except SdpNegotiationError as exc:
                session.log.warning("no SDP for the reliable provisional", error=str(exc))
            session.early_sdp = bool(body)
        rseq = sender.take_rseq()
        headers: list[tuple[str, object]] = [("Require", "100rel"), ("RSeq", str(rseq))]
        response = self._uas_response(session, tx.request, code, reason, body=body, extra=headers)
        self.endpoint.respond(tx, response, now)
        t1 = self.endpoint.config.timers.t1
        sender.sent(
            rseq, response.serialize(), with_sdp=bool(body), now=now, t1=t1, retransmit=not tx.reliable
        )
        self._set_state(session, "send 1xx")
        if body and neg.state.name == "DONE":
            self._media_updated(session)

    def _send_final_2xx(
        self, session: InviteSession, tx: ServerInviteTransaction, code: int, reason: str | None, now: float
    ) -> None:
        # The answer already went in a reliable 1xx: the 2xx carries no SDP (RFC 3261 §13.2.1).
        body = b"" if session.early_sdp else self._uas_sdp(session, now)
        if body is None:
            return  # the offer could not be answered: 488 went out, the session is over
        decision = session.pending_timer
        headers = response_headers(decision, tx.request) if decision is not None else []
        response = self._uas_response(session, tx.request, code, reason, body=body, extra=headers)
        self._send_uas_2xx(session, tx, response, now)
        if session.rel_sender is not None:
            session.rel_sender.clear()
        if decision is not None and session.timer is not None:
            session.timer.start(decision, now)
            session.pending_timer = None
        session.dialog.confirm()
        self._set_state(session, "send 2xx")

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

    def _send_in_dialog_offer(
        self, session: InviteSession, method: str, now: float, *, with_offer: bool
    ) -> None:
        """A re-INVITE or UPDATE (our session timer in it: every one of them is a refresh)."""
        session.retry_at = None
        body = session.negotiator.create_offer().serialize() if with_offer else b""
        headers: list[tuple[str, object]] = []
        if session.timer is not None:
            headers += [("Supported", "timer"), *session.timer.request_headers()]
        host, port, transport = self._next_hop(session)
        request = session.dialog.create_request(
            method, via=self.endpoint.via(transport), headers=headers, body=body,
            content_type=SDP if body else None,
        )  # fmt: skip
        tx = self.endpoint.send_request(request, (host, port), transport, now)
        session.pending_reinvite = tx
        self._track(tx, session, "reinvite" if method == "INVITE" else "update", session.dialog)

    def _refresh(self, session: InviteSession, now: float) -> None:
        """RFC 4028 §7.4/§9: refresh by UPDATE without SDP when the peer allows UPDATE, else by
        re-INVITE with our current SDP; later if another exchange is under way (its success
        refreshes the session anyway)."""
        timer = session.timer
        if timer is None:
            return
        timer.refresh_at = None
        busy = (
            session.pending_reinvite is not None
            or session.uas_2xx is not None
            or session.retry_at is not None
            or session.negotiator.state.name != "DONE"
        )
        if busy or session.state is not InviteState.CONFIRMED or session.bye_sent:
            timer.refresh_at = now + DEFER_INTERVAL
            return
        if "UPDATE" in session.peer_allow:
            self._send_in_dialog_offer(session, "UPDATE", now, with_offer=False)
        else:
            self._send_in_dialog_offer(session, "INVITE", now, with_offer=True)
        timer.refresh_tx = session.pending_reinvite
        session.log.info("session refresh", method="UPDATE" if "UPDATE" in session.peer_allow else "INVITE")

    # -- inside: event dispatch --------------------------------------------------------------

    def _process(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self._handle(event, now)

    def _handle(self, event: Any, now: float) -> None:
        if isinstance(event, RequestReceived):
            try:
                self._on_request(event.transaction, event.request, now)
            except ParseError as exc:  # a header the endpoint's checks did not parse, read here
                self._refuse(event.transaction, event.request, exc, now)
        elif isinstance(event, ResponseReceived):
            owner = self._tx.get(event.transaction)
            if owner is not None and owner[0] is not None:
                try:
                    self._on_response(owner[0], owner[1], event.transaction, event.response, now)
                except ParseError as exc:  # RFC 3261 §18.1.2: a malformed response is discarded
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
                self._disconnect(session, 408)
            dialog.dec_tsx()

    def _refuse(self, tx: ServerTransaction, request: Request, exc: ParseError, now: float) -> None:
        """400 to a request whose header we could not read (unless it was answered already)."""
        if request.method == "ACK" or tx.terminated:
            return
        with contextlib.suppress(LocalProtocolError):  # a final response went out already
            self.endpoint.respond(tx, make_response(request, exc.status_code or 400, str(exc)[:80]), now)

    def _track(self, tx: Transaction, owner: Any, purpose: str, dialog: Dialog) -> None:
        self._tx[tx] = (owner, purpose, dialog)
        dialog.inc_tsx()

    # -- requests ----------------------------------------------------------------------------

    def _on_request(self, tx: ServerTransaction, request: Request, now: float) -> None:
        to_tag = request.to.tag if request.to else None
        if to_tag is None:
            if request.method == "INVITE" and isinstance(tx, ServerInviteTransaction):
                self._new_incoming(tx, request, now)
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
            self._disconnect(session, 200)
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
            self._disconnect(session, code)
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
                self._disconnect(session, 488)
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

    def _timer_for_request(
        self, session: InviteSession, tx: ServerTransaction, request: Request, now: float
    ) -> TimerDecision | bool | None:
        """A session refresh (re-INVITE or UPDATE) from the peer: the timer it agrees, None when
        no timer runs here, or False when it was refused with 422 (already sent)."""
        if session.timer is None or self.timer_settings is None:
            return None
        decision = uas_decide(request, self.timer_settings, min_se=session.timer.min_se, initial=False)
        if isinstance(decision, TimerRejection):
            response = make_response(request, decision.status_code, headers=list(decision.headers))
            self.endpoint.respond(tx, response, now)
            return False
        return decision

    def _on_reinvite(
        self, session: InviteSession, tx: ServerInviteTransaction, request: Request, now: float
    ) -> None:
        if session.pending_reinvite is not None or session.uas_2xx is not None:
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

    @staticmethod
    def _granted(timer: SessionTimer, response: Response) -> TimerDecision | None:
        """The timer a 2xx to our INVITE, re-INVITE or UPDATE leaves running.

        RFC 4028 §7.2: none when the 2xx has no Session-Expires, except that when we refresh
        for a peer that never said it supports timers (§9), its 2xx cannot be expected to
        carry one: our timer goes on as it was.
        """
        try:
            decision = uac_decide(response, min_se=timer.min_se)
            peer_does_timers = supports_timer(response)
        except ParseError:
            decision, peer_does_timers = None, True  # unreadable: it grants nothing
        if decision is None and timer.active and timer.we_refresh and not peer_does_timers:
            return TimerDecision(timer.interval, True, timer.min_se)
        return decision

    def _restart_timer(
        self, session: InviteSession, decision: TimerDecision | bool | None, now: float
    ) -> None:
        """A refresh succeeded: run the clock again (or stop it when no timer was agreed)."""
        if session.timer is None:
            return
        if isinstance(decision, TimerDecision):
            session.timer.start(decision, now)
        else:
            session.timer.stop()

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
        body = b""
        try:
            if neg.state.name == "LOCAL_OFFER":  # our 1xx offered (the INVITE had no SDP)
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
            if neg.state.name == "LOCAL_OFFER":
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
            self._disconnect(session, 487)

    # -- responses ---------------------------------------------------------------------------

    def _on_response(self, owner: Any, purpose: str, tx: Transaction, response: Response, now: float) -> None:
        code = response.status_code
        if purpose == "invite":
            self._on_invite_response(owner, tx, response, now)
        elif purpose in ("reinvite", "update"):
            self._on_reinvite_response(owner, tx, response, now)
        elif purpose == "bye" and code >= 200:
            if owner.state is not InviteState.DISCONNECTED:
                self._disconnect(owner, owner.cause or 200)
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
            if leg is not None and session.rel_receiver is not None and _reliable(response):
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
                self._disconnect(session, code)
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

    def _early_leg(self, session: InviteSession, tx: Transaction, response: Response) -> Dialog | None:
        """The early dialog a 1xx with a To tag belongs to: the session's own (established by
        the first such 1xx), or, for another fork, a dialog of its own (RFC 3261 §13.2.2.4)."""
        dialog = session.dialog
        tag = response.to.tag if response.to else None
        if not tag or not response.contact:
            return None
        if dialog.state is DialogState.NULL:
            dialog.establish(response)
            self._register(session)
            return dialog
        if tag == dialog.remote_tag:
            return dialog
        if dialog.state is not DialogState.EARLY:
            return None
        fork = session.forks.get(tag)
        if fork is None:
            try:
                fork = Dialog.create_uac(self.endpoint.factory, tx.request, response, transport=tx.transport)
            except (RemoteProtocolError, LocalProtocolError) as exc:
                session.log.info("forked 1xx ignored", error=str(exc))
                return None
            fork.add_ref("early fork")
            session.forks[tag] = fork
            session.log.info("early dialog of another fork", remote_tag=tag)
        return fork

    def _release_forks(self, session: InviteSession) -> None:
        """The session's other early dialogs end; their PRACKs in flight keep them until done."""
        forks = list(session.forks.values())
        session.forks.clear()
        for fork in forks:
            fork.terminate()
            fork.dec_ref("early fork")

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

    def _retry_422(self, session: InviteSession, tx: Transaction, response: Response, now: float) -> bool:
        """RFC 4028 §7.3: send the INVITE again with the interval the 422 asks for; False when
        there is nothing to retry with (no timer, a dialog already early, no higher Min-SE)."""
        timer, dialog, old = session.timer, session.dialog, tx.request
        if (
            timer is None
            or dialog.state is not DialogState.NULL
            or session.cancel_pending
            or session.cancel_sent
            or not timer.raise_interval(response)
            or old.from_ is None
            or old.to is None
            or old.call_id is None
        ):
            return False
        dialog.local_cseq += 1
        request = make_request(
            "INVITE",
            old.uri,
            via=self.endpoint.via(tx.transport),
            from_=old.from_,
            to=old.to,
            call_id=old.call_id,
            cseq=dialog.local_cseq,
            contact=dialog.local_contact,
            headers=[*(("Route", str(r)) for r in old.route), *self._invite_headers(session)],
            body=old.body,
            content_type=SDP if old.body else None,
        )
        session.log.info("422: INVITE again", session_expires=timer.interval)
        self._send_invite(session, request, tx.peer, tx.transport, now)
        return True

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
            self._disconnect(session, code)

    def _ack_reinvite(self, session: InviteSession, tx: Transaction) -> None:
        host, port, transport = self._next_hop(session)
        cseq = tx.request.cseq.number if tx.request.cseq else session.dialog.local_cseq
        ack = session.dialog.create_request("ACK", via=self.endpoint.via(transport), cseq=cseq)
        self.endpoint.send_stateless(ack, (host, port), transport)

    def _on_timeout(self, owner: Any, purpose: str, now: float) -> None:
        if purpose == "invite" and owner.state is not InviteState.DISCONNECTED:
            self._disconnect(owner, 408)
        elif purpose in ("reinvite", "update"):
            owner.pending_reinvite = None
            if owner.negotiator.state.name == "LOCAL_OFFER":
                owner.negotiator.cancel_offer()
            owner.cause = 408
            self._send_bye(owner, now)
            self._disconnect(owner, 408)
        elif purpose == "bye" and owner.state is not InviteState.DISCONNECTED:
            self._disconnect(owner, owner.cause or 408)

    # -- sending -----------------------------------------------------------------------------

    def _send_ack(self, session: InviteSession, tx: Transaction, body: bytes | None) -> None:
        host, port, transport = self._next_hop(session)
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        ack = session.dialog.create_request(
            "ACK",
            via=self.endpoint.via(transport),
            cseq=cseq,
            body=body or b"",
            content_type=SDP if body else None,
        )
        session.ack_wire = ack.serialize()
        self.endpoint.send_stateless_bytes(session.ack_wire, (host, port), transport)

    def _send_bye(self, session: InviteSession, now: float) -> None:
        if (
            session.bye_sent
            or session.state is InviteState.DISCONNECTED
            or session.dialog.state is DialogState.TERMINATED
        ):
            return
        host, port, transport = self._next_hop(session)
        reason = f'SIP;cause={session.cause};text="{session.cause_text}"'
        headers = [("Reason", reason)] if session.cause else []
        bye = session.dialog.create_request("BYE", via=self.endpoint.via(transport), headers=headers)
        tx = self.endpoint.send_request(bye, (host, port), transport, now)
        self._track(tx, session, "bye", session.dialog)
        session.bye_pending = False
        session.bye_sent = True

    def _send_cancel(self, session: InviteSession, now: float) -> None:
        tx = session.invite_tx
        if session.cancel_sent or not isinstance(tx, ClientInviteTransaction) or tx.terminated:
            return
        session.cancel_sent = True
        invite = tx.request
        if (
            invite.from_ is None
            or invite.to is None
            or invite.call_id is None
            or invite.cseq is None
            or invite.top_via is None
        ):
            return
        cancel = make_request(
            "CANCEL",
            invite.uri,
            via=invite.top_via,
            from_=invite.from_,
            to=invite.to,
            call_id=invite.call_id,
            cseq=CSeq(invite.cseq.number, "CANCEL"),
            headers=[("Route", r) for r in invite.route],
        )
        ctx = self.endpoint.send_request(cancel, tx.peer, tx.transport, now)
        self._track(ctx, session, "cancel", session.dialog)

    def _send_uas_2xx(
        self, session: InviteSession, tx: ServerInviteTransaction, response: Response, now: float
    ) -> None:
        self.endpoint.respond(tx, response, now)
        timers = self.endpoint.config.timers
        session.uas_2xx = response.serialize()
        if not tx.reliable:
            session.uas_2xx_interval = timers.t1
            session.uas_2xx_next = now + timers.t1
        session.uas_ack_deadline = now + 64 * timers.t1

    def _session_timers(self, session: InviteSession, now: float) -> None:
        tx = session.invite_tx
        if session.uas_ack_deadline is not None and now >= session.uas_ack_deadline:
            session.uas_2xx = None
            session.uas_2xx_next = session.uas_ack_deadline = None
            session.cause = 408  # no ACK: RFC 3261 §13.3.1.4 says end the session with BYE
            self._send_bye(session, now)
            self._disconnect(session, 408)
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

    def _timer_due(self, session: InviteSession, now: float) -> None:
        """The session timer: refresh when it is time, BYE when the session expired."""
        timer = session.timer
        if timer is None or session.state is InviteState.DISCONNECTED:
            return
        if timer.expire_at is not None and now >= timer.expire_at:
            # RFC 4028 §10: no refresh came (or ours never succeeded): BYE, and the session ends.
            timer.stop()
            session.cause, session.cause_text = 408, "Session timer expired"
            self._send_bye(session, now)
            self._disconnect(session, 408)
        elif timer.refresh_at is not None and now >= timer.refresh_at:
            self._refresh(session, now)

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
            self._disconnect(session, 504)
        elif due is not None:
            self.endpoint.send_stateless_bytes(due, tx.response_destination, tx.transport)

    # -- helpers -----------------------------------------------------------------------------

    def _new_session(self, dialog: Dialog, role: str) -> InviteSession:
        negotiator = SdpNegotiator(self.local_sdp, self.endpoint.factory, name=f"sdp-{dialog.call_id}")
        session = dialog.pool.alloc(InviteSession, dialog, negotiator, role)
        dialog.add_ref("inv-session")
        session.add_ref("inv-session")
        self._sessions.append(session)
        if dialog.remote_tag or role == "UAS":
            self._register(session)
        return session

    def _register(self, session: InviteSession) -> None:
        self._by_dialog[session.dialog.id] = session
        self.endpoint.register_dialog(session.dialog.id)

    def _unregister(self, session: InviteSession) -> None:
        dialog_id = session.dialog.id
        if self._by_dialog.get(dialog_id) is session:
            del self._by_dialog[dialog_id]
        self.endpoint.unregister_dialog(dialog_id)

    def _media_updated(self, session: InviteSession) -> None:
        neg = session.negotiator
        if neg.active_local is not None and neg.active_remote is not None:
            self._events.append((MediaUpdated(session, neg.active_local, neg.active_remote), None))

    def _set_state(self, session: InviteSession, event: str) -> None:
        old, new = session.go(event)
        self._events.append((SessionStateChanged(session, old, new, session.cause), None))

    def _disconnect(self, session: InviteSession, cause: int) -> None:
        if session.state is InviteState.DISCONNECTED:
            return
        session.cause = session.cause or cause
        event = "BYE" if session.can("BYE") and cause == 200 else "timeout" if cause == 408 else "failure"
        if not session.can(event):
            event = "failure" if session.can("failure") else "BYE"
        old, new = session.go(event)
        session.uas_2xx = None
        session.uas_2xx_next = session.uas_ack_deadline = session.retry_at = None
        # Nothing of the session's may fire after this: the timer and the reliable 1xx stop
        # now, not at the release (PJSIP #2007 logged through a freed session on expiry).
        if session.timer is not None:
            session.timer.stop()
        if session.rel_sender is not None:
            session.rel_sender.clear()
        self._release_forks(session)
        session.dialog.terminate()
        self._events.append(
            (SessionStateChanged(session, old, new, session.cause), lambda: self._release(session))
        )

    def _release(self, session: InviteSession) -> None:
        """After the DISCONNECTED event was seen: the session's references, then the dialog's."""
        dialog = session.dialog
        # Transactions still running (a BYE, a CANCEL) keep the dialog, never the session:
        # their late responses must not reach memory that is about to be freed (PJSIP #2007).
        for tx, (owner, purpose, tx_dialog) in list(self._tx.items()):
            if owner is session:
                self._tx[tx] = (None, purpose, tx_dialog)
        self._sessions.remove(session)
        self._unregister(session)
        session.dec_ref("inv-session")  # session first ...
        dialog.dec_ref("inv-session")  # ... dialog second: the order res_pjsip_session.c keeps

    def _fork_2xx(self, session: InviteSession, response: Response, now: float) -> None:
        """A 2xx from another fork (RFC 3261 §13.2.2.4): ACK it, in a dialog of its own; then
        keep it as a session of its own (``keep_forks``: a :class:`ForkedCall` event) or end it
        with BYE. Retransmissions of that 2xx get the same ACK again, nothing more."""
        tx, tag = session.invite_tx, response.to.tag if response.to else None
        if tx is None or not tag:
            return
        done = session.fork_acks.get(tag)
        if done is not None:  # a retransmitted 2xx: our ACK was lost
            self.endpoint.send_stateless_bytes(*done)
            return
        fork = Dialog.create_uac(self.endpoint.factory, tx.request, response, transport=tx.transport)
        if self.keep_forks:
            forked = self._forked_session(session, fork, response, now)
            if forked.ack_wire is not None:
                session.fork_acks[tag] = (forked.ack_wire, *self._fork_hop(fork, tx))
            return
        fork.add_ref("fork")
        (host, port), transport = self._fork_hop(fork, tx)
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        ack = fork.create_request("ACK", via=self.endpoint.via(transport), cseq=cseq).serialize()
        self.endpoint.send_stateless_bytes(ack, (host, port), transport)
        session.fork_acks[tag] = (ack, (host, port), transport)
        bye = fork.create_request("BYE", via=self.endpoint.via(transport))
        btx = self.endpoint.send_request(bye, (host, port), transport, now)
        self._track(btx, fork, "fork-bye", fork)
        fork.dec_ref("fork")  # the BYE transaction keeps the fork's dialog until it ends

    @staticmethod
    def _fork_hop(fork: Dialog, tx: Transaction) -> tuple[Address, str]:
        host, port, transport = fork.next_hop()
        return ((host, port) if is_ip(host) else tx.peer), transport

    def _forked_session(
        self, original: InviteSession, fork: Dialog, response: Response, now: float
    ) -> InviteSession:
        """A session of its own for an answering fork: our offer (or its) negotiated afresh."""
        tx = original.invite_tx
        assert tx is not None  # only called for a response to it
        forked = self._new_session(fork, "UAC")
        forked.invite_tx = tx
        self._events.append((ForkedCall(forked, original), None))
        self._set_state(forked, "send INVITE")
        neg, answer = forked.negotiator, None
        try:
            if tx.request.body and response.body:
                neg.create_offer()  # the offer the INVITE carried (the same local SDP)
                neg.receive_answer(parse_sdp(response.body))
                neg.negotiate()
            elif response.body:
                neg.receive_offer(parse_sdp(response.body))
                answer = neg.create_answer().serialize()
            elif tx.request.body:
                forked.cause = 488  # a 2xx without the answer to our offer
        except (ParseError, SdpNegotiationError):
            if neg.state.name == "LOCAL_OFFER":
                neg.cancel_offer()
            forked.cause = 488
        self._set_state(forked, "receive 2xx")
        self._send_ack(forked, tx, answer)
        self._set_state(forked, "send ACK")
        self._media_updated(forked)
        if self.timer_settings is not None:
            forked.timer = SessionTimer(self.timer_settings)
            self._restart_timer(forked, self._granted(forked.timer, response), now)
        if forked.cause == 488:
            self._send_bye(forked, now)
        return forked

    def _next_hop(self, session: InviteSession, dialog: Dialog | None = None) -> tuple[str, int, str]:
        host, port, transport = (dialog or session.dialog).next_hop()
        if not is_ip(host):  # nothing here resolves names: go where the INVITE went
            tx = session.invite_tx
            if tx is not None:
                host, port = tx.peer if isinstance(tx, ClientInviteTransaction) else tx.response_destination
        return host, port, transport

    def _contact(self, transport: str) -> NameAddress:
        host, port = self.endpoint.listeners.get(transport.lower(), ("127.0.0.1", 5060))
        param = "" if transport.lower() == "udp" else f";transport={transport.lower()}"
        return NameAddress(parse_uri(f"sip:{self.user}@{_host(host)}:{port}{param}"))

    def _uas_response(
        self,
        session: InviteSession,
        request: Request,
        code: int,
        reason: str | None,
        *,
        body: bytes = b"",
        extra: list[tuple[str, object]] | None = None,
    ) -> Response:
        headers: list[tuple[str, object]] = []
        if 100 < code < 300:
            headers += [
                ("Contact", session.dialog.local_contact),
                ("Allow", self.endpoint.config.allow_header),
            ]
            if self.supported:
                headers.append(("Supported", ", ".join(self.supported)))
        headers += extra or []
        return make_response(
            request, code, reason, to_tag=session.dialog.local_tag, headers=headers, body=body,
            content_type=SDP if body else None, copy_record_route=100 < code < 300,
        )  # fmt: skip

    def _uas_sdp(self, session: InviteSession, now: float) -> bytes | None:
        neg = session.negotiator
        tx = session.invite_tx
        try:
            if neg.state.name == "DONE" and neg.active_local is not None:
                return neg.active_local.serialize()  # the answer made when the INVITE arrived
            return neg.create_offer().serialize()  # late offer: the answer comes in the ACK
        except SdpNegotiationError:
            if isinstance(tx, ServerInviteTransaction):
                self.endpoint.respond(
                    tx, make_response(tx.request, 488, to_tag=session.dialog.local_tag), now
                )
            self._disconnect(session, 488)
            return None

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


def _reliable(response: Response) -> bool:
    """is_reliable, with an unreadable Require or RSeq meaning "not reliable" (nothing to PRACK)."""
    try:
        return is_reliable(response)
    except ParseError:
        return False


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


__all__ = [
    "ForkedCall",
    "IncomingCall",
    "MediaUpdated",
    "SessionEvent",
    "SessionLayer",
    "SessionStateChanged",
]
