"""Two user agents in one process: Bob answers, Alice calls, holds, resumes and hangs up.

Run: ``python examples/call_and_answer.py`` (loopback UDP; prints the states and the SDP agreed).
``--trace FILE`` writes Alice's SIP messages as a JSON-lines trace (draw it: ``invsess ladder FILE``).
"""

from __future__ import annotations

import argparse
import asyncio

from invsess.aio import SendGuard, UserAgent
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState
from invsess.logs import configure
from invsess.sdp import parse_sdp
from invsess.trace import Trace


def sdp(user: str, port: int):  # type: ignore[no-untyped-def]
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    )


async def main(trace_file: str | None = None) -> None:
    configure("warning")  # structlog: only warnings and errors on stderr
    config = EndpointConfig(allow=("INVITE", "BYE", "UPDATE"))
    bob = await UserAgent.create(["udp:127.0.0.1:0"], sdp=sdp("bob", 40002), user="bob", config=config,
                                 guard=SendGuard.loopback_only())  # fmt: skip
    trace = Trace()
    alice = await UserAgent.create(["udp:127.0.0.1:0"], sdp=sdp("alice", 40000), user="alice", config=config,
                                   guard=SendGuard.loopback_only(), trace=trace)  # fmt: skip
    host, port = bob.endpoint.listeners["udp"]

    call = await alice.call(f"sip:bob@{host}:{port}")
    incoming = await bob.incoming(timeout=5)
    await incoming.answer(180)
    await incoming.answer(200)
    await call.wait_for(InviteState.CONFIRMED)
    print("connected; codecs:", call.media.local.media[0].formats if call.media else None)

    await call.hold()
    print("on hold; bob's side is", incoming.media.local.media[0].direction if incoming.media else None)
    await call.resume()
    await call.hangup()
    print("states:", [s.name for s in call.history], "cause", call.cause)

    await call.close()  # session reference first, dialog second: Call does it in that order
    await incoming.close()
    for ua in (alice, bob):
        print((await ua.close()).format())
    if trace_file:
        trace.write(trace_file)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", metavar="FILE", help="write Alice's SIP messages here")
    asyncio.run(main(parser.parse_args().trace))
