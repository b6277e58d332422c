"""The INVITE session's machine as data: states, inputs, effects and the transition table.

Everything that changes an :class:`~invsess.inv.session.InviteSession`'s state is an input of
:data:`TRANSITIONS`, ``(state, input) -> (next state, effect)``, in the style of h2's stream
machine. A key the table lacks is somebody's fault, and the input says whose:

* a request of the **peer** (a BYE, a re-INVITE, an UPDATE, a PRACK) that the current state
  does not admit is refused with the status code the input carries (481, or 500 for a
  re-INVITE, RFC 3261 §14.2) — :class:`RequestRefusedError`;
* a call of the **application** (answer, re-INVITE, UPDATE) the state does not admit is its
  misuse — :class:`~invsess.sip.LocalProtocolError`;
* an input of the **layer**'s own flows that the table lacks is a bug in invsess —
  :class:`SessionTableError`, never blamed on the application.

States and names are PJSIP's (``pjsip_inv_state``). This module knows no I/O and no session.
"""

from __future__ import annotations

import enum

from invsess.errors import InternalError
from invsess.sip import RemoteProtocolError


class InviteState(enum.Enum):
    """``pjsip_inv_state``."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    NULL = "NULL"
    CALLING = "CALLING"
    INCOMING = "INCOMING"
    EARLY = "EARLY"
    CONNECTING = "CONNECTING"
    CONFIRMED = "CONFIRMED"
    DISCONNECTED = "DISCONNECTED"


class Origin(enum.Enum):
    """Where an input comes from, which says whose fault a missing table entry is."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    PEER = "peer"
    APP = "application"
    LAYER = "layer"


class SessionInput(enum.Enum):
    """What moves (or is checked by) the session's table; see the module docstring."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    label: str
    origin: Origin
    refusal: int

    def __new__(cls, label: str, origin: Origin, refusal: int = 0) -> SessionInput:
        member = object.__new__(cls)
        member._value_ = label
        member.label = label
        member.origin = origin
        member.refusal = refusal
        return member

    # Setting up, as the caller (UAC)
    SEND_INVITE = ("send INVITE", Origin.LAYER)
    RECV_1XX = ("receive 1xx", Origin.LAYER)  # a provisional with a To tag
    RECV_2XX = ("receive 2xx", Origin.LAYER)
    SEND_ACK = ("send ACK", Origin.LAYER)
    # Setting up, as the callee (UAS)
    RECV_INVITE = ("receive INVITE", Origin.LAYER)
    SEND_1XX = ("send 1xx", Origin.LAYER)
    SEND_2XX = ("send 2xx", Origin.LAYER)
    RECV_ACK = ("receive ACK", Origin.LAYER)  # the ACK of a 2xx of ours
    # The peer's requests inside the session
    RECV_BYE = ("receive BYE", Origin.PEER, 481)
    RECV_REINVITE = ("receive re-INVITE", Origin.PEER, 500)
    RECV_UPDATE = ("receive UPDATE", Origin.PEER, 481)
    RECV_PRACK = ("receive PRACK", Origin.PEER, 481)
    #: INFO, MESSAGE, NOTIFY ...: passed to the application (RFC 6086 allows INFO in early dialogs)
    RECV_REQUEST = ("receive another request", Origin.PEER, 481)
    # The application's requests
    ANSWER = ("answer", Origin.APP)
    REINVITE = ("send a re-INVITE", Origin.APP)
    UPDATE = ("send an UPDATE", Origin.APP)
    ANSWER_OFFER = ("answer the peer's offer", Origin.APP)  # one it answers itself (deferred)
    SEND_REQUEST = ("send a request in the dialog", Origin.APP)  # INFO, MESSAGE ...
    # Every way to the end
    INVITE_FAILED = ("our INVITE failed", Origin.LAYER)  # 3xx-6xx, Timer B, given up, lost
    REJECT = ("reject the INVITE", Origin.LAYER)  # our 3xx-6xx (or 487 to a CANCEL, 504, ...)
    BYE_DONE = ("our BYE ended", Origin.LAYER)  # its final response, or its timeout
    ACK_TIMEOUT = ("no ACK for our 2xx", Origin.LAYER)  # RFC 3261 §13.3.1.4
    # A request of ours inside the dialog got 408/481 or timed out, a refresh failed, the
    # session timer expired, or an answer was unusable: BYE, and the session ends now.
    DIALOG_FAILED = ("the dialog failed", Origin.LAYER)


class Effect(enum.Enum):
    """What taking a transition does, besides (for all but STAY) setting the state."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    #: Nothing: the input is admitted in this state, the state does not change, no event.
    STAY = "stay"
    #: Set the state and tell the application (SessionStateChanged).
    MOVE = "move"
    #: Confirm the dialog (we sent our 2xx), then MOVE.
    CONFIRM_DIALOG = "confirm the dialog"
    #: DISCONNECTED: stop every timer, end the INVITE if it still runs, terminate the dialog,
    #: and release the session's references once the application has seen the event.
    END = "end"


_I, _IN, _E = InviteState, SessionInput, Effect
_END = (_I.DISCONNECTED, _E.END)

