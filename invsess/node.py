"""The node interface: what every sans-IO SIP participant offers to whatever drives it.

:class:`~invsess.endpoint.Endpoint`, :class:`~invsess.inv.SessionLayer` and the test harness's
:class:`~invsess.testing.ScriptedPeer` implement it, so the asyncio driver, the simulated and
loopback networks and the virtual clock drive any of them the same way, as aioquic's adapters
drive a ``QuicConnection``: feed bytes and the time in (:meth:`Node.receive`), take bytes out
(:meth:`Node.datagrams_to_send`) and report what could not be sent
(:meth:`Node.transport_error`), keep one timer armed at :meth:`Node.next_deadline` and call
:meth:`Node.handle_timers` when it is due, and read what happened with :meth:`Node.next_event`.

A node never reads a clock, sleeps or touches a socket: time is always an argument.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from invsess.address import Address
from invsess.memory import LeakReport
from invsess.transaction.base import TRANSPORT_ERROR, Outgoing
from invsess.transaction.events import Event

EventT_co = TypeVar("EventT_co", covariant=True)


class Node(Protocol[EventT_co]):
    """A sans-IO SIP participant; see the module docstring."""

    def add_listener(self, transport: str, address: Address) -> None:
        """Where the node listens on ``transport`` (for the Via and Contact of what it sends)."""

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """One datagram, or one message cut from a stream, from ``source`` at time ``now``."""

    def datagrams_to_send(self) -> list[Outgoing]:
        """Everything queued for sending since the last call, in order."""
        ...

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` must next be called (None: nothing pending)."""
        ...

    def handle_timers(self, now: float) -> None:
        """Fire everything due at ``now``. A driver may call it early; nothing fires before its time."""

    def transport_error(
        self, destination: Address, transport: str, now: float, *, reason: str = TRANSPORT_ERROR
    ) -> None:
        """A send to ``destination`` failed (the send guard refused it, a host name nothing here
        resolves, a TCP connection refused or lost): what was talking to it fails now, as if it
        got a 503 (RFC 3261 §8.1.3.1), instead of waiting for its timers."""

    def next_event(self) -> EventT_co | None:
        """The next thing that happened, or None."""
        ...

    def close(self, now: float) -> LeakReport:
        """End everything still running, release what can be released, report what is left."""
        ...


class TransactionUser(Protocol):
    """A user of the endpoint's transactions beside the INVITE sessions (RFC 3261's *TU*): a
    registration client, a registrar. :meth:`SessionLayer.attach <invsess.inv.SessionLayer.attach>`
    gives it what the layer does not route itself — responses, timeouts and ends of its own
    transactions, and requests outside any dialog other than INVITE — and drives its timers
    with the layer's. PJSIP's modules on ``pjsip_endpoint`` play the same part."""

    def on_event(self, event: Event, now: float) -> bool:
        """Take ``event`` if it is this user's (True), else leave it (False). A response in it
        is valid during the call only."""
        ...

    def next_deadline(self) -> float | None:
        """The user's next timer (None: none)."""
        ...

    def handle_timers(self, now: float) -> None:
        """Fire what is due at ``now``."""


__all__ = ["Node", "TransactionUser"]
