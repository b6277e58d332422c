"""Tutorial, chapter 4: a BYE asked for after the session moved to DISCONNECTED and was
destroyed (PJSIP #4107).

Run: ``python examples/tutorial/pjsip_4107_bye_after_disconnect.py`` (normal mode: nothing
visible), ``INVSESS_MALLOC_DEBUG=1 python ...`` (the report), ``--fixed``.

Alice's application limits calls to two minutes: when she places a call it arms a timer that
hangs the call up at 120 s. Twenty seconds in, she puts Bob on hold, but the network has gone:
the re-INVITE times out, and the session layer does what RFC 3261 §12.2.1.2 asks (BYE, then
DISCONNECTED, cause 408). When the BYE's transaction ends too, the session and its dialog are
released. At 120 s the application's timer hangs up a session that no longer exists.
"""

from __future__ import annotations

from chapter import run

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteSession, InviteState, SessionLayer
from invsess.logs import configure
from invsess.sdp import parse_sdp
from invsess.testing import CallDriver, SimNetwork

ALICE, BOB = ("127.0.0.1", 5060), ("127.0.0.2", 5060)
MAX_DURATION = 120.0


def agent(net: SimNetwork, address: tuple[str, int], user: str, seed: int) -> SessionLayer:
    """A user agent (a session layer on its own endpoint) on the simulated network."""
    host = address[0]
    sdp = parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {40000 + 2 * seed} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    layer = SessionLayer(Endpoint(EndpointConfig(seed=seed, allow=("INVITE", "BYE"))), sdp, user=user)
    net.attach(layer, address)
    return layer


# --8<-- [start:limit]
class DurationLimit:
    """Hangs a call up when it has lasted ``MAX_DURATION`` seconds."""

    def __init__(self, layer: SessionLayer, session: InviteSession, start: float, *, fixed: bool) -> None:
        self.layer = layer
        self.session = session  # a plain pointer: no reference is taken
        self.deadline = start + MAX_DURATION
        self.fixed = fixed
        if fixed:  # the fix: hold the session (and its dialog) until the timer is done with it
            session.add_ref("limit")
            session.dialog.add_ref("limit")

    def fire(self, now: float) -> None:
        print(f"{now:7.1f}  duration limit reached: hanging up")
        self.layer.hangup(self.session, now)  # a BYE for a session that may be gone
        if self.fixed:
            dialog = self.session.dialog
            self.session.dec_ref("limit")  # session first ...
            dialog.dec_ref("limit")  # ... dialog second


# --8<-- [end:limit]


def main(net: SimNetwork, fixed: bool) -> None:
    """The call, the hold that times out, the timer."""
    configure("error")  # structlog: the library's own logs only when something is wrong
    alice, bob = agent(net, ALICE, "alice", 1), agent(net, BOB, "bob", 2)
    driver = CallDriver(net, [alice, bob])
    driver.answer(bob, 180, 200)
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=net.now)
    limit = DurationLimit(alice, session, net.now, fixed=fixed)
    driver.run(10.0)
    print(f"{net.now:7.1f}  the network between Alice and Bob goes down")
    net.partition(ALICE, BOB)
    driver.run(10.0)
    print(f"{net.now:7.1f}  Alice puts Bob on hold (re-INVITE)")
    alice.reinvite(session, net.now, direction="sendonly")
    driver.run_until(limit.deadline)
    record = driver.record(session)
    states = " -> ".join(s.name for s in record.states)
    print(f"{net.now:7.1f}  Alice's call: {states} (cause {record.cause})")
    limit.fire(net.now)
    net.heal()
    print(f"{net.now:7.1f}  the network is back; Bob, who never heard of any of it, hangs up")
    for bob_session in bob.sessions:
        bob.hangup(bob_session, net.now)  # Alice's side is gone: 481, and Bob's side ends
    driver.settle()
    for name, layer in (("alice", alice), ("bob", bob)):
        print(f"{name}: {layer.close(net.now).format()}")
    assert record.states[-1] is InviteState.DISCONNECTED


if __name__ == "__main__":
    run(main, __doc__, fixed="the timer holds references while armed")
