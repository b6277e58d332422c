"""The caller's side of a session: the INVITE we send, its responses, ACK, CANCEL and forks.

:func:`place_call` builds and sends the INVITE. :class:`UacInvite` follows its responses: the
early dialogs (ours, and those of other forks, RFC 3261 §13.2.2.4, each PRACKed in its own
dialog when it sends reliable provisionals), the 2xx and its ACK (sent again for each
retransmitted 2xx), the answer or late offer in it, a 422 asking for a longer session timer
(the INVITE is sent again, RFC 4028 §7.3), and the end of the setup. A CANCEL waits for a
provisional response (§9.1); the INVITE client transaction gives up 64*T1 after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from invsess.address import Address, is_ip, uri_host
from invsess.auth import credentials_of
from invsess.dialog import Dialog, DialogState
from invsess.inv.answer import HeaderList
from invsess.inv.answers import take_answer
from invsess.inv.context import Purpose, methods_of
from invsess.inv.events import ForkedCall, InviteResponseReceived, detached
from invsess.inv.lock import lock_codec
from invsess.inv.prack import ReliableReceiver, is_reliable
from invsess.inv.settings import Rel100
from invsess.inv.states import InviteState, SessionInput
from invsess.inv.timer import SessionTimer
from invsess.routeset import route_request
from invsess.sdp import NegotiatorState, SdpNegotiationError, SessionDescription, parse_sdp
from invsess.sip import (
    CSeq,
    LocalProtocolError,
    NameAddress,
    ParseError,
    RemoteProtocolError,
    Request,
    Response,
    make_request,
    parse_uri,
)
from invsess.transaction import ClientInviteTransaction, Timer

if TYPE_CHECKING:
    from invsess.inv.context import SessionContext
    from invsess.inv.session import InviteSession
    from invsess.transaction import Transaction

SDP = "application/sdp"
#: An ACK ready to be sent again: (bytes, destination, transport).
SentAck = tuple[bytes, Address, str]


def place_call(
    ctx: SessionContext,
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
    headers: HeaderList = (),
    deferred: bool = False,
) -> InviteSession:
    """A new session and its INVITE, with our offer (``sdp``, else made from the layer's SDP;
    none at all for a late offer: ``with_offer=False``, or no SDP anywhere), sent.

    ``route`` is a preloaded route set (an outbound proxy): Route headers for a loose router,
    the strict router's URI as Request-URI otherwise (:mod:`invsess.routeset`); ``destination``
    is where the INVITE goes (the first route's address, for a proxy). ``headers`` are added to
    the INVITE; ``deferred``: the session's offers are answered by the application (an offer in
    the 2xx holds our ACK back until then)."""
    endpoint, settings = ctx.endpoint, ctx.settings
    host, port = endpoint.listeners.get(transport.lower(), ("127.0.0.1", 5060))
    target_uri = parse_uri(target)
    request_uri, routes = route_request(target_uri, route)
    local_tag = endpoint.new_tag()
    if from_uri is None and display_name is None:
        from_: NameAddress | str = f"{ctx.local_uri_text(transport)};tag={local_tag}"
    else:
        local = from_uri or f"sip:{settings.user}@{uri_host(host)}:{port}"
        from_ = str(NameAddress(parse_uri(local), display_name, (("tag", local_tag),)))
    to = str(NameAddress(target_uri))
    call_id = f"{endpoint.new_tag()}{endpoint.new_tag()}@{host}"
    contact = ctx.contact(transport)
    # The dialog and the session first, so that the INVITE is built once, complete: headers,
    # offer and all (not built, then added to, then its Content-Length mended).
    dialog = Dialog.create_uac_for(
        endpoint.factory,
        call_id=call_id,
        local_tag=local_tag,
        local_uri=from_,
        remote_uri=to,
        cseq=1,
        target=target_uri,  # not a strict router's URI: the 2xx's Contact replaces it
        contact=contact,
        transport=transport,
        now=now,
        gauge=ctx.dialog_states,
    )
    session = ctx.new_session(dialog, sdp)
    session.offers.deferred = deferred
    session.uac = uac = UacInvite()
    if settings.rel100 is not Rel100.OFF:
        session.rel_receiver = ReliableReceiver()
    if settings.timer is not None:
        session.timer = SessionTimer(settings.timer)
    body = b""
    if with_offer and session.negotiator.has_capabilities:
        body = session.negotiator.create_offer().serialize()
    request = make_request(
        "INVITE",
        request_uri,
        via=endpoint.via(transport),
        from_=from_,
        to=to,
        call_id=call_id,
        cseq=1,
        contact=contact,
        headers=[*(("Route", r) for r in routes), *invite_headers(session), *headers],
        body=body,
        content_type=SDP if body else None,
    )
    uac.send_invite(session, request, destination, transport, now)
    session.process(SessionInput.SEND_INVITE, now)
    return session


def invite_headers(session: InviteSession) -> list[tuple[str, object]]:
    """Allow, Supported, Require and the session timer of an initial INVITE."""
    settings = session.ctx.settings
    timer = settings.timer
    required = [
        *(["100rel"] if settings.rel100 is Rel100.REQUIRED else []),
        *(["timer"] if timer is not None and timer.required else []),
    ]
    headers: list[tuple[str, object]] = [("Allow", session.ctx.endpoint.config.allow_header)]
    if settings.supported:
        headers.append(("Supported", ", ".join(settings.supported)))
    if required:
        headers.append(("Require", ", ".join(required)))
    if session.timer is not None:
        headers += session.timer.request_headers()
    return headers


@attrs.define(slots=True)
class UacInvite:
    """The INVITE we sent; see the module docstring."""

    provisional_seen: bool = False
    cancel_pending: bool = False  # hung up before any provisional: CANCEL when one comes
    cancel_sent: bool = False  # one CANCEL per INVITE: hanging up again changes nothing
    #: The Reason header of our CANCEL (RFC 3326), when the application gave one.
    cancel_reason: str | None = None
    #: The Authorization lines of the INVITE last sent: its ACKs repeat them (§13.2.2.4).
    ack_credentials: list[tuple[str, str]] = attrs.field(factory=list)
    #: Our ACK for the 2xx, sent again for each retransmission of it (while the INVITE lasts).
    ack: bytes | None = None
    #: Early dialogs of other forks, by To tag.
    forks: dict[str, Dialog] = attrs.field(factory=dict)
    #: The ACK sent for each other fork's 2xx, by To tag.
    fork_acks: dict[str, SentAck] = attrs.field(factory=dict)
    #: The To tag ('' for none) of the unreliable 1xx whose SDP answered our offer.
    early_answer: str | None = None

    def send_invite(
        self, session: InviteSession, request: Request, destination: Address, transport: str, now: float
    ) -> None:
        """Send ``request`` (the INVITE, or the same INVITE again after a 422)."""
        ctx = session.ctx
        self.provisional_seen = False  # a CANCEL waits for a provisional of this INVITE (§9.1)
        tx = ctx.endpoint.send_request(request, destination, transport, now)
        if not isinstance(tx, ClientInviteTransaction):  # pragma: no cover - an INVITE makes one
            raise TypeError("send_request of an INVITE must give an INVITE client transaction")
        session.invite_tx = tx
        session.peer = destination
        self.ack_credentials = credentials_of(request)
        ctx.track(tx, session, Purpose.INVITE, session.dialog)

    # -- responses ---------------------------------------------------------------------------

    def on_response(
        self, session: InviteSession, tx: Transaction[Any], response: Response, now: float
    ) -> None:
        """A response to our INVITE."""
        if tx is not session.invite_tx:
            return  # the INVITE a 422 made us send again has taken over
        code = response.status_code
        if (
            code > 100
            and session.state is not InviteState.DISCONNECTED
            and not (code >= 200 and session.state in (InviteState.CONNECTING, InviteState.CONFIRMED))
        ):  # retransmitted 2xx are not news
            session.ctx.emit(InviteResponseReceived(session, detached(response)))
        with contextlib.suppress(ParseError):  # an unreadable Allow tells us nothing
            session.peer_allow = methods_of(response.allow) or session.peer_allow
        if 200 <= code < 300:
            self._on_2xx(session, tx, response, now)
        elif session.state is InviteState.DISCONNECTED:
            return  # ended already (a provisional after our CANCEL, say): nothing to do
        elif code < 200:
            self._on_1xx(session, tx, response, now)
        elif code in (401, 407) and self._retry_authenticated(session, tx, response, now):
            return
        elif not (code == 422 and self._retry_422(session, tx, response, now)):
            session.end(SessionInput.INVITE_FAILED, code, now)

    def _on_1xx(self, session: InviteSession, tx: Transaction[Any], response: Response, now: float) -> None:
        self.provisional_seen = True
        to_tag = response.to.tag if response.to else None
        code = response.status_code
        leg = self._early_leg(session, tx, response) if to_tag and code > 100 else None
        if leg is not None and session.rel_receiver is not None and is_reliable(response):
            session.rel_receiver.on_1xx(session, leg, tx, response, now)
        elif code > 100 and response.body and _own_leg(session, to_tag):
            self._early_answer(session, response)
        if code > 100 and to_tag:
            session.process(SessionInput.RECV_1XX, now)
            lock_codec(session, now)  # an early UPDATE, if the answer came reliably
        if self.cancel_pending or (session.cause == 488 and not self.cancel_sent):
            # Hung up before any provisional, or the answer in this one is unusable (RFC
            # 3264 §6): the call cannot go on, so it is cancelled, with the cause in a Reason.
            self.cancel_pending = False
            self.send_cancel(session, now)

    def _early_answer(self, session: InviteSession, response: Response) -> None:
        """SDP in an unreliable 1xx (RFC 3261 §13.2.1, RFC 3264): the first SDP from the callee
        is the answer to our offer, whatever response carries it; SDP in later responses of
        the INVITE is not negotiated again. An unusable one (unreadable, no codec in common,
        m-lines that do not match the offer's) marks the call for cancelling (cause 488)."""
        if self.early_answer is not None or session.early_sdp:
            return  # answered already: the same answer again, or one we may not take
        if session.negotiator.state is not NegotiatorState.LOCAL_OFFER:
            return  # we offered nothing (a late offer): an unreliable 1xx cannot offer
        self.early_answer = (response.to.tag if response.to else None) or ""
        if take_answer(session, response.body):
            session.media_updated()  # early media, before the call is answered
        else:
            session.cause, session.cause_text = 488, "Not Acceptable Here"

    def _on_2xx(self, session: InviteSession, tx: Transaction[Any], response: Response, now: float) -> None:
        dialog = session.dialog
        to_tag = response.to.tag if response.to else None
        if dialog.state is not DialogState.NULL and to_tag and to_tag != dialog.remote_tag:
            if dialog.state is not DialogState.EARLY or session.state not in (
                InviteState.CALLING,
                InviteState.EARLY,
            ):
                self._fork_2xx(session, tx, response, now)
                return
            # Rung at one fork, answered at another: the session goes on with the one that answered.
            session.ctx.unroute_dialog(session)
            dialog.adopt(response)
            session.ctx.route_dialog(session)
        elif session.state is InviteState.CONNECTING:
            return  # a retransmitted 2xx while our ACK waits for the application's answer
        elif session.state in (InviteState.CONFIRMED, InviteState.DISCONNECTED):
            if self.ack is not None:  # a retransmitted 2xx: our ACK was lost
                host, port, transport = session.next_hop()
                session.ctx.endpoint.send_stateless_bytes(self.ack, (host, port), transport)
                session.ctx.endpoint.retransmissions.inc("acks_sent")
            return
        elif dialog.state is DialogState.NULL:
            # RFC 3261 §12.1.2: a 2xx without a To tag still makes the dialog (with a null
            # remote tag, which the peer's first request may fill in): ACKed and confirmed.
            dialog.establish(response)
            session.ctx.route_dialog(session)
        else:
            dialog.confirm(response)
        self.release_forks()  # RFC 3261 §13.2.2.4: the other early dialogs are over
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        if self._offer_for_the_application(session, response):
            session.process(SessionInput.RECV_2XX, now)
            session.offers.hold_ack(session, cseq, now)
            if session.timer is not None:
                session.timer.restart(session.timer.granted(response), now)
            return
        answer, agreed = self._negotiate(session, response, now)
        session.process(SessionInput.RECV_2XX, now)
        self.send_ack(session, cseq, answer)
        if agreed:  # else agreed at a 1xx already, or nothing to agree
            session.media_updated()  # before CONFIRMED: a confirmed call's media are known
        session.process(SessionInput.SEND_ACK, now)
        if session.timer is not None:
            session.timer.restart(session.timer.granted(response), now)
        if session.cause == 488:
            session.send_bye(now)
        elif self.cancel_pending or session.bye_pending:
            self.cancel_pending = session.bye_pending = False
            session.send_bye(now)
        else:
            lock_codec(session, now)

    def _offer_for_the_application(self, session: InviteSession, response: Response) -> bool:
        """True when the 2xx carries an offer (we sent none) that the application answers
        itself: the offer is now the negotiator's, waiting."""
        neg = session.negotiator
        if not (session.offers.deferred and response.body and not session.early_sdp):
            return False
        if neg.state is not NegotiatorState.NULL or self.early_answer is not None:
            return False
        try:
            neg.receive_offer(parse_sdp(response.body))
        except (ParseError, SdpNegotiationError):
            return False  # _negotiate finds it unusable too: ACK, then BYE (488)
        return True

    def _negotiate(self, session: InviteSession, response: Response, now: float) -> tuple[bytes | None, bool]:
        """Negotiate with a 2xx: (our answer when the 2xx carried the (late) offer, whether a
        session was agreed now)."""
        neg = session.negotiator
        if session.early_sdp:
            return None, False  # done in a reliable 1xx and its PRACK: an SDP in the 2xx repeats it
        if self.early_answer is not None:
            tag = (response.to.tag if response.to else None) or ""
            if not response.body or tag == self.early_answer or session.cause == 488:
                return None, False  # the INVITE's answer came in a 1xx of this dialog already
            # Rung with early media at one fork, answered at another: that fork's SDP answers
            # our offer again (PJSIP follows the fork that answered, sip_inv.c). An offer
            # exchange still open with the early fork (our UPDATE, or its offer waiting for the
            # application) is moot: that dialog is over, and an answer from it is ignored.
            session.offers.withdraw(session, now)
            if neg.state is NegotiatorState.LOCAL_OFFER:
                session.offers.abandon(session)
            neg.create_offer()
            if take_answer(session, response.body):
                return None, True
            session.cause = 488
            return None, False
        if not response.body:
            if neg.state is NegotiatorState.LOCAL_OFFER:
                neg.cancel_offer()
                session.cause = 488  # an offer went unanswered: nothing to talk over
            return None, False
        if neg.state is NegotiatorState.LOCAL_OFFER:
            if take_answer(session, response.body):
                return None, True
            session.cause = 488
            return None, False
        try:
            if not neg.has_capabilities:  # nothing to answer with: ACK, then BYE
                session.cause = 488
                return None, False
            neg.receive_offer(parse_sdp(response.body))
            return neg.create_answer().serialize(), True
        except (ParseError, SdpNegotiationError):
            session.cause = 488
            return None, False

    def send_ack(self, session: InviteSession, cseq: int, body: bytes | None) -> None:
        """The ACK of a 2xx to the INVITE (``cseq``'s; carrying our answer to a late offer, and
        the INVITE's credentials), kept for resending."""
        endpoint = session.ctx.endpoint
        host, port, transport = session.next_hop()
        ack = session.dialog.create_request(
            "ACK",
            via=endpoint.via(transport),
            cseq=cseq,
            headers=self.ack_credentials,  # §13.2.2.4: the INVITE's credentials again
            body=body or b"",
            content_type=SDP if body else None,
        )
        self.ack = ack.serialize()
        endpoint.send_stateless_bytes(self.ack, (host, port), transport)

    def on_timeout(self, session: InviteSession, timer: Timer, now: float) -> None:
        """No final response: Timer B (408), or none 64*T1 after our CANCEL (487, §9.1)."""
        session.end(SessionInput.INVITE_FAILED, 487 if timer is Timer.GIVE_UP else 408, now)

    def invite_terminated(self, session: InviteSession, now: float, cause: int = 408) -> None:
        """The INVITE transaction is gone: no 2xx can come any more, so the ACKs kept for its
        retransmissions go; a setup still without a usable final response ends now (with
        ``cause``: 503 when a transport failure ended the transaction)."""
        self.ack = None
        self.fork_acks.clear()
        if session.state in (InviteState.CALLING, InviteState.EARLY):
            if cause == 408:  # (a transport failure was logged where it happened)
                session.log.warning("INVITE transaction ended without a usable final response")
            session.end(SessionInput.INVITE_FAILED, cause, now)

    # -- hanging up --------------------------------------------------------------------------

    def hangup(self, session: InviteSession, now: float, reason: str | None = None) -> None:
        """CANCEL the INVITE — once a provisional response came (RFC 3261 §9.1); ``reason`` is
        the value of its Reason header (RFC 3326)."""
        if reason is not None and not self.cancel_sent:
            self.cancel_reason = reason
        if self.provisional_seen:
            self.send_cancel(session, now)
        else:
            self.cancel_pending = True

    def send_cancel(self, session: InviteSession, now: float) -> None:
        """CANCEL the INVITE (once); the transaction gives it up 64*T1 later without an answer."""
        tx = session.invite_tx
        if self.cancel_sent or not isinstance(tx, ClientInviteTransaction) or tx.terminated:
            return
        self.cancel_sent = True
        invite = tx.request
        if (
            invite.from_ is None
            or invite.to is None
            or invite.call_id is None
            or invite.cseq is None
            or invite.top_via is None
        ):
            return
        headers: list[tuple[str, object]] = [("Route", r) for r in invite.route]
        if self.cancel_reason:  # the application's (RFC 3326)
            headers.append(("Reason", self.cancel_reason))
        elif session.cause:  # RFC 3326: why we give up (488: the answer was unusable)
            headers.append(("Reason", f'SIP;cause={session.cause};text="{session.cause_text}"'))
        cancel = make_request(
            "CANCEL",
            invite.uri,
            via=invite.top_via,
            from_=invite.from_,
            to=invite.to,
            call_id=invite.call_id,
            cseq=CSeq(invite.cseq.number, "CANCEL"),
            headers=headers,
        )
        ctx = session.ctx
        cancel_tx = ctx.endpoint.send_request(cancel, tx.peer, tx.transport, now)
        ctx.track(cancel_tx, session, Purpose.CANCEL, session.dialog)

    # -- digest authentication: 401/407 ------------------------------------------------------

    def _retry_authenticated(
        self, session: InviteSession, tx: Transaction[Any], response: Response, now: float
    ) -> bool:
        """RFC 3261 §22.2: the INVITE again with our credentials — same Call-ID, From tag and
        offer, the next CSeq, a new branch (the transaction ACKed the 401/407 itself). Not once
        the call was hung up, nor after an early dialog (a 1xx with a To tag) of this INVITE."""
        if session.dialog.state is not DialogState.NULL or self.cancel_pending or self.cancel_sent:
            return False
        request = session.authenticated_retry(tx, response, session.dialog)
        if request is None:
            return False
        session.log.info("INVITE again with credentials", status=response.status_code)
        self.send_invite(session, request, tx.peer, tx.transport, now)
        return True

    # -- session timers: 422 -----------------------------------------------------------------

    def _retry_422(
        self, session: InviteSession, tx: Transaction[Any], response: Response, now: float
    ) -> bool:
        """RFC 4028 §7.3: send the INVITE again with the interval the 422 asks for; False when
        there is nothing to retry with (no timer, a dialog already early, no higher Min-SE)."""
        timer, dialog, old = session.timer, session.dialog, tx.request
        if (
            timer is None
            or dialog.state is not DialogState.NULL
            or self.cancel_pending
            or self.cancel_sent
            or not timer.raise_interval(response)
            or old.from_ is None
            or old.to is None
            or old.call_id is None
        ):
            return False
        dialog.local_cseq += 1
        endpoint = session.ctx.endpoint
        request = make_request(
            "INVITE",
            old.uri,
            via=endpoint.via(tx.transport),
            from_=old.from_,
            to=old.to,
            call_id=old.call_id,
            cseq=dialog.local_cseq,
            contact=dialog.local_contact,
            headers=[*(("Route", str(r)) for r in old.route), *invite_headers(session)],
            body=old.body,
            content_type=SDP if old.body else None,
        )
        session.log.info("422: INVITE again", session_expires=timer.interval)
        self.send_invite(session, request, tx.peer, tx.transport, now)
        return True

    # -- forks (RFC 3261 §13.2.2.4) ----------------------------------------------------------

    def _early_leg(self, session: InviteSession, tx: Transaction[Any], response: Response) -> Dialog | None:
        """The early dialog a 1xx with a To tag belongs to: the session's own (established by
        the first such 1xx), or, for another fork, a dialog of its own."""
        dialog = session.dialog
        tag = response.to.tag if response.to else None
        if not tag or not response.contact:
            return None
        if dialog.state is DialogState.NULL:
            dialog.establish(response)
            session.ctx.route_dialog(session)
            return dialog
        if tag == dialog.remote_tag:
            return dialog
        if dialog.state is not DialogState.EARLY:
            return None
        fork = self.forks.get(tag)
        if fork is None:
            try:
                fork = Dialog.create_uac(
                    session.ctx.endpoint.factory,
                    tx.request,
                    response,
                    transport=tx.transport,
                    now=dialog.created,  # the INVITE's time: a fork is as old as the call
                    gauge=session.ctx.dialog_states,
                )
            except (RemoteProtocolError, LocalProtocolError) as exc:
                session.log.info("forked 1xx ignored", error=str(exc))
                return None
            fork.add_ref("early fork")
            self.forks[tag] = fork
            session.log.info("early dialog of another fork", remote_tag=tag)
        return fork

    def release_forks(self) -> None:
        """The other early dialogs end; their PRACKs in flight keep them until done."""
        forks = list(self.forks.values())
        self.forks.clear()
        for fork in forks:
            fork.terminate()
            fork.dec_ref("early fork")

    def _fork_2xx(self, session: InviteSession, tx: Transaction[Any], response: Response, now: float) -> None:
        """A 2xx from another fork: ACK it, in a dialog of its own; then keep it as a session of
        its own (``keep_forks``: a :class:`ForkedCall` event) or end it with BYE. Retransmissions
        of that 2xx get the same ACK again, nothing more."""
        tag = response.to.tag if response.to else None
        if not tag:
            return
        ctx = session.ctx
        endpoint = ctx.endpoint
        done = self.fork_acks.get(tag)
        if done is not None:  # a retransmitted 2xx: our ACK was lost
            endpoint.send_stateless_bytes(*done)
            endpoint.retransmissions.inc("acks_sent")
            return
        fork = Dialog.create_uac(
            endpoint.factory,
            tx.request,
            response,
            transport=tx.transport,
            now=session.dialog.created,
            gauge=ctx.dialog_states,
        )
        (host, port), transport = _fork_hop(fork, tx)
        if ctx.settings.keep_forks:
            forked = _forked_session(session, fork, tx, response, now)
            if forked.uac is not None and forked.uac.ack is not None:
                # Its 2xx retransmissions come through our INVITE: the ACK is ours to resend.
                self.fork_acks[tag] = (forked.uac.ack, (host, port), transport)
                forked.uac.ack = None
            return
        fork.add_ref("fork")
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        ack = fork.create_request("ACK", via=endpoint.via(transport), cseq=cseq).serialize()
        endpoint.send_stateless_bytes(ack, (host, port), transport)
        self.fork_acks[tag] = (ack, (host, port), transport)
        bye = fork.create_request("BYE", via=endpoint.via(transport))
        ctx.track(endpoint.send_request(bye, (host, port), transport, now), None, Purpose.FORK_BYE, fork)
        fork.dec_ref("fork")  # the BYE transaction keeps the fork's dialog until it ends


def _own_leg(session: InviteSession, to_tag: str | None) -> bool:
    """True for a response of the session's own dialog (or of none yet): not another fork's."""
    dialog = session.dialog
    return not to_tag or dialog.state is DialogState.NULL or to_tag == dialog.remote_tag


def _fork_hop(fork: Dialog, tx: Transaction[Any]) -> tuple[Address, str]:
    host, port, transport = fork.next_hop()
    return ((host, port) if is_ip(host) else tx.peer), transport


def _forked_session(
    original: InviteSession, fork: Dialog, tx: Transaction[Any], response: Response, now: float
) -> InviteSession:
    """A session of its own for an answering fork: our offer (or its) negotiated afresh."""
    ctx = original.ctx
    forked = ctx.new_session(fork)
    forked.uac = uac = UacInvite(provisional_seen=True)
    forked.peer = tx.peer
    ctx.emit(ForkedCall(forked, original))
    forked.process(SessionInput.SEND_INVITE, now)
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
        if neg.state is NegotiatorState.LOCAL_OFFER:
            neg.cancel_offer()
        forked.cause = 488
    forked.process(SessionInput.RECV_2XX, now)
    uac.ack_credentials = credentials_of(tx.request)
    uac.send_ack(forked, tx.request.cseq.number if tx.request.cseq else 1, answer)
    forked.process(SessionInput.SEND_ACK, now)
    forked.media_updated()
    if ctx.settings.timer is not None:
        forked.timer = SessionTimer(ctx.settings.timer)
        forked.timer.restart(forked.timer.granted(response), now)
    if forked.cause == 488:
        forked.send_bye(now)
    ctx.arm(forked)  # the layer arms the session it routed to: this one is new
    return forked


__all__ = ["SentAck", "UacInvite", "invite_headers", "place_call"]
