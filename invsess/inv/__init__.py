"""INVITE sessions: the state machine (``session``) and the flows over an endpoint (``layer``)."""

from invsess.inv.layer import IncomingCall, MediaUpdated, SessionEvent, SessionLayer, SessionStateChanged
from invsess.inv.session import TRANSITIONS, InviteSession, InviteState

__all__ = [
    "TRANSITIONS",
    "IncomingCall",
    "InviteSession",
    "InviteState",
    "MediaUpdated",
    "SessionEvent",
    "SessionLayer",
    "SessionStateChanged",
]