TRANSITIONS: dict[tuple[InviteState, SessionInput], tuple[InviteState, Effect]] = {
    # UAC
    (_I.NULL, _IN.SEND_INVITE): (_I.CALLING, _E.MOVE),
    (_I.CALLING, _IN.RECV_1XX): (_I.EARLY, _E.MOVE),
    (_I.EARLY, _IN.RECV_1XX): (_I.EARLY, _E.MOVE),
    (_I.CALLING, _IN.RECV_2XX): (_I.CONNECTING, _E.MOVE),
    (_I.EARLY, _IN.RECV_2XX): (_I.CONNECTING, _E.MOVE),
    (_I.CONNECTING, _IN.SEND_ACK): (_I.CONFIRMED, _E.MOVE),
    # UAS
    (_I.NULL, _IN.RECV_INVITE): (_I.INCOMING, _E.MOVE),
    (_I.INCOMING, _IN.SEND_1XX): (_I.EARLY, _E.MOVE),
    (_I.EARLY, _IN.SEND_1XX): (_I.EARLY, _E.MOVE),
    (_I.INCOMING, _IN.SEND_2XX): (_I.CONNECTING, _E.CONFIRM_DIALOG),
    (_I.EARLY, _IN.SEND_2XX): (_I.CONNECTING, _E.CONFIRM_DIALOG),
    (_I.CONNECTING, _IN.RECV_ACK): (_I.CONFIRMED, _E.MOVE),
    (_I.CONFIRMED, _IN.RECV_ACK): (_I.CONFIRMED, _E.STAY),  # the ACK of a re-INVITE's 2xx
    # The peer's requests: where they are admitted (elsewhere they are refused)
    (_I.EARLY, _IN.RECV_BYE): _END,  # RFC 3261 §15.1.2 (a callee's INVITE gets 487 too)
    (_I.CONNECTING, _IN.RECV_BYE): _END,  # a BYE that overtook the ACK
    (_I.CONFIRMED, _IN.RECV_BYE): _END,
    (_I.CONFIRMED, _IN.RECV_REINVITE): (_I.CONFIRMED, _E.STAY),  # §14.2: not before the ACK
    (_I.EARLY, _IN.RECV_UPDATE): (_I.EARLY, _E.STAY),  # RFC 3311 §5.2
    (_I.CONNECTING, _IN.RECV_UPDATE): (_I.CONNECTING, _E.STAY),
    (_I.CONFIRMED, _IN.RECV_UPDATE): (_I.CONFIRMED, _E.STAY),
    (_I.EARLY, _IN.RECV_PRACK): (_I.EARLY, _E.STAY),  # RFC 3262: only while the INVITE rings
    (_I.EARLY, _IN.RECV_REQUEST): (_I.EARLY, _E.STAY),
    (_I.CONNECTING, _IN.RECV_REQUEST): (_I.CONNECTING, _E.STAY),
    (_I.CONFIRMED, _IN.RECV_REQUEST): (_I.CONFIRMED, _E.STAY),
    # The application's requests
    (_I.INCOMING, _IN.ANSWER): (_I.INCOMING, _E.STAY),
    (_I.EARLY, _IN.ANSWER): (_I.EARLY, _E.STAY),
    (_I.CONFIRMED, _IN.REINVITE): (_I.CONFIRMED, _E.STAY),
    (_I.EARLY, _IN.UPDATE): (_I.EARLY, _E.STAY),
    (_I.CONFIRMED, _IN.UPDATE): (_I.CONFIRMED, _E.STAY),
    (_I.EARLY, _IN.ANSWER_OFFER): (_I.EARLY, _E.STAY),  # the peer's UPDATE in the early dialog
    (_I.CONNECTING, _IN.ANSWER_OFFER): (_I.CONNECTING, _E.STAY),  # the offer of a 2xx, in our ACK
    (_I.CONFIRMED, _IN.ANSWER_OFFER): (_I.CONFIRMED, _E.STAY),
    (_I.EARLY, _IN.SEND_REQUEST): (_I.EARLY, _E.STAY),
    (_I.CONNECTING, _IN.SEND_REQUEST): (_I.CONNECTING, _E.STAY),
    (_I.CONFIRMED, _IN.SEND_REQUEST): (_I.CONFIRMED, _E.STAY),
    # The ends
    (_I.CALLING, _IN.INVITE_FAILED): _END,
    (_I.EARLY, _IN.INVITE_FAILED): _END,
    (_I.INCOMING, _IN.REJECT): _END,
    (_I.EARLY, _IN.REJECT): _END,
    (_I.CONNECTING, _IN.BYE_DONE): _END,  # after an unusable answer in the ACK
    (_I.CONFIRMED, _IN.BYE_DONE): _END,
    (_I.CONNECTING, _IN.ACK_TIMEOUT): _END,
    (_I.CONFIRMED, _IN.ACK_TIMEOUT): _END,  # the ACK of a re-INVITE's 2xx never came
    (_I.EARLY, _IN.DIALOG_FAILED): _END,  # our UPDATE in the early dialog got 408/481
    (_I.CONNECTING, _IN.DIALOG_FAILED): _END,  # a session timer shorter than the ACK wait
    (_I.CONFIRMED, _IN.DIALOG_FAILED): _END,
}


class SessionTableError(InternalError):
    """The layer fed its own session an input the table lacks: a bug in invsess."""


class RequestRefusedError(RemoteProtocolError):
    """A request of the peer that the session cannot take now; answered with ``status_code``
    (and ``headers``: Retry-After, Min-SE, Unsupported ...) instead of being processed."""

    def __init__(
        self, message: str, status_code: int, *, headers: tuple[tuple[str, str], ...] = (), reason: str = ""
    ) -> None:
        super().__init__(message, status_code=status_code, reason=reason)
        self.headers = headers


__all__ = [
    "TRANSITIONS",
    "Effect",
    "InviteState",
    "Origin",
    "RequestRefusedError",
    "SessionInput",
    "SessionTableError",
]
