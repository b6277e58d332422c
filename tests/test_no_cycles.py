"""A call leaves no garbage cycle behind: everything it allocated goes by reference counting the
moment it is released, not at the cycle collector's next pass (PJSIP frees a call's memory when
its pool goes; so must we, or a busy server's heap grows between collections)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from invsess.inv import TimerSettings

from .sessions import B, World


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
