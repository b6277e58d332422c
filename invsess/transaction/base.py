"""What all four transaction machines share: keys, inputs, timers, outputs, pool and life cycle.

A transaction never does I/O and never reads a clock: it is fed messages and ``now``, and it
queues bytes to send (retransmitted from the same bytes), timer deadlines, and events for the
transaction user. It owns a pool, released exactly once when it reaches TERMINATED.

Each machine is a table ``(state, TxInput) -> next state``; an input its table lacks in the
current state is a bug of the caller (the endpoint screens what the peer sends before it gets
here), raised as :class:`TransactionTableError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from invsess.address import Address
from invsess.errors import InternalError
from invsess.memory import Buffer, Pool
from invsess.sip import Request, Response
from invsess.transaction.events import TransactionTerminated

if TYPE_CHECKING:
    from invsess.transaction.timers import TimerConfig

MAGIC_COOKIE = "z9hG4bK"
#: How the terminated reason of a transaction ended by a transport failure starts (RFC 3261
#: §8.1.3.1: its transaction user treats it as a 503).
TRANSPORT_ERROR = "transport error"
RELIABLE = frozenset({"tcp", "tls", "ws", "wss", "sctp"})


class Role(enum.Enum):
    """Which side of the transaction we are."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    CLIENT = "client"
    SERVER = "server"


class Timer(enum.StrEnum):
    """The transaction timers of RFC 3261 §17 and RFC 6026, by their RFC names.

    A ``StrEnum``: ``TransactionTimedOut(...).timer == "B"`` reads as the RFC does.
    """

    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    #: §17.2.1: the server INVITE transaction sends 100 Trying itself when the TU is silent.
    TRYING = "100"
    #: §9.1: an INVITE still without a final response 64*T1 after its CANCEL is given up.
    GIVE_UP = "give-up"


