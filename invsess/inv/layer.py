"""The session layer: INVITE sessions and their dialogs on top of an :class:`Endpoint`. Sans-IO.

:class:`SessionLayer` routes, and does nothing else: each endpoint event goes to the one session
it concerns — a request by its dialog id, a response, a timeout or a transaction's end by the
transaction (and what that transaction is for, a :class:`~invsess.inv.context.Purpose`), a
timer by the sessions' deadline heap — so the cost of a packet or a timer does not depend on
how many sessions are up. The sessions (:mod:`invsess.inv.session`) and their parts do the rest.

It is a node (:class:`~invsess.node.Node`): driven exactly like the endpoint it wraps, so the
asyncio driver, the simulated and loopback networks and the virtual clock run it unchanged. The
application calls :meth:`invite`, :meth:`answer`, :meth:`hangup`, :meth:`reinvite` and
:meth:`update`, and pulls :class:`IncomingCall`, :class:`SessionStateChanged`,
:class:`MediaUpdated` and :class:`ForkedCall` events with :meth:`next_event` (plus
``RequestReceived`` for the requests the endpoint serves that no session handles — outside
any dialog other than INVITE, or inside one: INFO, MESSAGE ... — which the application answers
with ``endpoint.respond``).

What it does by itself: the ACK for a 2xx (and again for each retransmitted 2xx); the UAS's 2xx
retransmission until the ACK, and BYE when the ACK never comes (64*T1); a CANCEL held until a
provisional response arrives (RFC 3261 §9.1); 487 to a cancelled INVITE; 200 to a BYE; 491 to
an offer that overlaps ours and the randomised retry after a 491 of our own (§14.1); BYE after
a 408 or 481 to an in-dialog request; ACK + BYE for the 2xx of a second fork (or a call of its
own); 481 to requests for dialogs it does not have; with the extensions on, session refreshes
and expiry, reliable 1xx and their PRACKs, and 420/421/422 to INVITEs it cannot accept; with
``credentials``, INVITE, re-INVITE, UPDATE, BYE and PRACK sent again after a 401/407 (RFC 3261
§22). Transaction users attached to it (a registration, a registrar) get what no session takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from invsess.address import Address
from invsess.auth import CredentialStore
from invsess.dialog import DialogRole
from invsess.endpoint import AnyEvent, CancelReceived, Endpoint
from invsess.inv.answer import Answer, header_list
from invsess.inv.context import Purpose, SessionContext
from invsess.inv.events import (
    DialogRequestReceived,
    DialogResponseReceived,
    ForkedCall,
    IncomingCall,
    InviteResponseReceived,
    MediaUpdated,
    OfferKind,
    OfferReceived,
    OfferRefused,
    OfferWithdrawn,
    SessionEvent,
    SessionRefreshed,
    SessionStateChanged,
)
from invsess.inv.session import InviteSession
from invsess.inv.settings import LayerSettings, Rel100
from invsess.inv.states import InviteState, RequestRefusedError
from invsess.inv.timer import TimerSettings
from invsess.inv.uac import place_call
from invsess.inv.uas import accept_invite
from invsess.memory import LeakReport
from invsess.node import TransactionUser
from invsess.sdp import SessionDescription
from invsess.sip import LocalProtocolError, NameAddress, RemoteProtocolError, Request, make_response
from invsess.transaction import (
    TRANSPORT_ERROR,
    AckReceived,
    Event,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    ServerInviteTransaction,
    ServerTransaction,
    Transaction,
    TransactionTerminated,
    TransactionTimedOut,
)

#: Methods meaningful only inside a dialog: outside one, 481.
_IN_DIALOG_ONLY = frozenset({"BYE", "PRACK", "UPDATE"})


class SessionLayer:
    """INVITE sessions over one endpoint; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        local_sdp: SessionDescription | None,
        *,
        user: str = "invsess",
        timer: TimerSettings | None = None,
        rel100: Rel100 | str = Rel100.OFF,
        keep_forks: bool = False,
        lock_codec: bool = False,
        offer_timeout: float = 30.0,
        credentials: CredentialStore | None = None,
    ) -> None:
        """``local_sdp`` is what we offer and answer with (our capabilities); None for a layer
        whose application brings every SDP itself (a B2BUA: each call's, each answer's). ``user``
        the user part of our From and Contact. ``offer_timeout``: see :meth:`defer_offers`.
        ``credentials`` answer the 401/407 our requests get (digest authentication: the INVITE,
        re-INVITE, UPDATE, BYE and PRACK are sent again with them, RFC 3261 §22);
        :attr:`credentials` is the same store, to add to later. ``timer`` turns on session
        timers (RFC 4028) with those settings; ``rel100`` is "off", "supported" (reliable 1xx
        when the peer supports them too) or "required";
        ``keep_forks`` keeps the 2xx of a second fork as a call of its own (a
        :class:`ForkedCall` event) instead of ending it with BYE; ``lock_codec`` offers again
        with one codec when the answer to our offer kept several (pjsua's option).

        The endpoint must be configured to match, or requests using these extensions would be
        turned away before reaching us: ``supported`` must list "timer" and "100rel", ``allow``
        must list PRACK. A mismatch raises ValueError naming the missing setting.
        """
        settings = LayerSettings(
            user=user,
            timer=timer,
            rel100=Rel100(rel100),
            keep_forks=keep_forks,
            lock_codec=lock_codec,
            offer_timeout=offer_timeout,
        )
        config = endpoint.config
        missing = [f"supported: {tag!r}" for tag in settings.supported if tag not in config.supported]
        if "100rel" in settings.supported and "PRACK" not in config.allow:
            missing.append("allow: 'PRACK'")
        if missing:
            raise ValueError(f"the endpoint's EndpointConfig lacks {', '.join(missing)}")
        self.endpoint = endpoint
        self._ctx = SessionContext(endpoint, local_sdp, settings, InviteSession, credentials)
        self._after_event: Any = None
        self._users: list[TransactionUser] = []

    @property
    def settings(self) -> LayerSettings:
        """How this layer's sessions behave (user, timer, 100rel, forks)."""
        return self._ctx.settings

    @property
    def credentials(self) -> CredentialStore:
        """Usernames and passwords by realm, for the 401/407 our requests get."""
        return self._ctx.credentials

    @property
    def local_sdp(self) -> SessionDescription | None:
        """What new sessions offer and answer with (unless a call brings its own SDP)."""
        return self._ctx.local_sdp

    @local_sdp.setter
    def local_sdp(self, sdp: SessionDescription | None) -> None:
        self._ctx.local_sdp = sdp

    @property
    def sessions(self) -> list[InviteSession]:
        """Sessions not yet disconnected and released, oldest first."""
        return [h.session for h in self._ctx.handles if h.session is not None]

    # -- the node interface (what drivers call) ----------------------------------------------

    def add_listener(self, transport: str, address: Address) -> None:
        """Forwarded to the endpoint."""
        self.endpoint.add_listener(transport, address)

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """Feed bytes, then run the session logic on what the endpoint made of them."""
        self.endpoint.receive(data, source, transport, now)
        self._process(now)

    def transport_error(
        self, destination: Address, transport: str, now: float, *, reason: str = TRANSPORT_ERROR
    ) -> None:
        """A send to ``destination`` failed: its transactions end, and the sessions they were
        for treat it as a 503 (RFC 3261 §8.1.3.1): a call not yet answered ends now."""
        self.endpoint.transport_error(destination, transport, now, reason=reason)
        self._process(now)

    def datagrams_to_send(self) -> list[Outgoing]:
        """What to send (sessions send through the endpoint)."""
        return self.endpoint.datagrams_to_send()

    def next_deadline(self) -> float | None:
        """The earliest of the endpoint's, the sessions' (two heap tops) and the attached
        transaction users' next timers."""
        due = self._ctx.next_deadline()
        t = self.endpoint.next_deadline()
        if t is not None and (due is None or t < due):
            due = t
        for user in self._users:
            t = user.next_deadline()
            if t is not None and (due is None or t < due):
                due = t
        return due

    def handle_timers(self, now: float) -> None:
        """Fire the transactions' timers due at ``now``, then those of the sessions and of the
        transaction users due."""
        self.endpoint.handle_timers(now)
        self._process(now)
        for session in self._ctx.due(now):
            session.handle_timers(now)
            self._after(session, now)
        for user in list(self._users):
            deadline = user.next_deadline()
            if deadline is not None and deadline <= now:
                user.handle_timers(now)
                self._process(now)

    # -- transaction users -------------------------------------------------------------------

    def attach(self, user: TransactionUser) -> None:
        """Let ``user`` (a registration client, a registrar) take the events no session is
        for, and drive its timers with ours; see :class:`~invsess.node.TransactionUser`."""
        if user not in self._users:
            self._users.append(user)

    def detach(self, user: TransactionUser) -> None:
        """Stop giving ``user`` events and timers (nothing if it is not attached)."""
        if user in self._users:
            self._users.remove(user)

    def _offer(self, event: Event, now: float) -> bool:
        """Give an event no session is for to the first transaction user that takes it."""
        return any(user.on_event(event, now) for user in list(self._users))

    def next_event(self) -> SessionEvent | None:
        """The next session event. A DISCONNECTED session's own references go at the next call."""
        if self._after_event is not None:
            after, self._after_event = self._after_event, None
            after()
        events = self._ctx.events
        if not events:
            return None
        event, self._after_event = events.popleft()
        return event

    def close(self, now: float = 0.0) -> LeakReport:
        """End every transaction through the layer (so dialogs see them go), run the releases
        due, then close the endpoint; returns its leak report. Sessions still up stay leaked:
        hang them up first."""
        self.endpoint.terminate_all()
        self._process(now)
        while self.next_event() is not None:  # the last call runs the releases still due
            pass
        return self.endpoint.close(now)

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
        route: Sequence[NameAddress] = (),
        sdp: SessionDescription | None = None,
        display_name: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        defer_offers: bool = False,
    ) -> InviteSession:
        """Place a call: an INVITE with our offer — ``sdp``, else one made from the layer's SDP —
        or none, for a late offer (``with_offer=False``, or no SDP anywhere). ``from_uri`` and
        ``display_name`` make the From; ``headers`` are added to the INVITE. ``route`` is a
        preloaded route set (an outbound proxy; :func:`invsess.routeset.parse_route_set` makes
        one from URIs), ``destination`` where the INVITE goes (for a proxy: its address).
        ``defer_offers``: as :meth:`defer_offers`, from the start (an offer in the 2xx then
        waits for :meth:`answer_offer` before our ACK goes)."""
        session = place_call(
            self._ctx,
            target,
            destination=destination,
            now=now,
            transport=transport,
            from_uri=from_uri,
            with_offer=with_offer,
            route=route,
            sdp=sdp,
            display_name=display_name,
            headers=header_list(headers),
            deferred=defer_offers,
        )
        self._after(session, now)
        return session

    def answer(
        self,
        session: InviteSession,
        code: int,
        now: float,
        *,
        reason: str | None = None,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] = (),
        reliable: bool | None = None,
    ) -> None:
        """Answer an incoming call: 1xx (ringing; reliably with 100rel unless ``reliable`` is
        False), 2xx, or a failure. The SDP answer (or, for an INVITE without one, our offer) is
        made now: ``sdp`` as given (checked against the offer: 488 when it does not answer it),
        else from the layer's SDP. A 1xx or 2xx that must wait for the PRACK of an earlier
        reliable 1xx goes out after it (RFC 3262 §3): the state changes when it does.
        ``headers`` are added to the response."""
        if session.uas is None:
            raise LocalProtocolError("answer() is for a ringing incoming call")
        answer = Answer(code, reason, sdp, tuple(headers), reliable)
        session.uas.answer(session, answer, now)
        self._after(session, now)

    def hangup(
        self, session: InviteSession, now: float, *, code: int | None = None, reason: str | None = None
    ) -> None:
        """End the call the way its state calls for: CANCEL, reject (``code``, 603 by default),
        or BYE; with ``reason`` (or a ``code``), the CANCEL or BYE carries ``Reason:
        SIP;cause=code;text="reason"`` (RFC 3326) and ``code`` becomes the session's cause."""
        session.hangup(now, code, reason)
        self._after(session, now)

    def reinvite(
        self,
        session: InviteSession,
        now: float,
        *,
        direction: str | None = None,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a re-INVITE with a new offer (``direction``: "sendonly" holds, "sendrecv"
        resumes; ``sdp``: this offer, e.g. the other leg's, instead of ours)."""
        session.offers.reinvite(session, now, direction, sdp=sdp, headers=header_list(headers))
        self._after(session, now)

    def update(
        self,
        session: InviteSession,
        now: float,
        *,
        direction: str | None = None,
        with_offer: bool = True,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send an UPDATE (RFC 3311): no INVITE transaction, no ACK. With a new offer (``sdp``,
        or ours), or, with ``with_offer=False``, none: a session refresh that changes no media."""
        session.offers.update(
            session, now, direction, with_offer=with_offer, sdp=sdp,
            headers=header_list(headers),
        )  # fmt: skip
        self._after(session, now)

    def defer_offers(self, session: InviteSession, defer: bool = True) -> None:
        """From now on the peer's offers in this session (re-INVITE, UPDATE, the 2xx to an
        INVITE without SDP) wait for the application: an :class:`OfferReceived` event, then
        :meth:`answer_offer` or :meth:`reject_offer`. Meanwhile the re-INVITE's transaction
        sends 100 Trying; after ``offer_timeout`` (and before the peer's Timer F for an UPDATE)
        the offer is refused with 504 (:class:`OfferWithdrawn`). Without this, offers are
        answered at once from the session's SDP."""
        session.offers.deferred = defer

    def answer_offer(
        self,
        session: InviteSession,
        now: float,
        *,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer the offer of an :class:`OfferReceived`: with ``sdp`` (for a re-INVITE without
        SDP, ``sdp`` is our offer), or from the session's SDP. An ``sdp`` that does not answer
        the offer gets the request a 488 and leaves the session as it was."""
        session.offers.answer_offer(session, sdp, now, header_list(headers))
        self._after(session, now)

    def reject_offer(
        self, session: InviteSession, now: float, *, code: int = 488, reason: str | None = None
    ) -> None:
        """Refuse the offer of an :class:`OfferReceived` with ``code``: the session goes on with
        the media agreed before (an offer in a 2xx: ACK, then BYE)."""
        session.offers.reject_offer(session, code, reason, now)
        self._after(session, now)

    def send_request(
        self,
        session: InviteSession,
        method: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Transaction[Any]:
        """Send a request in the session's dialog (INFO, MESSAGE, NOTIFY, ...); its final
        response (or None on a timeout) comes as a :class:`DialogResponseReceived` for the
        transaction returned. A 408 or 481 ends the session (RFC 3261 §12.2.1.2)."""
        tx = session.send_request(
            method.upper(), now, headers=header_list(headers), body=body,
            content_type=content_type,
        )  # fmt: skip
        self._after(session, now)
        return tx

    def respond(
        self,
        session: InviteSession,
        transaction: ServerTransaction[Any],
        code: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """Answer a :class:`DialogRequestReceived` (once, with a final response)."""
        if transaction.terminated:
            raise LocalProtocolError("the request's transaction has ended")
        if body and content_type is None:
            raise LocalProtocolError("a body needs a content type")
        response = make_response(
            transaction.request, code, reason, headers=list(header_list(headers)),
            body=body, content_type=content_type,
        )  # fmt: skip
        self.endpoint.respond(transaction, response, now)
        self._after(session, now)

    # -- routing -----------------------------------------------------------------------------

    def _after(self, session: InviteSession, now: float) -> None:
        """After any call into a session: what it made the endpoint do, then its timer."""
        self._process(now)
        if session.handle.session is not None:
            self._ctx.arm(session)

    def _process(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self._route(event, now)

    def _route(self, event: AnyEvent, now: float) -> None:
        ctx = self._ctx
        if isinstance(event, RequestReceived):
            self._on_request(event.transaction, event.request, now)
            return
        if isinstance(event, AckReceived):
            session = self._session_of(event.request)
            if session is not None:
                session.on_ack(event.request, now)
                ctx.arm(session)
            return
        tx = event.invite if isinstance(event, CancelReceived) else event.transaction
        route = ctx.routes.pop(tx, None) if isinstance(event, TransactionTerminated) else ctx.routes.get(tx)
        if route is None:
            if self._users and not isinstance(event, CancelReceived):
                self._offer(event, now)
            return
        session = route.handle.session if route.handle is not None else None
        if session is not None:
            if isinstance(event, ResponseReceived):
                try:
                    session.on_response(route.purpose, tx, event.response, now)
                except RemoteProtocolError as exc:  # §18.1.2: a malformed response is discarded
                    session.log.warning("malformed response discarded", error=str(exc))
            elif isinstance(event, TransactionTimedOut):
                session.on_timeout(route.purpose, event.timer, now, tx)
            elif isinstance(event, CancelReceived):
                session.on_cancel(route.purpose, tx, now)
            else:
                session.on_terminated(route.purpose, tx, now)
            if session.handle.session is not None:
                ctx.arm(session)
        if isinstance(event, TransactionTerminated):
            route.dialog.dec_tsx()

    def _session_of(self, request: Request, *, learn: bool = False) -> InviteSession | None:
        """The session of the dialog ``request`` is in. With ``learn``, a request of the peer
        in a dialog whose 2xx came without a To tag names the remote tag (RFC 3261 §12.1.2)."""
        ctx = self._ctx
        call_id = request.call_id or ""
        to_tag = (request.to.tag if request.to else "") or ""
        from_tag = (request.from_.tag if request.from_ else "") or ""
        handle = ctx.dialogs.get((call_id, to_tag, from_tag))
        if handle is None and learn and from_tag:
            handle = ctx.dialogs.get((call_id, to_tag, ""))
            session = handle.session if handle is not None else None
            if session is None or session.dialog.role is not DialogRole.UAC:
                return None
            ctx.unroute_dialog(session)
            session.dialog.learn_remote_tag(from_tag)
            ctx.route_dialog(session)
            session.log.info("remote tag learnt from the peer's request", remote_tag=from_tag)
        return handle.session if handle is not None else None

    def _on_request(self, tx: ServerTransaction[Any], request: Request, now: float) -> None:
        ctx = self._ctx
        session: InviteSession | None = None
        try:
            if request.to is None or request.to.tag is None:
                if request.method == "INVITE" and isinstance(tx, ServerInviteTransaction):
                    session = accept_invite(ctx, tx, request, now)
                elif request.method in _IN_DIALOG_ONLY:
                    raise RequestRefusedError(f"{request.method} outside a dialog", 481)
                else:  # REGISTER, MESSAGE, OPTIONS when not auto-answered, ...: a transaction
                    received = RequestReceived(tx, request, tx.peer)  # user (a registrar) or the
                    if not self._offer(received, now):  # application answers
                        ctx.emit(received)
                return
            session = self._session_of(request, learn=True)
            if session is None or session.state is InviteState.DISCONNECTED:
                # A stray BYE for a session that just ended still gets its 200.
                code = 200 if request.method == "BYE" else 481
                ctx.endpoint.respond(tx, make_response(request, code), now)
                return
            try:
                session.dialog.receive_request(request)
            except RemoteProtocolError as exc:  # a CSeq that went backwards: 500, the session goes on
                ctx.endpoint.respond(tx, make_response(request, exc.status_code, exc.reason), now)
                return
            ctx.track(tx, session, Purpose.RECEIVED, session.dialog)
            session.on_request(tx, request, now)
        except RemoteProtocolError as exc:  # refused, or a header the endpoint did not parse
            self._refuse(tx, request, exc, now)
        finally:
            if session is not None and session.handle.session is not None:
                ctx.arm(session)

    def _refuse(
        self, tx: ServerTransaction[Any], request: Request, exc: RemoteProtocolError, now: float
    ) -> None:
        """Answer a request we cannot take: the refusal's code and headers, or 400 for a header
        we could not read (unless a final response went out already)."""
        if request.method == "ACK" or tx.terminated:
            return
        if isinstance(exc, RequestRefusedError):
            to_tag = None if request.to is not None and request.to.tag else self.endpoint.new_tag()
            response = make_response(
                request, exc.status_code, exc.reason or None, to_tag=to_tag, headers=list(exc.headers)
            )
        else:
            response = make_response(request, exc.status_code or 400, str(exc)[:80])
        with contextlib.suppress(LocalProtocolError):  # a final response went out already
            self.endpoint.respond(tx, response, now)


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
    "SessionLayer",
    "SessionRefreshed",
    "SessionStateChanged",
]
