"""What all four transaction machines share: keys, outputs, timers, pool and life cycle.

A transaction never does I/O and never reads a clock: it is fed messages and ``now``, and it
queues bytes to send (retransmitted from the same bytes), timer deadlines, and events for the
transaction user. It owns a pool, released exactly once when it reaches TERMINATED.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from invsess.memory import Buffer, Pool
from invsess.sip import Request, Response
from invsess.transaction.events import TransactionTerminated

if TYPE_CHECKING:
    from invsess.transaction.timers import TimerConfig

MAGIC_COOKIE = "z9hG4bK"
RELIABLE = frozenset({"tcp", "tls", "ws", "wss", "sctp"})

Address = tuple[str, int]


class Role(enum.Enum):
    """Which side of the transaction we are."""

    CLIENT = "client"
    SERVER = "server"


@attrs.frozen
class Outgoing:
    """Bytes to send, where, and over which transport."""

    data: bytes
    destination: Address
    transport: str


@attrs.frozen
class TransactionKey:
    """RFC 3261 §17.1.3 / §17.2.3 matching key (branch-based, or RFC 2543 fallback)."""

    branch: str
    sent_by: str
    method: str


def is_rfc3261_branch(branch: str | None) -> bool:
    """True when the branch carries the RFC 3261 magic cookie (and something after it)."""
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)


class Transaction:
    """Base of the four machines. Subclasses define ``State``, ``TRANSITIONS`` and the inputs."""

    role: Role
    TRANSITIONS: ClassVar[dict[tuple[Any, str], Any]]

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
        self._deadlines: dict[str, float] = {}
        self._intervals: dict[str, float] = {}
        self.terminated_reason: str | None = None
        self.state: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key.method} {self.key.branch} {self.state.name}>"

    # -- the table ---------------------------------------------------------------------------

    def _transition(self, event: str) -> None:
        """Move by the table; an input the table lacks in this state is a bug in the caller."""
        nxt = self.TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise RuntimeError(f"{type(self).__name__}: no transition for {event!r} in {self.state.name}")
        self.state = nxt

    @property
    def terminated(self) -> bool:
        """True once TERMINATED (the endpoint then forgets it and its pool is released)."""
        return bool(self.state.name == "TERMINATED")

    # -- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest timer, or None."""
        return min(self._deadlines.values()) if self._deadlines else None

    def _start(self, name: str, now: float, interval: float) -> None:
        self._intervals[name] = interval
        self._deadlines[name] = now + interval

    def _stop(self, *names: str) -> None:
        for name in names:
            self._deadlines.pop(name, None)
            self._intervals.pop(name, None)

    def handle_timers(self, now: float) -> None:
        """Fire every due timer, earliest first."""
        while not self.terminated:
            due = [(t, n) for n, t in self._deadlines.items() if t <= now]
            if not due:
                return
            _, name = min(due)
            del self._deadlines[name]
            self._on_timer(name, now)

    def _on_timer(self, name: str, now: float) -> None:
        raise NotImplementedError

    # -- output ------------------------------------------------------------------------------

    def _keep(self, data: bytes) -> Buffer:
        """Serialised once, retransmitted from bytes: the bytes live in the transaction's pool."""
        return self.pool.alloc(Buffer, data)

    def _send(self, data: Buffer | bytes, destination: Address | None = None) -> None:
        self._sink(Outgoing(bytes(data), destination or self.peer, self.transport))

    def _terminate(self, reason: str) -> None:
        self.state = type(self.state).TERMINATED
        self.terminated_reason = reason
        self._deadlines.clear()
        self._intervals.clear()

    def _finish(self, reason: str) -> None:
        self._terminate(reason)
        self._on_event(TransactionTerminated(self, reason))

    def transport_error(self) -> None:
        """The transport could not send (connection refused, closed): terminate."""
        if not self.terminated:
            self._transition("transport error")
            self._finish("transport error")


def response_kind(response: Response) -> str:
    """The input name of a response in the tables: 1xx, 2xx, or 300-699."""
    if response.status_code < 200:
        return "1xx"
    if response.status_code < 300:
        return "2xx"
    return "3xx-6xx"