class TxInput(enum.Enum):
    """What a transaction table reacts to: messages, timers, transport failures."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    RECV_1XX = "receive 1xx"
    RECV_2XX = "receive 2xx"
    RECV_FAILURE = "receive 3xx-6xx"
    SEND_1XX = "send 1xx"
    SEND_2XX = "send 2xx"
    SEND_FAILURE = "send 3xx-6xx"
    REQUEST = "request retransmission"
    ACK = "ACK"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_TRYING = "timer 100"
    TIMER_GIVE_UP = "give-up timer"
    TRANSPORT_ERROR = "transport error"
    #: Ended from outside: the endpoint closes, or the transaction user gives up on it.
    TERMINATE = "terminate"


#: The input a timer's expiry is.
TIMER_INPUTS: dict[Timer, TxInput] = {timer: TxInput[f"TIMER_{timer.name}"] for timer in Timer}


class TransactionTableError(InternalError):
    """A transaction was fed an input its table does not have in its state: our bug."""


class Outgoing(NamedTuple):
    """Bytes to send, where, and over which transport (a named tuple: one per datagram)."""

    data: bytes
    destination: Address
    transport: str


class TransactionKey(NamedTuple):
    """RFC 3261 §17.1.3 / §17.2.3 matching key (branch-based, or RFC 2543 fallback).

    A named tuple: looked up in the endpoint's tables several times per message, and a tuple
    hashes and compares in C."""

    branch: str
    sent_by: str
    method: str


def is_rfc3261_branch(branch: str | None) -> bool:
    """True when the branch carries the RFC 3261 magic cookie (and something after it)."""
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)


StateT = TypeVar("StateT", bound=enum.Enum)


class TransactionObserver(Protocol):
    """Told of a transaction's life as it happens (the endpoint's counters): O(1) each time."""

    def created(self, tx: Transaction[Any]) -> None:
        """``tx`` was made, in its first state."""

    def transition(self, tx: Transaction[Any], old: Any, event: TxInput, new: Any) -> None:
        """``tx`` took ``event`` from ``old`` to ``new`` (often the same state)."""


def terminating_table(
    states: type[StateT], table: Mapping[tuple[StateT, TxInput], StateT]
) -> dict[tuple[StateT, TxInput], StateT]:
    """``table`` plus TERMINATE from every live state: anything may be ended from outside."""
    end = states["TERMINATED"]
    return {**table, **{(s, TxInput.TERMINATE): end for s in states if s is not end}}


class Transaction(Generic[StateT]):
    """Base of the four machines. Subclasses define their state enum, ``TRANSITIONS`` and inputs."""

    role: ClassVar[Role]
    #: Subclasses: ``(state, input) -> next state``.
    TRANSITIONS: ClassVar[Mapping[tuple[Any, TxInput], Any]]
    #: Subclasses: their TERMINATED state.
    END: ClassVar[enum.Enum]
    #: Subclasses: the state a new transaction starts in.
    INITIAL: ClassVar[enum.Enum]

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        *,
        pool: Pool,
        transport: str,
        peer: Address,
        timers: TimerConfig,
        now: float,
        sink: Callable[[Outgoing], None],
        on_event: Callable[[Any], None],
        observer: TransactionObserver | None = None,
    ) -> None:
        self.key = key
        self.request = request
        self.pool = pool
        self.transport = transport.lower()
        self.reliable = self.transport in RELIABLE
        self.peer = peer
        self.timers = timers
        self.created = now
        self._sink = sink
        self._on_event = on_event
        self._deadlines: dict[Timer, float] = {}
        self._intervals: dict[Timer, float] = {}
        self.terminated_reason: str | None = None
        #: True once TERMINATED (the endpoint then forgets it and its pool is released).
        self.terminated = False
        self.state: StateT = self.INITIAL  # type: ignore[assignment]  # each machine's own
        #: The deadline of this transaction's entry on its endpoint's timer heap (the endpoint
        #: pushes a new entry only when the deadline changed; None: no valid entry).
        self.heap_deadline: float | None = None
        self._observer = observer
        if observer is not None:
            observer.created(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key.method} {self.key.branch} {self.state.name}>"

    # -- the table ---------------------------------------------------------------------------

    def _transition(self, event: TxInput) -> None:
        """Move by the table; an input the table lacks in this state is a bug in the caller."""
        nxt = self.TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise TransactionTableError(
                f"{type(self).__name__}: no transition for {event.value!r} in {self.state.name}"
            )
        old, self.state = self.state, nxt
        if self._observer is not None:
            self._observer.transition(self, old, event, nxt)

    def can(self, event: TxInput) -> bool:
        """True when the table has ``event`` in the current state."""
        return (self.state, event) in self.TRANSITIONS

    # -- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest timer, or None."""
        return min(self._deadlines.values()) if self._deadlines else None

    def _start(self, timer: Timer, now: float, interval: float) -> None:
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval

    def _stop(self, *timers: Timer) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)
            self._intervals.pop(timer, None)

    def handle_timers(self, now: float) -> None:
        """Fire every due timer, earliest first."""
        while not self.terminated:
            due = [(t, n) for n, t in self._deadlines.items() if t <= now]
            if not due:
                return
            _, timer = min(due)
            del self._deadlines[timer]
            self._on_timer(timer, now)

    def _on_timer(self, timer: Timer, now: float) -> None:
        raise NotImplementedError

    # -- output ------------------------------------------------------------------------------

    def _keep(self, data: bytes) -> Buffer:
        """Serialised once, retransmitted from bytes: the bytes live in the transaction's pool."""
        return self.pool.alloc(Buffer, data)

    def _send(self, data: Buffer | bytes, destination: Address | None = None) -> None:
        self._sink(Outgoing(bytes(data), destination or self.peer, self.transport))

    def _finish(self, event: TxInput, reason: str) -> None:
        """Take ``event``; if it leads to TERMINATED, stop every timer and tell the user."""
        self._transition(event)
        if self.state is not self.END:
            return
        self.terminated = True
        self.terminated_reason = reason
        self._deadlines.clear()
        self._intervals.clear()
        self._on_event(TransactionTerminated(self, reason))

    def terminate(self, reason: str) -> None:
        """End the transaction now, from any state (its TransactionTerminated event is queued):
        the endpoint closing, or an INVITE given up (RFC 3261 §9.1). Nothing if already ended."""
        if not self.terminated:
            self._finish(TxInput.TERMINATE, reason)

    def transport_error(self, reason: str = TRANSPORT_ERROR) -> None:
        """The transport could not send (connection refused, closed): terminate, if the table
        says so in this state (a 2xx in Accepted is the transaction user's to deliver). The
        terminated reason is ``reason``, which starts with :data:`TRANSPORT_ERROR`."""
        if not reason.startswith(TRANSPORT_ERROR):
            reason = f"{TRANSPORT_ERROR}: {reason}"
        if not self.terminated and self.can(TxInput.TRANSPORT_ERROR):
            self._finish(TxInput.TRANSPORT_ERROR, reason)


def response_kind(response: Response, *, sent: bool = False) -> TxInput:
    """The table input of a response: received (or, with ``sent``, sent) 1xx, 2xx or 3xx-6xx."""
    code = response.status_code
    if code < 200:
        return TxInput.SEND_1XX if sent else TxInput.RECV_1XX
    if code < 300:
        return TxInput.SEND_2XX if sent else TxInput.RECV_2XX
    return TxInput.SEND_FAILURE if sent else TxInput.RECV_FAILURE
