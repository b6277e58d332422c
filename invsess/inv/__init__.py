"""INVITE sessions: the state machine (``session``), the flows over an endpoint (``layer``),
session timers (``timer``, RFC 4028) and reliable provisional responses (``prack``, RFC 3262)."""

from invsess.inv.core import option_tags
from invsess.inv.layer import (
    ForkedCall,
    IncomingCall,
    MediaUpdated,
    SessionEvent,
    SessionLayer,
    SessionStateChanged,
)
from invsess.inv.prack import Rel100
from invsess.inv.session import TRANSITIONS, InviteSession, InviteState
from invsess.inv.timer import TimerSettings

__all__ = [
    "TRANSITIONS",
    "ForkedCall",
    "IncomingCall",
    "InviteSession",
    "InviteState",
    "MediaUpdated",
    "Rel100",
    "SessionEvent",
    "SessionLayer",
    "SessionStateChanged",
    "TimerSettings",
    "option_tags",
]
