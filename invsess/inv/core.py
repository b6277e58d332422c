"""What every flow of the session layer stands on: its state, and the helpers that send, set
states and release. :class:`~invsess.inv.layer.SessionLayer` is this plus the flows (the core
INVITE ones in :mod:`invsess.inv.layer`, the extensions in the ``flows_*`` modules). Sans-IO."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

from invsess.dialog import Dialog, DialogState
from invsess.endpoint import Endpoint
from invsess.endpoint.routing import is_ip
from invsess.inv.events import MediaUpdated, SessionEvent, SessionStateChanged
from invsess.inv.prack import Rel100
from invsess.inv.session import InviteSession, InviteState
from invsess.inv.timer import (
    TimerSettings,
    response_headers,
)
from invsess.sdp import SdpNegotiationError, SdpNegotiator, SessionDescription
from invsess.sip import (
    CSeq,
    NameAddress,
    Request,
    Response,
    make_request,
    make_response,
    parse_uri,
)
from invsess.transaction import (
    ClientInviteTransaction,
    ServerInviteTransaction,
    Transaction,
)

SDP = "application/sdp"
Address = tuple[str, int]


class LayerCore:
    """The session layer's state and shared helpers (see the module docstring)."""

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
        #: The extensions this layer implements (and says so in Supported).
        self.supported = option_tags(timer, self.rel100)
        cfg = endpoint.config
        missing = [f"supported: {tag!r}" for tag in self.supported if tag not in cfg.supported]
        if "100rel" in self.supported and "PRACK" not in cfg.allow:
            missing.append("allow: 'PRACK'")
        if missing:
            raise ValueError(f"the endpoint's EndpointConfig lacks {', '.join(missing)}")
        self._random = random.Random(endpoint.config.seed)  # noqa: S311 - back-off jitter, seeded for replay
        self._tx: dict[Transaction, tuple[Any, str, Dialog]] = {}  # owner None: session released
        self._by_dialog: dict[tuple[str, str, str], InviteSession] = {}
        self._sessions: list[InviteSession] = []
        self._events: deque[tuple[SessionEvent, Callable[[], None] | None]] = deque()
        #: INVITEs we CANCELled, with the time to give up waiting for their final response.
        self._abandoned: list[tuple[float, ClientInviteTransaction]] = []
        self._after_event: Callable[[], None] | None = None

    def _track(self, tx: Transaction, owner: Any, purpose: str, dialog: Dialog) -> None:
        self._tx[tx] = (owner, purpose, dialog)
        dialog.inc_tsx()

    def _set_state(self, session: InviteSession, event: str) -> None:
        old, new = session.go(event)
        self._events.append((SessionStateChanged(session, old, new, session.cause), None))

    def _media_updated(self, session: InviteSession) -> None:
        neg = session.negotiator
        if neg.active_local is not None and neg.active_remote is not None:
            self._events.append((MediaUpdated(session, neg.active_local, neg.active_remote), None))

    def _register(self, session: InviteSession) -> None:
        self._by_dialog[session.dialog.id] = session
        self.endpoint.register_dialog(session.dialog.id)

    def _unregister(self, session: InviteSession) -> None:
        dialog_id = session.dialog.id
        if self._by_dialog.get(dialog_id) is session:
            del self._by_dialog[dialog_id]
        self.endpoint.unregister_dialog(dialog_id)

    def _new_session(self, dialog: Dialog, role: str) -> InviteSession:
        negotiator = SdpNegotiator(self.local_sdp, self.endpoint.factory, name=f"sdp-{dialog.call_id}")
        session = dialog.pool.alloc(InviteSession, dialog, negotiator, role)
        dialog.add_ref("inv-session")
        session.add_ref("inv-session")
        self._sessions.append(session)
        if dialog.remote_tag or role == "UAS":
            self._register(session)
        return session

    def _disconnect(self, session: InviteSession, cause: int, now: float) -> None:
        if session.state is InviteState.DISCONNECTED:
            return
        session.cause = session.cause or cause
        event = "BYE" if session.can("BYE") and cause == 200 else "timeout" if cause == 408 else "failure"
        if not session.can(event):
            event = "failure" if session.can("failure") else "BYE"
        old, new = session.go(event)
        session.uas_2xx = None
        session.uas_2xx_next = session.uas_ack_deadline = session.retry_at = None
        tx = session.invite_tx
        if (
            isinstance(tx, ClientInviteTransaction)
            and tx.state.name == "PROCEEDING"  # a provisional came, no final response yet
            and session.role == "UAC"
        ):
            # Ended before the INVITE had its final response (a BYE on the early dialog, a
            # 408/481 to our early UPDATE): CANCEL it, so that it ends too (§9.1).
            self._send_cancel(session, now)
        if (
            session.role == "UAS"
            and isinstance(tx, ServerInviteTransaction)
            and tx.state.name == "PROCEEDING"
            and not tx.terminated
        ):
            # Ended before any final response (a 408/481 to our request in the early dialog,
            # say): the INVITE still gets one — a callee may not BYE an early dialog (§15).
            self.endpoint.respond(tx, self._uas_response(session, tx.request, 500, "Session Ended"), now)
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

    def _release_forks(self, session: InviteSession) -> None:
        """The session's other early dialogs end; their PRACKs in flight keep them until done."""
        forks = list(session.forks.values())
        session.forks.clear()
        for fork in forks:
            fork.terminate()
            fork.dec_ref("early fork")

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
            (session.role == "UAS" and session.state in (InviteState.INCOMING, InviteState.EARLY))
            or session.bye_sent
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
        # RFC 3261 §9.1: if no final response comes within 64*T1, the INVITE is given up.
        self._abandoned.append((now + 64 * self.endpoint.config.timers.t1, tx))
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

    def _give_up_invites(self, now: float) -> None:
        """The INVITEs still without a final response 64*T1 after their CANCEL: their session
        (if still there) ends 487 and their transaction is terminated — whatever became of the
        session in between, nothing is left waiting for ever."""
        due = [item for item in self._abandoned if item[0] <= now]
        if not due:
            return
        self._abandoned = [item for item in self._abandoned if item[0] > now]
        for _, tx in due:
            if tx.terminated:
                continue
            owner = self._tx.get(tx)
            if owner is not None and owner[0] is not None:
                self._disconnect(owner[0], 487, now)
            self.endpoint.terminate(tx, "cancelled: no final response within 64*T1")

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

    def _send_invite(
        self, session: InviteSession, request: Request, destination: Address, transport: str, now: float
    ) -> None:
        tx = self.endpoint.send_request(request, destination, transport, now)
        if not isinstance(tx, ClientInviteTransaction):  # pragma: no cover - an INVITE makes one
            raise TypeError("send_request of an INVITE must give an INVITE client transaction")
        session.invite_tx = tx
        self._track(tx, session, "invite", session.dialog)

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
        return NameAddress(parse_uri(f"sip:{self.user}@{host_in_uri(host)}:{port}{param}"))

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
            self._disconnect(session, 488, now)
            return None


def option_tags(timer: TimerSettings | None, rel100: Rel100 | str) -> tuple[str, ...]:
    """The option tags a session layer with these settings implements: what its endpoint's
    ``supported`` must list (and "100rel" among them means PRACK must be allowed too)."""
    return (
        *(("100rel",) if Rel100(rel100) is not Rel100.OFF else ()),
        *(("timer",) if timer is not None else ()),
    )


def host_in_uri(host: str) -> str:
    """An IPv6 address in brackets, as URIs write it."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
