"""What a session may use of the layer it lives in: settings, the endpoint, routes and events.

The :class:`SessionContext` is the one object every :class:`~invsess.inv.session.InviteSession`
of a layer points to. It holds the routing tables the layer dispatches with — dialog id ->
session, transaction -> (session, :class:`Purpose`) — and the deadline heap of the sessions'
timers, so that a packet or a timer touches only the session it concerns (never every one).

Routes and heap entries refer to a session through its :class:`SessionHandle`, never directly:
a session's memory goes with its dialog's pool, while a transaction or a heap entry may outlive
it. Releasing a session empties its handle (O(1)); whatever finds an empty handle later knows
the session is gone without touching freed memory.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from invsess.address import uri_host
from invsess.auth import ClientAuth, CredentialStore
from invsess.counters import DialogGauge, StateGauge
from invsess.dialog import Dialog, DialogId, DialogRole, DialogState
from invsess.endpoint import Endpoint
from invsess.inv.events import SessionEvent
from invsess.inv.settings import LayerSettings
from invsess.inv.states import InviteState
from invsess.sdp import SdpNegotiator, SessionDescription
from invsess.sip import NameAddress, parse_uri

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession
    from invsess.transaction import Transaction


#: Distinct Allow sets kept for sharing (a peer cannot make the table grow past this).
_MAX_INTERNED = 256
_interned: dict[frozenset[str], frozenset[str]] = {}


def methods_of(allow: Iterable[str]) -> frozenset[str]:
    """A peer's Allow as a set of method names, shared between the sessions that see the same one
    (almost every peer sends the same list in every call)."""
    methods = frozenset(m.upper() for m in allow)
    shared = _interned.get(methods)
    if shared is not None:
        return shared
    if len(_interned) < _MAX_INTERNED:
        _interned[methods] = methods
    return methods


class Purpose(enum.Enum):
    """What a transaction tracked by the layer does for its session."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    INVITE = "INVITE"  # the initial INVITE, either way
    REINVITE = "re-INVITE"  # ours
    UPDATE = "UPDATE"  # ours
    BYE = "BYE"  # ours
    CANCEL = "CANCEL"  # ours
    PRACK = "PRACK"  # ours
    REQUEST = "request"  # ours, sent by the application (INFO, MESSAGE, ...)
    FORK_BYE = "BYE of a fork"  # the BYE ending a second fork's 2xx (no session of its own)
    RECEIVED = "received"  # a request of the peer inside the dialog (it keeps the dialog alive)


class SessionHandle:
    """The layer's reference to one session; emptied (``session = None``) when it is released.

    ``deadline`` is the session's timer as last pushed on the heap: a heap entry whose deadline
    differs is stale and skipped (lazy invalidation).
    """

    __slots__ = ("deadline", "session")

    def __init__(self, session: InviteSession) -> None:
        self.session: InviteSession | None = session
        self.deadline: float | None = None


@attrs.define(slots=True)
class Route:
    """A transaction the layer tracks: for which session (if still there), why, and which
    dialog it keeps alive while it runs (the dialog's transaction count)."""

    handle: SessionHandle | None
    purpose: Purpose
    dialog: Dialog


