"""What a :class:`~invsess.inv.layer.SessionLayer` tells the application (``next_event``).

Events are named in the past tense and frozen; a session in an event is the application's to
read until it reads the next event (hold references to keep it longer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from invsess.inv.states import InviteState
from invsess.sdp import SessionDescription, parse_sdp
from invsess.sip import Request
from invsess.transaction import RequestReceived

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession


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
    """An offer/answer exchange completed: ``local`` and ``remote`` are the SDPs agreed then.

    The event carries the agreed SDPs as bytes (``local_sdp``, ``remote_sdp``, as sent and
    received) and parses them when ``local`` or ``remote`` is read. ``generation`` counts the
    session's negotiations: it equals ``session.negotiator.generation`` while this agreement is
    the one in force.
    """

    session: InviteSession
    local_sdp: bytes
    remote_sdp: bytes
    generation: int

    @property
    def local(self) -> SessionDescription:
        """Our side of the agreement."""
        return parse_sdp(self.local_sdp)

    @property
    def remote(self) -> SessionDescription:
        """The peer's side of the agreement."""
        return parse_sdp(self.remote_sdp)


SessionEvent = IncomingCall | SessionStateChanged | MediaUpdated | ForkedCall | RequestReceived

__all__ = ["ForkedCall", "IncomingCall", "MediaUpdated", "SessionEvent", "SessionStateChanged"]
