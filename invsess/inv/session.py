"""The INVITE session: its table, the parts it is made of, and the memory rules of ``sip_inv.c``.

An :class:`InviteSession` is allocated *from its dialog's pool*. It holds one dialog session
count and one internal reference; both are dropped once the application has seen the
DISCONNECTED event (the pull-model form of "after the state callback"). An application that
keeps the session must hold its own references and drop them session first, dialog second;
the other order leaves it holding freed memory, which MALLOC_DEBUG turns into an immediate
``UseAfterFreeError`` naming the Call-ID, the tags and the state at the time of the free.

The session owns its behaviour: every change of state goes through :meth:`InviteSession.process`
and the table of :mod:`invsess.inv.states`. Its sub-concerns are parts it owns, each with its
own small state, ``next_deadline()`` and ``handle_timer(session, now)`` (aioquic's recovery
objects are the model): the caller's INVITE (:mod:`~invsess.inv.uac`), the callee's INVITE and
the wait for the ACK of a 2xx (:mod:`~invsess.inv.uas`), offers inside the dialog
(:mod:`~invsess.inv.offer`), the session timer (:mod:`~invsess.inv.timer`) and reliable
provisional responses (:mod:`~invsess.inv.prack`). Parts never keep a reference to the session:
it is passed to them, so nothing outlives the dialog's pool by holding on to it.

Never touches a session after its pool is released: nothing of it may fire after DISCONNECTED.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from invsess.address import Address, is_ip
from invsess.auth import AuthenticationFailedError, resubmit
from invsess.dialog import Dialog, DialogRole, DialogState
from invsess.inv.answer import Answer
from invsess.inv.context import Purpose, SessionContext, SessionHandle
from invsess.inv.events import (
    DialogRequestReceived,
    DialogResponseReceived,
    MediaUpdated,
    OfferKind,
    SessionStateChanged,
    detached,
)
from invsess.inv.lock import lock_codec
from invsess.inv.offer import OfferExchange
from invsess.inv.states import (
    TRANSITIONS,
    Effect,
    InviteState,
    Origin,
    RequestRefusedError,
    SessionInput,
    SessionTableError,
)
from invsess.logs import get_logger
from invsess.memory import RefCounted
from invsess.sdp import NegotiatorState, SdpNegotiator
from invsess.sip import LocalProtocolError, Request, Response, make_response
from invsess.transaction import (
    TRANSPORT_ERROR,
    ClientInviteState,
    ClientInviteTransaction,
    ServerInviteTransaction,
    Timer,
)

if TYPE_CHECKING:
    from invsess.inv.prack import ReliableReceiver, ReliableSender
    from invsess.inv.timer import SessionTimer
    from invsess.inv.uac import UacInvite
    from invsess.inv.uas import AckWait, UasInvite
    from invsess.transaction import Transaction

SDP = "application/sdp"
_LOG = get_logger("invsess.inv")
#: Methods the session sends itself (the application asks for them by their own calls).
_LAYER_METHODS = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "PRACK", "UPDATE"})


class InviteSession(RefCounted):
    """One INVITE session; made by :class:`~invsess.inv.layer.SessionLayer`, never directly."""

    __slots__ = (
        "ack_wait",
        "bye_pending",
        "bye_sent",
        "cause",
        "cause_text",
        "ctx",
        "dialog",
        "early_sdp",
        "handle",
        "invite_tx",
        "negotiator",
        "offers",
        "peer",
        "peer_allow",
        "rel_receiver",
        "rel_sender",
        "state",
        "timer",
        "uac",
        "uas",
    )
    ref_label: ClassVar[str] = "session reference count"
    TRANSITIONS: ClassVar[dict[tuple[InviteState, SessionInput], tuple[InviteState, Effect]]] = TRANSITIONS

    def __init__(self, ctx: SessionContext, dialog: Dialog, negotiator: SdpNegotiator) -> None:
        super().__init__()
        self.ctx = ctx
        self.dialog = dialog
        self.negotiator = negotiator
        self.handle = SessionHandle(self)
        self.state = InviteState.NULL
        #: The status code behind the end (200 for a BYE), once the session is ending.
        self.cause: int | None = None
        #: What ended it, in words: the text of the Reason header of our BYE, or the transport
        #: failure that ended it.
        self.cause_text = "session ended"
        #: The INVITE transaction that set the session up (None once it has terminated).
        self.invite_tx: ClientInviteTransaction | ServerInviteTransaction | None = None
        #: Where the INVITE went (or where its responses go): the next hop when the dialog's
        #: is a host name (nothing here resolves names).
        self.peer: Address | None = None
        self.peer_allow: frozenset[str] = frozenset()  # the peer's Allow: may a refresh be an UPDATE?
        self.early_sdp = False  # the INVITE's offer/answer went in a reliable 1xx (or its PRACK)
        self.bye_pending = False  # hung up before a BYE may go (a UAS waits for the ACK)
        self.bye_sent = False
        # The parts (None where the role or the layer's settings do not use them).
        self.uac: UacInvite | None = None
        self.uas: UasInvite | None = None
        self.ack_wait: AckWait | None = None  # our 2xx, until its ACK
        self.offers = OfferExchange()
        self.timer: SessionTimer | None = None
        self.rel_sender: ReliableSender | None = None  # UAS: this INVITE's 1xx go reliably
        self.rel_receiver: ReliableReceiver | None = None  # UAC: we PRACK reliable 1xx

    def __repr__(self) -> str:
        return f"<InviteSession {self.role.name} {self.dialog.call_id} {self.state.name}>"

    @property
    def role(self) -> DialogRole:
        """UAC (we placed the call) or UAS (we answered it)."""
        return self.dialog.role

    @property
    def call_id(self) -> str:
        """The Call-ID of the dialog."""
        return self.dialog.call_id

    @property
    def log(self) -> Any:
        """The session's logger, its context (Call-ID, tags, state) read when a line is written."""
        return _LOG.bind_lazy(self._log_context)

    def _log_context(self) -> dict[str, Any]:
        dialog = self.dialog
        return {
            "call_id": dialog.call_id,
            "local_tag": dialog.local_tag,
            "remote_tag": dialog.remote_tag,
            "role": dialog.role.name,
            "state": self.state.name,
        }

    # -- the table ---------------------------------------------------------------------------

    def process(self, event: SessionInput, now: float) -> None:
        """Take ``event`` through the table: admit it, or move and run the transition's effect.

        A key the table lacks raises by the input's origin (see :mod:`invsess.inv.states`).
        """
        entry = self.TRANSITIONS.get((self.state, event))
        if entry is None:
            raise self._refusal(event)
        nxt, effect = entry
        if effect is Effect.STAY:
            return
        if effect is Effect.CONFIRM_DIALOG:
            self.dialog.confirm()
        old, self.state = self.state, nxt
        self.ctx.session_states.moved(old, nxt)
        if _LOG.is_enabled_for(logging.INFO):  # (a bound logger per line costs, even unwritten)
            self.log.info("session state", old=old.name, new=nxt.name, cause=self.cause)
        if effect is Effect.END:
            self._end(old, now)
        else:
            self.ctx.emit(SessionStateChanged(self, old, nxt, self.cause))

    def _refusal(self, event: SessionInput) -> Exception:
        what = f"{event.label} is not possible in state {self.state.name}"
        if event.origin is Origin.PEER:
            headers: tuple[tuple[str, str], ...] = ()
            if event.refusal == 500:  # RFC 3261 §14.2: an INVITE overlapping ours: try later
                headers = (("Retry-After", str(self.ctx.random.randint(0, 10))),)
            return RequestRefusedError(what, event.refusal, headers=headers)
        if event.origin is Origin.APP:
            return LocalProtocolError(what)
        return SessionTableError(f"invite session {self.call_id}: {what}")

    def require(self, event: SessionInput) -> None:
        """Raise as :meth:`process` would if the table lacks ``event`` here, changing nothing:
        for an input whose effects must wait until we have answered it."""
        if (self.state, event) not in self.TRANSITIONS:
            raise self._refusal(event)

    def end(self, event: SessionInput, cause: int, now: float) -> None:
        """End the session by ``event`` with ``cause`` (nothing if it has already ended)."""
        if self.state is InviteState.DISCONNECTED:
            return
        self.cause = self.cause or cause
        self.process(event, now)

    def _end(self, old: InviteState, now: float) -> None:
        """The END effect: nothing of the session may fire after this (PJSIP #2007 logged
        through a freed session on expiry): timers, retransmissions and forks stop now."""
        self.ack_wait = None
        self.offers.retry_at = None
        tx = self.invite_tx
        ringing = isinstance(tx, ClientInviteTransaction) and tx.state is ClientInviteState.PROCEEDING
        if self.uac is not None and ringing:
            # Ended before the INVITE had its final response (a BYE on the early dialog, a
            # 408/481 to our early UPDATE): CANCEL it, so that it ends too (§9.1).
            self.uac.send_cancel(self, now)
        if self.uas is not None:
            self.uas.end(self, now)
        if self.timer is not None:
            self.timer.stop()
        if self.rel_sender is not None:
            self.rel_sender.clear()
        if self.uac is not None:
            self.uac.release_forks()
        self.dialog.terminate()
        event = SessionStateChanged(self, old, InviteState.DISCONNECTED, self.cause)
        self.ctx.emit(event, self._release)

    def _release(self) -> None:
        """After the DISCONNECTED event was read: the session's references, then the dialog's.
        Transactions still running (a BYE, a CANCEL) keep the dialog, never the session:
        their late responses find an empty handle, not freed memory (PJSIP #2007)."""
        ctx, dialog = self.ctx, self.dialog
        self.handle.session = None
        del ctx.handles[self.handle]
        ctx.session_states.removed(self.state)
        ctx.unroute_dialog(self)
        self.dec_ref("inv-session")  # session first ...
        dialog.dec_ref("inv-session")  # ... dialog second: the order res_pjsip_session.c keeps

    def _on_last_ref(self, reason: str) -> None:
        # The session's own pools go now; its memory goes with the dialog's pool.
        self.negotiator.release()

    # -- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest timer of the session's parts (2xx retransmission and ACK wait, reliable
        1xx, 491 back-off, session refresh or expiry)."""
        due = None
        for part in (self.ack_wait, self.rel_sender, self.offers, self.timer):
            t = part.next_deadline() if part is not None else None
            if t is not None and (due is None or t < due):
                due = t
        return due

    def handle_timers(self, now: float) -> None:
        """Fire what is due at ``now``, part by part."""
        if self.ack_wait is not None:
            self.ack_wait.handle_timer(self, now)
        if self.rel_sender is not None:
            self.rel_sender.handle_timer(self, now)
        self.offers.handle_timer(self, now)
        if self.timer is not None and self.state is not InviteState.DISCONNECTED:
            self.timer.handle_timer(self, now)

    # -- what the layer routes here ----------------------------------------------------------

    def on_request(self, tx: Any, request: Request, now: float) -> None:
        """A request of the peer inside this session's dialog (the dialog has checked it)."""
        method = request.method
        if method == "BYE":
            self.require(SessionInput.RECV_BYE)  # refused (481) where the table says so
            self.ctx.endpoint.respond(tx, make_response(request, 200), now)
            if self.uas is not None:
                self.uas.bye_received(self, now)  # §15.1.2: an early BYE ends the INVITE too
            self.offers.withdraw(self, now)  # and a re-INVITE or UPDATE still unanswered: 487
            self.end(SessionInput.RECV_BYE, 200, now)
            return
        if method == "INVITE" and isinstance(tx, ServerInviteTransaction):
            self.offers.on_reinvite(self, tx, request, now)
        elif method == "UPDATE":
            self.offers.on_update(self, tx, request, now)
        elif method == "PRACK":
            self.process(SessionInput.RECV_PRACK, now)
            if self.rel_sender is None:
                raise RequestRefusedError("no reliable provisional response of ours is waiting", 481)
            self.rel_sender.on_prack(self, tx, request, now)
        else:
            # INFO, MESSAGE, NOTIFY ...: the endpoint let it through (its ``allow`` lists it),
            # so the application answers it (``SessionLayer.respond``), knowing its session.
            self.process(SessionInput.RECV_REQUEST, now)
            self.ctx.emit(DialogRequestReceived(tx, request, tx.peer, self))

    def on_ack(self, ack: Request, now: float) -> None:
        """The ACK of a 2xx of ours (to the INVITE, or to a re-INVITE)."""
        if self.ack_wait is None:
            return  # a retransmitted ACK, or one for a 2xx we are not waiting on
        self.ack_wait = None
        offered = self.negotiator.state is NegotiatorState.LOCAL_OFFER  # our 2xx carried an offer
        initial = self.state is InviteState.CONNECTING
        if offered and not self.offers.answer_in_ack(self, ack) and (initial or ack.body):
            # RFC 3264: an unusable answer ends the session, and so does none at all to the
            # offer of our 2xx to an INVITE without SDP: there is no session to talk over. A
            # re-INVITE's offer left unanswered is void: the session goes on as it was.
            self.cause = 488
            self.send_bye(now)
            return
        if initial and not self.early_sdp:  # else agreed at the reliable 1xx already
            self.media_updated()  # before CONFIRMED: a confirmed call's media are known
        self.process(SessionInput.RECV_ACK, now)
        if self.bye_pending:
            self.send_bye(now)
        elif offered and ack.body:
            lock_codec(self, now)  # the ACK answered the offer of our 2xx

    def on_response(self, purpose: Purpose, tx: Transaction[Any], response: Response, now: float) -> None:
        """A response to a request of ours, by what that request was for."""
        code = response.status_code
        if (
            code in (401, 407)
            and purpose in (Purpose.BYE, Purpose.PRACK)
            and self._send_authenticated(purpose, tx, response, now)
        ):
            return
        if purpose is Purpose.INVITE and self.uac is not None:
            self.uac.on_response(self, tx, response, now)
        elif purpose in (Purpose.REINVITE, Purpose.UPDATE):
            self.offers.on_response(self, tx, response, now)
        elif purpose is Purpose.BYE and code >= 200:
            self.end(SessionInput.BYE_DONE, self.cause or 200, now)
        elif purpose is Purpose.REQUEST and code >= 200:
            self.ctx.emit(DialogResponseReceived(self, tx, detached(response)))
            if code in (408, 481):  # RFC 3261 §12.2.1.2: the dialog is gone
                self.fail(code, now)
        elif purpose in (Purpose.CANCEL, Purpose.PRACK) and code >= 300:
            self.log.info(f"{purpose.value} refused", status=code)

    def on_timeout(
        self, purpose: Purpose, timer: Timer, now: float, tx: Transaction[Any] | None = None
    ) -> None:
        """A request of ours got no final response in time (Timer B/F, or given up after CANCEL)."""
        if purpose is Purpose.INVITE and self.uac is not None:
            self.uac.on_timeout(self, timer, now)
        elif purpose in (Purpose.REINVITE, Purpose.UPDATE):
            self.offers.on_timeout(self, now)
        elif purpose is Purpose.BYE:
            self.end(SessionInput.BYE_DONE, self.cause or 408, now)
        elif purpose is Purpose.REQUEST and tx is not None:
            self.ctx.emit(DialogResponseReceived(self, tx, None))
            self.fail(408, now)  # RFC 3261 §12.2.1.2

    def on_cancel(self, purpose: Purpose, tx: Transaction[Any], now: float) -> None:
        """The peer CANCELled a request of its (the endpoint said 200 to the CANCEL): the INVITE
        gets 487 and the session ends; a re-INVITE whose offer waits for the application gets
        487 and the session goes on."""
        if purpose is Purpose.INVITE and self.uas is not None:
            self.uas.on_cancel(self, now)
        elif self.offers.incoming.tx is tx:
            self.offers.withdraw(self, now)

    def on_terminated(self, purpose: Purpose, tx: Transaction[Any], now: float) -> None:
        """A transaction of the session is gone; the INVITE's, if it ends a setup that never got
        a usable final response, ends the session (it must not wait for ever). One ended by a
        transport failure counts as a 503 (RFC 3261 §8.1.3.1)."""
        reason = tx.terminated_reason or ""
        failed = reason.startswith(TRANSPORT_ERROR) and self.state is not InviteState.DISCONNECTED
        if failed:
            self.log.info("transport failure", purpose=purpose.value, reason=reason)
            if purpose is Purpose.REQUEST:
                self.ctx.emit(DialogResponseReceived(self, tx, None))  # it could not be sent
                return
            self.cause_text = reason
            if purpose is Purpose.BYE:
                self.end(SessionInput.BYE_DONE, self.cause or 503, now)
            elif purpose in (Purpose.REINVITE, Purpose.UPDATE):
                self.offers.on_transport_error(self, tx, now)
        if tx is not self.invite_tx:
            return
        self.invite_tx = None  # its request and pool are gone: keep only what we still need
        if self.uac is not None:
            self.uac.invite_terminated(self, now, 503 if failed else 408)
        elif failed and self.state in (InviteState.INCOMING, InviteState.EARLY):
            self.end(SessionInput.REJECT, 503, now)  # our answer cannot reach the caller

    # -- digest authentication (RFC 3261 §22) -------------------------------------------------

    def authenticated_retry(self, tx: Transaction[Any], response: Response, dialog: Dialog) -> Request | None:
        """``tx``'s request again, with credentials for the 401/407 ``response``: the next CSeq of
        ``dialog``, a new branch, the rest unchanged (RFC 3261 §22.2). None when it must not go
        again (no credentials for the realm, or they were refused already: the caller then
        treats the 401/407 as the final failure it is)."""
        try:
            credentials = self.ctx.auth.authorize(tx.request, response)
        except AuthenticationFailedError as exc:
            self.log.info("authentication failed", method=tx.request.method, error=str(exc))
            return None
        dialog.local_cseq += 1
        via = self.ctx.endpoint.via(tx.transport)
        return resubmit(tx.request, via=via, cseq=dialog.local_cseq, credentials=credentials)

    def _send_authenticated(
        self, purpose: Purpose, tx: Transaction[Any], response: Response, now: float
    ) -> bool:
        """A BYE or PRACK of ours was challenged: send it again with credentials (in the dialog
        it went in: a PRACK may belong to another fork's early dialog)."""
        to = tx.request.to
        tag = to.tag if to is not None else None
        dialog = self.dialog
        if tag and tag != dialog.remote_tag and self.uac is not None:
            dialog = self.uac.forks.get(tag, dialog)
        request = self.authenticated_retry(tx, response, dialog)
        if request is None:
            return False
        ctx = self.ctx
        ctx.track(ctx.endpoint.send_request(request, tx.peer, tx.transport, now), self, purpose, dialog)
        return True

    # -- the application's calls -------------------------------------------------------------

    def hangup(self, now: float, code: int | None = None, reason: str | None = None) -> None:
        """End the call the way its state calls for: CANCEL, reject (``code``, 603 by default),
        or BYE. With ``reason``, a CANCEL or BYE carries ``Reason: SIP;cause=code;text="reason"``
        (RFC 3326; the cause defaults to 487 for a CANCEL, 200 for a BYE)."""
        if code is not None and not 300 <= code < 700:
            raise LocalProtocolError(f"a call is ended with a 3xx-6xx cause, not {code}")
        state = self.state
        if state is InviteState.DISCONNECTED:
            return
        if self.uac is not None and state in (InviteState.CALLING, InviteState.EARLY):
            header = f'SIP;cause={code or 487};text="{reason}"' if reason is not None else None
            self.uac.hangup(self, now, header)
            return
        if self.uas is not None and state in (InviteState.INCOMING, InviteState.EARLY):
            self.uas.answer(self, Answer(code or 603, reason), now)
            return
        if reason is not None or code is not None:
            self.cause = code or 200
            if reason is not None:
                self.cause_text = reason
        if self.offers.incoming.waiting and self.offers.incoming.kind is OfferKind.ACK:
            self.offers.reject_offer(self, code or 488, reason, now)  # our ACK first, then the BYE
        elif self.uas is not None and state is InviteState.CONNECTING:
            self.bye_pending = True  # a UAS's BYE waits for the ACK
        else:
            self.send_bye(now)

    def send_request(
        self,
        method: str,
        now: float,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Transaction[Any]:
        """A request of the application in the dialog (INFO, MESSAGE, ...); its final response
        comes as :class:`~invsess.inv.events.DialogResponseReceived`."""
        if method in _LAYER_METHODS:
            raise LocalProtocolError(f"{method} is the session's own: use the call for it")
        self.process(SessionInput.SEND_REQUEST, now)
        if self.bye_sent:
            raise LocalProtocolError("the session is ending: a BYE was sent")
        if body and content_type is None:
            raise LocalProtocolError("a body needs a content type")
        endpoint = self.ctx.endpoint
        host, port, transport = self.next_hop()
        request = self.dialog.create_request(
            method, via=endpoint.via(transport), headers=headers, body=body, content_type=content_type
        )
        tx = endpoint.send_request(request, (host, port), transport, now)
        self.ctx.track(tx, self, Purpose.REQUEST, self.dialog)
        return tx

    # -- what the parts share ----------------------------------------------------------------

    def send_bye(self, now: float) -> None:
        """BYE (with a Reason header when the session ends for a cause), once; a callee never
        sends one on an early dialog (RFC 3261 §15)."""
        if (
            (self.uas is not None and self.state in (InviteState.INCOMING, InviteState.EARLY))
            or self.bye_sent
            or self.state is InviteState.DISCONNECTED
            or self.dialog.state is DialogState.TERMINATED
        ):
            return
        endpoint = self.ctx.endpoint
        host, port, transport = self.next_hop()
        reason = f'SIP;cause={self.cause};text="{self.cause_text}"'
        headers = [("Reason", reason)] if self.cause else []
        bye = self.dialog.create_request("BYE", via=endpoint.via(transport), headers=headers)
        tx = endpoint.send_request(bye, (host, port), transport, now)
        self.ctx.track(tx, self, Purpose.BYE, self.dialog)
        self.bye_pending = False
        self.bye_sent = True

    def fail(self, cause: int, now: float, *, text: str | None = None) -> None:
        """A request of ours in the dialog failed for good (408/481, a refresh, an expiry, an
        unusable answer): BYE, and the session ends now (RFC 3261 §12.2.1.2, RFC 4028 §10)."""
        self.cause = cause
        if text is not None:
            self.cause_text = text
        self.send_bye(now)
        self.end(SessionInput.DIALOG_FAILED, cause, now)

    def next_hop(self, dialog: Dialog | None = None) -> tuple[str, int, str]:
        """Where an in-dialog request goes (the route set, else the remote target); a host name
        there goes where the INVITE went, since nothing here resolves names."""
        host, port, transport = (dialog or self.dialog).next_hop()
        if not is_ip(host) and self.peer is not None:
            host, port = self.peer
        return host, port, transport

    def response(
        self,
        request: Request,
        code: int,
        reason: str | None = None,
        *,
        body: bytes = b"",
        extra: Sequence[tuple[str, object]] | None = None,
    ) -> Response:
        """Our response to ``request`` in this dialog (with our To tag; a 101-299 also with
        Contact, Allow, Supported and the Record-Route copied)."""
        headers: list[tuple[str, object]] = []
        if 100 < code < 300:
            ctx = self.ctx
            contact = ctx.contact_text(self.dialog.local_contact)
            headers += [("Contact", contact), ("Allow", ctx.endpoint.config.allow_header)]
            supported = ctx.settings.supported_header
            if supported:
                headers.append(("Supported", supported))
        if extra:
            headers += extra
        return make_response(
            request, code, reason, to_tag=self.dialog.local_tag, headers=headers, body=body,
            content_type=SDP if body else None, copy_record_route=100 < code < 300,
        )  # fmt: skip

    def media_updated(self) -> None:
        """Tell the application what the last offer/answer agreed (MediaUpdated)."""
        neg = self.negotiator
        local, remote = neg.active_local_bytes, neg.active_remote_bytes
        if local is not None and remote is not None:
            self.ctx.emit(MediaUpdated(self, local, remote, neg.generation))


__all__ = ["InviteSession"]