class SessionContext:
    """The layer's state that sessions use; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        local_sdp: SessionDescription | None,
        settings: LayerSettings,
        session_class: type[InviteSession],
        credentials: CredentialStore | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.session_class = session_class
        self.local_sdp = local_sdp
        self.settings = settings
        self.random = random.Random(endpoint.config.seed)  # noqa: S311 - back-off jitter, seeded for replay
        self.routes: dict[Transaction[Any], Route] = {}
        self.dialogs: dict[DialogId, SessionHandle] = {}
        self.handles: dict[SessionHandle, None] = {}  # live sessions, in creation order
        self.events: deque[tuple[SessionEvent, Callable[[], None] | None]] = deque()
        self._heap: list[tuple[float, int, SessionHandle]] = []
        self._serial = 0
        self._contacts: dict[tuple[str, tuple[str, int]], NameAddress] = {}
        # Each Contact's text, written once (every 1xx/2xx of ours carries one), by id(): the
        # entry keeps the object alive, so the id stays its own.
        self._contact_texts: dict[int, tuple[NameAddress, str]] = {}
        self._local_uris: dict[tuple[str, tuple[str, int]], str] = {}
        #: Usernames and passwords by realm, for the 401/407 our requests get (mutable: a
        #: registration adds its own, so that calls through the same proxy use them too).
        self.credentials = credentials if credentials is not None else CredentialStore()
        #: Nonce counts and stale retries, shared by the layer's sessions (RFC 7616 §3.4).
        self.auth = ClientAuth(self.credentials)
        # Live sessions and dialogs by state, kept on each transition (docs/monitoring.md).
        self.session_states = endpoint.counters.add(
            StateGauge(
                "inv",
                InviteState,
                pattern="sessions_%s",
                created="sessions_created",
                destroyed="sessions_released",
                metric="invsess_sessions",
                documentation="INVITE sessions, by state",
                gone="released",
            )
        )
        self.dialog_states: DialogGauge[DialogState] = endpoint.counters.add(
            DialogGauge(
                "dialog",
                DialogState,
                pattern="%s_dialogs",
                created="processed_dialogs",
                destroyed="destroyed_dialogs",
                metric="invsess_dialogs",
                documentation="Dialogs, by state",
            )
        )

    def new_session(self, dialog: Dialog, local_sdp: SessionDescription | None = None) -> InviteSession:
        """A session allocated from ``dialog``'s pool, holding a dialog session count and its
        own internal reference; reachable by dialog id once the dialog has its remote tag.
        Its negotiator starts from ``local_sdp`` (this call's SDP), else the layer's."""
        negotiator = SdpNegotiator(
            local_sdp or self.local_sdp, self.endpoint.factory, name=f"sdp-{dialog.call_id}"
        )
        session = dialog.pool.alloc(self.session_class, self, dialog, negotiator)
        dialog.add_ref("inv-session")
        session.add_ref("inv-session")
        self.handles[session.handle] = None
        self.session_states.added(session.state)
        if dialog.remote_tag or dialog.role is DialogRole.UAS:
            self.route_dialog(session)
        return session

    # -- routes ------------------------------------------------------------------------------

    def track(
        self, tx: Transaction[Any], session: InviteSession | None, purpose: Purpose, dialog: Dialog
    ) -> None:
        """Route ``tx``'s events to ``session`` for ``purpose``; it keeps ``dialog`` alive."""
        self.routes[tx] = Route(session.handle if session is not None else None, purpose, dialog)
        dialog.inc_tsx()

    def route_dialog(self, session: InviteSession) -> None:
        """In-dialog requests for the session's dialog id reach it from now on."""
        self.dialogs[session.dialog.id] = session.handle
        self.endpoint.register_dialog(session.dialog.id)

    def unroute_dialog(self, session: InviteSession) -> None:
        """In-dialog requests for the session's dialog id get 481 again."""
        dialog_id = session.dialog.id
        if self.dialogs.get(dialog_id) is session.handle:
            del self.dialogs[dialog_id]
        self.endpoint.unregister_dialog(dialog_id)

    def emit(self, event: SessionEvent, after: Callable[[], None] | None = None) -> None:
        """Queue ``event`` for the application; ``after`` runs once it has been read."""
        self.events.append((event, after))

    # -- timers ------------------------------------------------------------------------------

    def arm(self, session: InviteSession) -> None:
        """Push the session's next deadline on the heap, if it changed (after any call into it)."""
        handle = session.handle
        deadline = session.next_deadline()
        if deadline != handle.deadline:
            handle.deadline = deadline
            if deadline is not None:
                self._serial += 1
                heapq.heappush(self._heap, (deadline, self._serial, handle))

    def next_deadline(self) -> float | None:
        """The earliest live session deadline (stale heap entries are dropped on the way)."""
        heap = self._heap
        while heap:
            deadline, _, handle = heap[0]
            if handle.session is None or handle.deadline != deadline:
                heapq.heappop(heap)
                continue
            return deadline
        return None

    def due(self, now: float) -> list[InviteSession]:
        """Pop the sessions whose deadline is ``now`` or earlier (each once)."""
        heap = self._heap
        out: list[InviteSession] = []
        while heap and heap[0][0] <= now:
            deadline, _, handle = heapq.heappop(heap)
            if handle.session is not None and handle.deadline == deadline:
                handle.deadline = None  # re-armed after it has run
                out.append(handle.session)
        return out

    # -- helpers -----------------------------------------------------------------------------

    def contact(self, transport: str) -> NameAddress:
        """Our Contact for ``transport``: one (immutable) object per listener, which every
        dialog shares rather than each keeping a copy."""
        transport = transport.lower()
        listener = self.endpoint.listeners.get(transport, ("127.0.0.1", 5060))
        contact = self._contacts.get((transport, listener))
        if contact is None:
            host, port = listener
            param = "" if transport == "udp" else f";transport={transport}"
            contact = NameAddress(parse_uri(f"sip:{self.settings.user}@{uri_host(host)}:{port}{param}"))
            self._contacts[(transport, listener)] = contact
        return contact

    def local_uri_text(self, transport: str) -> str:
        """Our From URI without tag, ``<sip:user@host:port>``, for ``transport``'s listener
        (written once per listener: every call we place carries it)."""
        transport = transport.lower()
        listener = self.endpoint.listeners.get(transport, ("127.0.0.1", 5060))
        key = (transport, listener)
        text = self._local_uris.get(key)
        if text is None:
            host, port = listener
            text = str(NameAddress(parse_uri(f"sip:{self.settings.user}@{uri_host(host)}:{port}")))
            self._local_uris[key] = text
        return text

    def contact_text(self, contact: NameAddress) -> str:
        """``str(contact)``, written once per Contact of ours (:meth:`contact` makes few)."""
        kept = self._contact_texts.get(id(contact))
        if kept is not None:
            return kept[1]
        text = str(contact)
        if len(self._contact_texts) < _MAX_INTERNED:
            self._contact_texts[id(contact)] = (contact, text)
        return text


__all__ = ["Purpose", "Route", "SessionContext", "SessionHandle", "methods_of"]
