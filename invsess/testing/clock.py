"""A virtual clock for sans-IO pieces tested on their own (no network): timers in order, at once.

Anything with ``next_deadline()`` and ``handle_timers(now)`` — any :class:`~invsess.node.Node`
(an :class:`~invsess.endpoint.Endpoint`, a :class:`~invsess.inv.SessionLayer`), or a bare
transaction or session part, which have the timer half of the node interface — can be attached;
:meth:`VirtualClock.advance` moves time forward deadline by deadline, calling each due node
exactly when its timer is due, so a 30-minute session-timer flow takes milliseconds and every
timer fires at its exact instant.
(:class:`~invsess.testing.SimNetwork` has its own clock, which also delivers datagrams.)
"""

from __future__ import annotations

from typing import Protocol

_MAX_FIRINGS_AT_ONE_INSTANT = 10_000


class TimedNode(Protocol):
    """What the clock drives: the timer half of :class:`~invsess.node.Node`."""

    def next_deadline(self) -> float | None:
        """When the node next needs ``handle_timers`` (None: nothing pending)."""

    def handle_timers(self, now: float) -> None:
        """Fire what is due at ``now``."""


class VirtualClock:
    """Time that moves only when told to; see the module docstring."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.nodes: list[TimedNode] = []

    def attach(self, node: TimedNode) -> TimedNode:
        """Drive ``node``'s timers from now on; returns it (for chaining)."""
        self.nodes.append(node)
        return node

    def next_deadline(self) -> float | None:
        """The earliest deadline among the attached nodes."""
        due = [t for t in (n.next_deadline() for n in self.nodes) if t is not None]
        return min(due) if due else None

    def advance(self, seconds: float) -> int:
        """Move ``seconds`` forward, firing every deadline on the way at its own instant.

        Returns how many times a node's timers were handled. A deadline in the past fires at
        the current time (never earlier). Raises ValueError for a negative step.
        """
        if seconds < 0:
            raise ValueError("time does not go backwards")
        end = self.now + seconds
        fired = same_instant = 0
        while (deadline := self.next_deadline()) is not None and deadline <= end:
            same_instant = same_instant + 1 if deadline <= self.now else 0
            if same_instant > _MAX_FIRINGS_AT_ONE_INSTANT:  # a node that never clears its timer
                raise RuntimeError(f"a node keeps a deadline at {deadline} after handling it")
            self.now = max(self.now, deadline)
            for node in list(self.nodes):
                due = node.next_deadline()
                if due is not None and due <= self.now:
                    node.handle_timers(self.now)
                    fired += 1
        self.now = end
        return fired


__all__ = ["TimedNode", "VirtualClock"]
