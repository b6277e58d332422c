"""INVITE sessions (PJSIP's ``sip_inv.c``) over the endpoint: a layer that routes, sessions that
own their behaviour (a transition table with effects), and the parts sessions are made of.

* :mod:`~invsess.inv.layer` — :class:`SessionLayer`: the node the drivers run; routing only.
* :mod:`~invsess.inv.states` — states, inputs, effects and the table.
* :mod:`~invsess.inv.session` — :class:`InviteSession`: the table driven, the memory rules.
* :mod:`~invsess.inv.uac`, :mod:`~invsess.inv.uas` — the INVITE sent, the INVITE answered.
* :mod:`~invsess.inv.offer` — re-INVITE and UPDATE, both ways; offers the application answers.
* :mod:`~invsess.inv.answer` — what the application answers an INVITE with.
* :mod:`~invsess.inv.timer` — session timers (RFC 4028); :mod:`~invsess.inv.prack` — 100rel.
* :mod:`~invsess.inv.context`, :mod:`~invsess.inv.settings`, :mod:`~invsess.inv.events`.
"""

from invsess.inv.answer import Answer
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
from invsess.inv.layer import SessionLayer
from invsess.inv.session import InviteSession
from invsess.inv.settings import LayerSettings, Rel100, option_tags
from invsess.inv.states import (
    TRANSITIONS,
    Effect,
    InviteState,
    Origin,
    RequestRefusedError,
    SessionInput,
    SessionTableError,
)
from invsess.inv.timer import TimerSettings

__all__ = [
    "TRANSITIONS",
    "Answer",
    "DialogRequestReceived",
    "DialogResponseReceived",
    "Effect",
    "ForkedCall",
    "IncomingCall",
    "InviteResponseReceived",
    "OfferKind",
    "OfferReceived",
    "OfferRefused",
    "OfferWithdrawn",
    "InviteSession",
    "InviteState",
    "LayerSettings",
    "MediaUpdated",
    "Origin",
    "Rel100",
    "RequestRefusedError",
    "SessionEvent",
    "SessionInput",
    "SessionLayer",
    "SessionRefreshed",
    "SessionStateChanged",
    "SessionTableError",
    "TimerSettings",
    "option_tags",
]
