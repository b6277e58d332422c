"""Tutorial, chapter 3: a timer callback touching the session after the dialog's pool was
released (PJSIP #2007).

Run: ``python examples/tutorial/pjsip_2007_timer_after_release.py`` (normal mode: a log line
that looks right), ``INVSESS_MALLOC_DEBUG=1 python ...`` (the report), ``--fixed``.

Alice calls Bob with session timers (RFC 4028, 90 s). Bob's application arms a timer of its own
on the call: a billing tick every 50 s that logs the call's state. Then Bob's network goes away.
Alice's refresh times out and she ends her side; Bob's session expires, his BYE times out too,
and the session layer releases the session and its dialog. Bob's billing timer still holds a
plain pointer to the session, and fires.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from chapter import run

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteSession, SessionLayer, TimerSettings
from invsess.logs import configure
from invsess.sdp import parse_sdp
from invsess.testing import CallDriver, SimNetwork

ALICE, BOB = ("127.0.0.1", 5060), ("127.0.0.2", 5060)


def agent(net: SimNetwork, address: tuple[str, int], user: str, seed: int) -> SessionLayer:
    """A user agent with session timers (90 s), on the simulated network."""
    host = address[0]
    sdp = parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {40000 + 2 * seed} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    config = EndpointConfig(seed=seed, allow=("INVITE", "BYE", "UPDATE"), supported=("timer",))
    layer = SessionLayer(Endpoint(config), sdp, user=user, timer=TimerSettings(session_expires=90))
    net.attach(layer, address)
    return layer


class AppTimers:
    """The application's own timers (a heap of callbacks), run as virtual time passes."""

    def __init__(self, driver: CallDriver) -> None:
        self.driver = driver
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._serial = itertools.count()

    def at(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` at ``when``."""
        heapq.heappush(self._heap, (when, next(self._serial), callback))

    def run_until(self, until: float) -> None:
        """Run the network until ``until``, firing each timer at its time."""
        while self._heap and self._heap[0][0] <= until:
            when, _, callback = heapq.heappop(self._heap)
            self.driver.run_until(when)
            callback()
        self.driver.run_until(until)


# --8<-- [start:tick]
class BillingTick:
    """Every 50 s, log the call's state (the application's timer on the session)."""

    def __init__(self, timers: AppTimers, session: InviteSession, *, fixed: bool) -> None:
        self.timers = timers
        self.session = session  # a plain pointer: no reference is taken
        self.fixed = fixed
        if fixed:  # the fix: the timer holds the session (and its dialog) while it is armed
            session.add_ref("billing")
            session.dialog.add_ref("billing")
        timers.at(timers.driver.now + 50, self.fire)

    def fire(self) -> None:
        session = self.session
        state = session.state  # the touch: the session may have been released meanwhile
        print(f"{self.timers.driver.now:7.1f}  billing tick: call {session.call_id} is {state.name}")
        if state.name != "DISCONNECTED":
            self.timers.at(self.timers.driver.now + 50, self.fire)
        elif self.fixed:  # done with it: release session first, dialog second
            dialog = session.dialog
            session.dec_ref("billing")
            dialog.dec_ref("billing")


# --8<-- [end:tick]


def main(net: SimNetwork, fixed: bool) -> None:
    """The call, the network cut, the timer."""
    configure("error")  # structlog: the library's own logs only when something is wrong
    alice, bob = agent(net, ALICE, "alice", 1), agent(net, BOB, "bob", 2)
    driver = CallDriver(net, [alice, bob])
    timers = AppTimers(driver)

    def on_call(layer: SessionLayer, session: InviteSession, now: float) -> None:
        layer.answer(session, 200, now)
        BillingTick(timers, session, fixed=fixed)

    driver.on_incoming(bob, on_call)
    alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=net.now)
    timers.run_until(10.0)
    print(f"{net.now:7.1f}  the network between Alice and Bob goes down")
    net.partition(ALICE, BOB)
    timers.run_until(200.0)
    for record in driver.calls:
        print(f"{record.role}: {' -> '.join(s.name for s in record.states)} (cause {record.cause})")
    for name, layer in (("alice", alice), ("bob", bob)):
        print(f"{name}: {layer.close(net.now).format()}")


if __name__ == "__main__":
    run(main, __doc__, fixed="the timer holds references while armed")
