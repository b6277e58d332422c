"""A half-hour call with session timers and 100rel, in virtual time: it runs in milliseconds.

Run: ``python examples/session_timer_half_hour.py``. Alice calls Bob with ``Supported: timer,
100rel`` and asks for 340 s sessions; Bob rings with a reliable 183 carrying his SDP answer
(early media), then answers. Alice refreshes every 170 s by UPDATE for 30 minutes, then the
network splits: Bob, who does not refresh, ends the call at his deadline with a BYE that cannot
arrive, and Alice's refresh times out too. The ladder of the first and last exchanges is printed,
then the proof that nothing leaked. ``--trace FILE`` writes every message as a JSON-lines trace
(draw it: ``invsess ladder FILE``).
"""

from __future__ import annotations

import argparse

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import IncomingCall, SessionLayer, SessionStateChanged, TimerSettings
from invsess.logs import configure
from invsess.sdp import parse_sdp
from invsess.testing import SimNetwork
from invsess.trace import Trace, render_text

A, B = ("127.0.0.1", 5060), ("127.0.0.2", 5060)


def agent(net: SimNetwork, address: tuple[str, int], user: str, seed: int) -> SessionLayer:
    sdp = parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 {address[0]}\r\ns=-\r\nc=IN IP4 {address[0]}\r\nt=0 0\r\n"
        f"m=audio {40000 + seed * 2} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    config = EndpointConfig(
        seed=seed, allow=("INVITE", "BYE", "UPDATE", "PRACK"), supported=("100rel", "timer")
    )
    layer = SessionLayer(
        Endpoint(config), sdp, user=user, timer=TimerSettings(session_expires=340), rel100="supported"
    )
    net.attach(layer, address)
    return layer


def main(trace_file: str | None = None) -> None:
    configure("warning")  # structlog: only warnings and errors
    net = SimNetwork(seed=1)
    alice, bob = agent(net, A, "alice", 1), agent(net, B, "bob", 2)

    def events() -> None:
        for who, layer in (("alice", alice), ("bob", bob)):
            while (event := layer.next_event()) is not None:
                if isinstance(event, IncomingCall):
                    bob.answer(event.session, 183, net.now)  # reliable: RSeq, SDP, PRACK
                    bob.answer(event.session, 200, net.now)  # waits for that PRACK
                elif isinstance(event, SessionStateChanged):
                    print(f"{net.now:9.3f}  {who:5} {event.old.name} -> {event.new.name} {event.cause or ''}")

    alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    split = False
    while net.now < 2400:  # 40 minutes, read in 10 ms steps (virtual time: nothing sleeps)
        if net.now >= 1800 and not split:
            refreshes = sum(1 for e in net.trace if e.first_line.startswith("UPDATE"))
            print(f"{net.now:9.3f}  after 30 minutes: {refreshes} refreshes by UPDATE; the network splits")
            net.partition(A, B)
            split = True
        net.run_until(net.now + 0.01)
        events()
    net.heal()
    net.run_until_idle()
    events()
    events()  # the releases run after the DISCONNECTED events were read
    trace = Trace([*net.trace])
    if trace_file:
        trace.write(trace_file)
    lines = render_text(trace).splitlines()
    cut = next(i for i, line in enumerate(lines) if "[partitioned]" in line)
    print("\n".join([*lines[:9], "       ...", *lines[cut - 2 : cut + 8], "       ..."]))
    for name, layer in (("alice", alice), ("bob", bob)):
        print(f"{name}: {layer.close(net.now).format()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", metavar="FILE", help="write the SIP messages here")
    main(parser.parse_args().trace)
