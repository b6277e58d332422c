"""A call leaves no garbage cycle behind: everything it allocated goes by reference counting the
moment it is released, not at the cycle collector's next pass (PJSIP frees a call's memory when
its pool goes; so must we, or a busy server's heap grows between collections)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    IncomingCall,
    InviteSession,
    InviteState,
    MediaUpdated,
    SessionLayer,
    SessionStateChanged,
    TimerSettings,
    option_tags,
)
from invsess.testing import SimNetwork
from invsess.testing.plugin import UserAgentFactory

from .sessions import ALICE_SDP, BOB_SDP, B, World


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _calls(w: World, count: int) -> None:
    for _ in range(count):
        session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=w.net.now)
        for _, kind, detail in w.run(0.1):
            if kind == "incoming":
                w.bob.answer(detail, 183, w.net.now)  # type: ignore[arg-type]
                w.bob.answer(detail, 200, w.net.now)  # type: ignore[arg-type]
        w.run(0.3)
        w.alice.reinvite(session, w.net.now, direction="sendonly")
        w.run(0.3)
        w.alice.hangup(session, w.net.now)
        w.run(0.3)
    w.net.run_until(w.net.now + 40)  # every transaction over: the dialogs' pools go
    w.drain()


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("malloc_debug", [False, True])
def test_calls_leave_no_garbage_cycles(malloc_debug: bool) -> None:
    extensions = {
        "timer": TimerSettings(session_expires=90),
        "rel100": "supported",
        "malloc_debug": malloc_debug,
    }
    w = World(seed=7, alice=dict(extensions), bob=dict(extensions))
    w.net.record = False
    _calls(w, 3)  # the first calls fill caches (interned sites, contacts): not per call
    gc.collect()
    _calls(w, 30)
    assert gc.collect() == 0  # nothing the 30 calls left needed the cycle collector
    w.settle()


# -- a B2BUA's shape: one layer answering calls and placing their other legs --------------------

ALICE, MIDDLE, BOB = ("127.0.0.1", 5060), ("127.0.0.3", 5060), ("127.0.0.2", 5060)


class Bridging:
    """Alice calls the middle layer, which calls Bob with Alice's offer and answers Alice with
    Bob's answer (a B2BUA's two legs, sans-IO: the middle layer has no SDP of its own); Alice
    hangs up, the middle layer hangs Bob's leg up. The legs are paired by Call-ID, never by
    keeping sessions beyond their DISCONNECTED event."""

    def __init__(self, *, malloc_debug: bool, extensions: dict[str, object]) -> None:
        self.net = SimNetwork(11, record=False)
        agents = UserAgentFactory(self.net)
        self.alice = agents(ALICE, sdp=ALICE_SDP, user="alice", malloc_debug=malloc_debug, **extensions)
        self.bob = agents(BOB, sdp=BOB_SDP, user="bob", malloc_debug=malloc_debug, **extensions)
        layer_options = {k: v for k, v in extensions.items() if k in ("timer", "rel100")}
        config = EndpointConfig(
            allow=("INVITE", "BYE", "UPDATE", "PRACK", "OPTIONS"),
            supported=option_tags(layer_options.get("timer"), layer_options.get("rel100", "off")),  # type: ignore[arg-type]
            malloc_debug=malloc_debug,
            seed=99,
        )
        self.middle = SessionLayer(Endpoint(config), None, user="b2bua", **layer_options)  # type: ignore[arg-type]
        self.net.attach(self.middle, MIDDLE)
        self.legs: dict[str, str] = {}  # Call-ID of one leg -> the other's
        self.placed: dict[str, InviteSession] = {}  # Call-ID of an incoming leg -> it, while it rings
        self.hang_up: list[str] = []  # Call-IDs of the middle layer's legs to end

    def pump(self) -> None:
        """Read every layer's events until none is left, acting on them as the B2BUA does."""
        busy = True
        while busy:
            busy = False
            for layer in (self.alice, self.bob, self.middle):
                while (event := layer.next_event()) is not None:
                    busy = True
                    self._on(layer, event)
            for session in list(self.middle.sessions):
                if session.call_id in self.hang_up:
                    self.hang_up.remove(session.call_id)
                    self.middle.hangup(session, self.net.now)
                    busy = True

    def _on(self, layer: SessionLayer, event: object) -> None:
        now = self.net.now
        if isinstance(event, IncomingCall) and layer is self.bob:
            layer.answer(event.session, 200, now)
        elif isinstance(event, IncomingCall):  # the middle layer: the other leg goes out
            out = layer.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=now, sdp=event.offer)
            self.legs[event.session.call_id], self.legs[out.call_id] = out.call_id, event.session.call_id
            self.placed[event.session.call_id] = event.session
        elif isinstance(event, MediaUpdated) and layer is self.middle:
            incoming = self.placed.pop(self.legs.get(event.session.call_id, ""), None)
            if incoming is not None:  # Bob answered: so does the middle layer, with his SDP
                layer.answer(incoming, 200, now, sdp=event.remote)
        elif isinstance(event, SessionStateChanged) and event.new is InviteState.DISCONNECTED:
            other = self.legs.pop(event.session.call_id, None)
            if layer is self.middle and other is not None:
                self.legs.pop(other, None)
                self.hang_up.append(other)

    def run(self, seconds: float) -> None:
        end = self.net.now + seconds
        while True:
            self.pump()
            self.net.flush()  # what the layers queued is in flight: next_time() sees it
            when = self.net.next_time()
            if when is None or when > end:
                break
            self.net.step()
        self.net.now = max(self.net.now, end)
        self.pump()

    def calls(self, count: int) -> None:
        for _ in range(count):
            session = self.alice.invite("sip:bob@127.0.0.3:5060", destination=MIDDLE, now=self.net.now)
            self.run(0.2)
            if session.state is not InviteState.CONFIRMED:
                raise AssertionError(f"the bridged call is {session.state.name}")
            self.alice.hangup(session, self.net.now)
            self.run(0.2)
        self.run(40)  # every transaction over (Timer J/K/L/M): the dialogs' pools go
        assert not (self.alice.sessions or self.middle.sessions or self.bob.sessions)
        assert not (self.legs or self.placed or self.hang_up)


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("malloc_debug", [False, True])
@pytest.mark.parametrize("extended", [False, True], ids=["plain", "timer-100rel"])
def test_bridged_calls_leave_no_cycles_and_flat_memory(malloc_debug: bool, extended: bool) -> None:
    """A B2BUA-shaped flow, both roles in one layer, with the cycle collector off: the calls
    leave nothing it would have to collect, and the heap does not grow with them.

    The heap is counted in live allocations (tracemalloc's traces), between points where
    ``gc.collect()`` has run — it also empties CPython's free lists of tuples, dicts ... that
    tracemalloc counts as allocated: a table growing its capacity then changes the bytes but
    not the count, while one object left behind per call adds one per call. The MALLOC_DEBUG
    quarantine of recent frees is bounded by design, and emptied before each count."""
    extensions: dict[str, object] = (
        {"timer": TimerSettings(session_expires=90), "rel100": "supported"} if extended else {}
    )
    w = Bridging(malloc_debug=malloc_debug, extensions=extensions)

    def live_allocations() -> int:
        for layer in (w.alice, w.middle, w.bob):
            layer.endpoint.factory.quarantine.clear()
        assert gc.collect() == 0  # nothing the calls left needed the cycle collector
        return len(tracemalloc.take_snapshot().traces)

    w.calls(5)  # the first calls fill caches (interned sites, stacks, contacts): not per call
    gc.collect()
    tracemalloc.start(1)
    try:
        w.calls(15)
        before = live_allocations()
        w.calls(30)
        grown = live_allocations() - before
    finally:
        tracemalloc.stop()
    assert grown < 15, f"{grown} more live allocations after 30 more calls"
    for layer in (w.alice, w.middle, w.bob):
        assert not layer.close(w.net.now), layer.endpoint.leak_report().format()
