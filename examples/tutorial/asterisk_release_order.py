"""Tutorial, chapter 1: the dialog reference dropped before the INVITE session's (Asterisk).

Run: ``python examples/tutorial/asterisk_release_order.py`` (normal mode: it "works"), then
``INVSESS_MALLOC_DEBUG=1 python examples/tutorial/asterisk_release_order.py`` (the report), and
``--fixed`` for the corrected release order.

Asterisk's ``ast_sip_session`` keeps a reference on its PJSIP INVITE session and one on the
dialog for as long as the channel lives (res_pjsip_session.c). The INVITE session is allocated
from the dialog's pool, so the two must be released session first, dialog second. Here the
application's ``Channel`` does the same, and its destructor gets the order wrong.
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


# --8<-- [start:channel]
class Channel:
    """The application's call object (Asterisk's ``ast_sip_session``): it holds a reference on
    the INVITE session and one on its dialog for as long as it lives."""

    def __init__(self, session: InviteSession) -> None:
        self.session = session
        self.dialog = session.dialog
        session.add_ref("channel")
        self.dialog.add_ref("channel")

    def destroy(self) -> None:
        """The bug: the dialog first. Its pool holds the session, so the session goes with it."""
        self.dialog.dec_ref("channel")  # wrong order: the pool holding the session is released
        self.session.dec_ref("channel")

    def destroy_fixed(self) -> None:
        """The fix, as res_pjsip_session.c does it: the session first, the dialog second."""
        self.session.dec_ref("channel")
        self.dialog.dec_ref("channel")


# --8<-- [end:channel]


def main(net: SimNetwork, fixed: bool) -> None:
    """Alice calls Bob, hangs up, and destroys her channel."""
    configure("error")  # structlog: the library's own logs only when something is wrong
    alice, bob = agent(net, ALICE, "alice", 1), agent(net, BOB, "bob", 2)
    driver = CallDriver(net, [alice, bob])
    driver.answer(bob, 180, 200)
    # --8<-- [start:call]
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=net.now)
    channel = Channel(session)
    driver.run(1.0)
    alice.hangup(session, net.now)
    driver.settle()  # the BYE's transaction ends: only the channel's references are left
    # --8<-- [end:call]
    record = driver.record(session)
    print(f"call {record.call_id}: {' -> '.join(s.name for s in record.states)} (cause {record.cause})")
    # --8<-- [start:destroy]
    if fixed:
        channel.destroy_fixed()
    else:
        channel.destroy()
    print("channel destroyed")
    # --8<-- [end:destroy]
    for name, layer in (("alice", alice), ("bob", bob)):
        print(f"{name}: {layer.close(net.now).format()}")


if __name__ == "__main__":
    run(main, __doc__, fixed="release in the right order")
