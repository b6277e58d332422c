"""A simulated network joining sans-IO endpoints, in virtual time.

Seedable and deterministic: the same seed gives the same trace. Each directed link has latency,
jitter, loss, duplication and reordering; partitions cut links both ways until healed. The
network owns the clock: :meth:`SimNetwork.run_until` advances it from one event (a delivery or
an endpoint timer) to the next, so a 30-minute call runs in milliseconds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

import attrs

from invsess.address import Address
from invsess.node import Node
from invsess.trace import MessageEvent, Trace, TraceEvent, render_text
from invsess.transaction import Outgoing


@attrs.frozen
class LinkProfile:
    """How one direction of a link treats datagrams (probabilities in 0..1, times in seconds)."""

    latency: float = 0.01
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def __attrs_post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")


class SimNetwork:
    """Nodes at addresses, links between them, one virtual clock.

    Any :class:`~invsess.node.Node` can be attached: an endpoint, a session layer, a scripted
    peer. Every datagram and what became of it is recorded in :attr:`trace` (a
    :class:`~invsess.trace.MessageEvent` each; ``fate`` is delivered, duplicated, lost,
    dropped (:meth:`drop_if`), partitioned or unroutable), which :meth:`ladder` draws.
    """

    def __init__(self, seed: int = 0, *, default: LinkProfile | None = None, record: bool = True) -> None:
        """``record=False`` keeps no trace: for soaks and benchmarks, whose wire would grow
        without bound (the ladder then shows nothing)."""
        self.seed = seed
        self.record = record
        self._random = random.Random(seed)  # noqa: S311 - simulated loss, not secrets: seeded on purpose
        self.now = 0.0
        self.default = default or LinkProfile()
        self._links: dict[tuple[Address, Address], LinkProfile] = {}
        self._drop: Callable[[MessageEvent], bool] | None = None
        self._cut: set[frozenset[Address]] = set()
        self._nodes: dict[Address, Node[Any]] = {}
        self._in_flight: list[tuple[float, int, Address, Address, str, bytes]] = []
        self._serial = 0
        #: Every datagram put on the wire, and its fate.
        self.trace: list[MessageEvent] = []

    # -- topology ----------------------------------------------------------------------------

    def attach(self, node: Node[Any], address: Address, transports: tuple[str, ...] = ("udp",)) -> None:
        """Put ``node`` at ``address`` (its listeners are told so)."""
        if address in self._nodes:
            raise ValueError(f"{address} is taken")
        self._nodes[address] = node
        for transport in transports:
            node.add_listener(transport, address)

    def link(self, a: Address, b: Address, profile: LinkProfile, *, both_ways: bool = True) -> None:
        """Set the profile of the link a -> b (and b -> a)."""
        self._links[(a, b)] = profile
        if both_ways:
            self._links[(b, a)] = profile

    def partition(self, a: Address, b: Address) -> None:
        """Cut every datagram between a and b, both ways, until :meth:`heal`."""
        self._cut.add(frozenset((a, b)))

    def drop_if(self, predicate: Callable[[MessageEvent], bool] | None) -> None:
        """Lose exactly the datagrams ``predicate`` picks (it sees each as the
        :class:`~invsess.trace.MessageEvent` about to be sent; their fate becomes "dropped"):
        "the first 2xx", "every ACK", ... None removes the filter."""
        self._drop = predicate

    def heal(self, a: Address | None = None, b: Address | None = None) -> None:
        """Restore one cut link, or all of them."""
        if a is None or b is None:
            self._cut.clear()
        else:
            self._cut.discard(frozenset((a, b)))

    # -- running -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Take what every node queued and put it on the wire (deliveries get scheduled)."""
        for addr, ep in self._nodes.items():
            for out in ep.datagrams_to_send():
                self._launch(addr, out)

    def _launch(self, source: Address, out: Outgoing) -> None:
        dest = (out.destination[0].strip("[]"), out.destination[1])
        rng = self._random

        def record(*fields: Any) -> None:
            if self.record:
                self.trace.append(MessageEvent(*fields))

        if dest not in self._nodes:
            record(self.now, source, dest, out.transport, out.data, "unroutable")
            return
        if frozenset((source, dest)) in self._cut:
            record(self.now, source, dest, out.transport, out.data, "partitioned")
            return
        if self._drop is not None and self._drop(
            MessageEvent(self.now, source, dest, out.transport, out.data)
        ):
            record(self.now, source, dest, out.transport, out.data, "dropped")
            return
        profile = self._links.get((source, dest), self.default)
        if rng.random() < profile.loss:
            record(self.now, source, dest, out.transport, out.data, "lost")
            return
        copies = 2 if rng.random() < profile.duplicate else 1
        record(self.now, source, dest, out.transport, out.data, "duplicated" if copies == 2 else "delivered")
        for _ in range(copies):
            delay = profile.latency + rng.uniform(0, profile.jitter)
            if rng.random() < profile.reorder:
                delay += profile.latency + profile.jitter + rng.uniform(0, 2 * max(profile.latency, 0.001))
            self._serial += 1
            heapq.heappush(
                self._in_flight, (self.now + delay, self._serial, source, dest, out.transport, out.data)
            )

    def next_time(self) -> float | None:
        """When the next delivery or endpoint timer is due."""
        times = [ep.next_deadline() for ep in self._nodes.values()]
        if self._in_flight:
            times.append(self._in_flight[0][0])
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def step(self) -> bool:
        """Advance to the next event and process everything due then; False when idle."""
        self.flush()
        when = self.next_time()
        if when is None:
            return False
        self.now = max(self.now, when)
        while self._in_flight and self._in_flight[0][0] <= self.now:
            _, _, source, dest, transport, data = heapq.heappop(self._in_flight)
            self._nodes[dest].receive(data, source, transport, self.now)
        for ep in self._nodes.values():
            deadline = ep.next_deadline()
            if deadline is not None and deadline <= self.now:
                ep.handle_timers(self.now)
        self.flush()
        return True

    def run_until(self, until: float) -> None:
        """Process every event up to ``until`` (the clock ends there)."""
        self.flush()
        while True:
            when = self.next_time()
            if when is None or when > until:
                break
            self.step()
        self.now = max(self.now, until)

    def run_until_idle(self, limit: float = 3600.0) -> None:
        """Process events until nothing is pending (or ``limit`` virtual seconds pass)."""
        self.flush()
        end = self.now + limit
        while self.next_time() is not None and self.now <= end:
            if not self.step():
                break

    def ladder(self, limit: int = 200) -> str:
        """The ladder diagram of the last ``limit`` datagrams (see :mod:`invsess.trace`)."""
        recent: list[TraceEvent] = [*self.trace[-limit:]]
        return render_text(Trace(recent))
