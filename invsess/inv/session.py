"""The INVITE session: PJSIP's states as a table, and the memory rules of ``sip_inv.c``.

An :class:`InviteSession` is allocated *from its dialog's pool*. It holds one dialog session
count and one internal reference; both are dropped once the application has seen the
DISCONNECTED event (the pull-model form of "after the state callback"). An application that
keeps the session must hold its own references and drop them session first, dialog second;
the other order leaves it holding freed memory, which MALLOC_DEBUG turns into an immediate
``UseAfterFreeError`` naming the Call-ID, the tags and the state at the time of the free.

This module owns the states and the transition table; :mod:`invsess.inv.layer` runs the flows.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from invsess.memory import RefCounted
from invsess.sip.errors import LocalProtocolError

if TYPE_CHECKING:
    from invsess.dialog import Dialog
    from invsess.inv.prack import ReliableReceiver, ReliableSender
    from invsess.inv.timer import SessionTimer, TimerDecision
    from invsess.sdp import SdpNegotiator
    from invsess.transaction import ClientInviteTransaction, ServerInviteTransaction


class InviteState(enum.Enum):
    """``pjsip_inv_state``."""

    NULL = "NULL"
    CALLING = "CALLING"
    INCOMING = "INCOMING"
    EARLY = "EARLY"
    CONNECTING = "CONNECTING"
    CONFIRMED = "CONFIRMED"
    DISCONNECTED = "DISCONNECTED"


_I = InviteState
_BEFORE_ANSWER = (_I.CALLING, _I.INCOMING, _I.EARLY, _I.CONNECTING, _I.CONFIRMED)

TRANSITIONS: dict[tuple[InviteState, str], InviteState] = {
    # UAC
    (_I.NULL, "send INVITE"): _I.CALLING,
    (_I.CALLING, "receive 1xx"): _I.EARLY,
    (_I.EARLY, "receive 1xx"): _I.EARLY,
    (_I.CALLING, "receive 2xx"): _I.CONNECTING,
    (_I.EARLY, "receive 2xx"): _I.CONNECTING,
    (_I.CONNECTING, "send ACK"): _I.CONFIRMED,
    # UAS
    (_I.NULL, "receive INVITE"): _I.INCOMING,
    (_I.INCOMING, "send 1xx"): _I.EARLY,
    (_I.EARLY, "send 1xx"): _I.EARLY,
    (_I.INCOMING, "send 2xx"): _I.CONNECTING,
    (_I.EARLY, "send 2xx"): _I.CONNECTING,
    (_I.CONNECTING, "receive ACK"): _I.CONFIRMED,
    # Both: every way to the end.
    **{(s, "failure"): _I.DISCONNECTED for s in _BEFORE_ANSWER},
    **{(s, "BYE"): _I.DISCONNECTED for s in (_I.CONNECTING, _I.CONFIRMED, _I.EARLY)},
    # 408s: the INVITE's Timer B (CALLING), no ACK for our 2xx (CONNECTING), an in-dialog
    # request timing out or a session timer expiring (CONFIRMED). Once a provisional came, no
    # timer of ours runs until the final response, and a UAS has none before it answers.
    **{(s, "timeout"): _I.DISCONNECTED for s in (_I.CALLING, _I.CONNECTING, _I.CONFIRMED)},
}


class InviteSession(RefCounted):
    """One INVITE session; made by :class:`~invsess.inv.layer.SessionLayer`, never directly."""

    __slots__ = (
        "ack_wire",
        "bye_pending",
        "bye_sent",
        "cancel_pending",
        "cancel_sent",
        "cause",
        "cause_text",
        "dialog",
        "early_sdp",
        "fork_acks",
        "forks",
        "invite_tx",
        "log",
        "negotiator",
        "peer_allow",
        "pending_reinvite",
        "pending_timer",
        "provisional_seen",
        "rel_receiver",
        "rel_sender",
        "retry_at",
        "retry_method",
        "role",
        "state",
        "timer",
        "uas_2xx",
        "uas_2xx_interval",
        "uas_2xx_next",
        "uas_ack_deadline",
    )
    ref_label: ClassVar[str] = "session reference count"
    TRANSITIONS: ClassVar[dict[tuple[InviteState, str], InviteState]] = TRANSITIONS

    def __init__(self, dialog: Dialog, negotiator: SdpNegotiator, role: str) -> None:
        super().__init__()
        self.dialog = dialog
        self.negotiator = negotiator
        self.role = role  # "UAC" or "UAS"
        self.state = _I.NULL
        self.cause: int | None = None
        self.cause_text = "session ended"  # the text of the Reason header of our BYE
        self.invite_tx: ClientInviteTransaction | ServerInviteTransaction | None = None
        self.provisional_seen = False
        self.cancel_pending = False
        self.cancel_sent = False  # one CANCEL per INVITE: hanging up again changes nothing
        self.bye_pending = False
        self.bye_sent = False
        self.pending_reinvite: Any = None  # the client transaction of our re-INVITE in progress
        self.retry_at: float | None = None  # 491 back-off (RFC 3261 §14.1)
        self.retry_method = "INVITE"  # what to send again when retry_at comes: INVITE or UPDATE
        self.ack_wire: bytes | None = None  # our ACK for the 2xx, re-sent on 2xx retransmissions
        self.uas_2xx: bytes | None = None  # our 2xx, retransmitted until the ACK (§13.3.1.4)
        self.uas_2xx_next: float | None = None
        self.uas_2xx_interval = 0.0
        self.uas_ack_deadline: float | None = None
        self.peer_allow: tuple[str, ...] = ()  # the peer's Allow: may a refresh be an UPDATE?
        self.timer: SessionTimer | None = None  # RFC 4028, when this layer does session timers
        self.pending_timer: TimerDecision | None = None  # agreed for the 2xx we have yet to send
        self.rel_sender: ReliableSender | None = None  # UAS: this INVITE's 1xx go reliably
        self.rel_receiver: ReliableReceiver | None = None  # UAC: we PRACK reliable 1xx
        self.early_sdp = False  # the INVITE's offer/answer went in a reliable 1xx (or its PRACK)
        self.forks: dict[str, Dialog] = {}  # UAC: early dialogs of other forks, by To tag
        # UAC: the ACK sent for each other fork's 2xx (wire, destination, transport), by To tag
        self.fork_acks: dict[str, tuple[bytes, tuple[str, int], str]] = {}
        self.log = structlog.get_logger("invsess.inv").bind(
            call_id=dialog.call_id, local_tag=dialog.local_tag, remote_tag=dialog.remote_tag, role=role
        )

    def __repr__(self) -> str:
        return f"<InviteSession {self.role} {self.dialog.call_id} {self.state.name}>"

    @property
    def call_id(self) -> str:
        """The Call-ID of the dialog."""
        return self.dialog.call_id

    def go(self, event: str) -> tuple[InviteState, InviteState]:
        """Take a transition of the table; returns (old, new). Unknown ones are our bugs."""
        nxt = self.TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise LocalProtocolError(f"invite session: no transition for {event!r} in {self.state.name}")
        old, self.state = self.state, nxt
        self.log = self.log.bind(state=nxt.name, remote_tag=self.dialog.remote_tag)
        self.log.info("session state", old=old.name, new=nxt.name, cause=self.cause)
        return old, nxt

    def can(self, event: str) -> bool:
        """True if the table has ``event`` in the current state."""
        return (self.state, event) in self.TRANSITIONS

    def next_deadline(self) -> float | None:
        """The session's own timers: 2xx and reliable 1xx retransmission, ACK wait, 491 retry,
        session refresh and expiry."""
        due = [
            t
            for t in (
                self.uas_2xx_next,
                self.uas_ack_deadline,
                self.retry_at,
                self.timer.next_deadline() if self.timer is not None else None,
                self.rel_sender.next_deadline() if self.rel_sender is not None else None,
            )
            if t is not None
        ]
        return min(due) if due else None

    def _on_last_ref(self, reason: str) -> None:
        # The session's own pools go now; its memory goes with the dialog's pool.
        self.negotiator.release()
