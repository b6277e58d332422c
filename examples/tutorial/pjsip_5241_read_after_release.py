"""Tutorial, chapter 5: the session read after its dialog session count was dropped
(PJSIP #5241).

Run: ``python examples/tutorial/pjsip_5241_read_after_release.py`` (normal mode: a correct
looking call record), ``INVSESS_MALLOC_DEBUG=1 python ...`` (the report), ``--fixed``.

Bob's application keeps each call it answers (one reference on the session, one on its dialog)
until the call has ended, then ``finish()`` releases both, in the right order, and writes the
call detail record. PJSIP's ``inv_session_destroy()`` had the same shape: it dropped the
dialog's session count, which could release the dialog's pool, and then went on reading the
session that lived in that pool.
"""

from __future__ import annotations

from chapter import run

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteSession, SessionLayer
from invsess.logs import configure
from invsess.sdp import parse_sdp
from invsess.testing import CallDriver, SimNetwork

ALICE, BOB = ("127.0.0.1", 5060), ("127.0.0.2", 5060)


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


# --8<-- [start:record]
class CallKeeper:
    """Holds an answered call until it has ended, then writes its call detail record."""

    def __init__(self, session: InviteSession) -> None:
        self.session = session
        self.dialog = session.dialog
        session.add_ref("cdr")
        self.dialog.add_ref("cdr")

    def finish(self) -> str:
        """Release the call (session first, dialog second), then write the record."""
        self.session.dec_ref("cdr")
        self.dialog.dec_ref("cdr")  # the last count on the dialog: its pool goes, the session in it
        return f"CDR call_id={self.session.call_id} cause={self.session.cause}"  # read after the release

    def finish_fixed(self) -> str:
        """The fix (PJSIP's too): finish with the session, then drop the counts."""
        cdr = f"CDR call_id={self.session.call_id} cause={self.session.cause}"
        self.session.dec_ref("cdr")
        self.dialog.dec_ref("cdr")
        return cdr


# --8<-- [end:record]


def main(net: SimNetwork, fixed: bool) -> None:
    """Alice calls Bob; Bob's application keeps the call, Alice hangs up, Bob finishes it."""
    configure("error")  # structlog: the library's own logs only when something is wrong
    alice, bob = agent(net, ALICE, "alice", 1), agent(net, BOB, "bob", 2)
    driver = CallDriver(net, [alice, bob])
    kept: list[CallKeeper] = []

    def on_call(layer: SessionLayer, session: InviteSession, now: float) -> None:
        kept.append(CallKeeper(session))
        layer.answer(session, 200, now)

    driver.on_incoming(bob, on_call)
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=net.now)
    driver.run(30.0)
    alice.hangup(session, net.now)
    driver.settle()  # the BYE has been answered and its transaction has ended
    for keeper in kept:
        print(keeper.finish_fixed() if fixed else keeper.finish())
    for name, layer in (("alice", alice), ("bob", bob)):
        print(f"{name}: {layer.close(net.now).format()}")


if __name__ == "__main__":
    run(main, __doc__, fixed="read the session before releasing it")
