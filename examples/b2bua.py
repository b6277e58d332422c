"""A B2BUA between two phones, on the public API: Alice calls Bob through it, holds, sends a DTMF
digit, resumes and hangs up; then the B2BUA releases each leg and reports its memory.

Run: ``python examples/b2bua.py`` (everything on loopback UDP, ports chosen by the system).
``invsess b2bua --listen udp:127.0.0.1:5070 --to sip:127.0.0.1:5080`` runs the same B2BUA from
the command line.

Why the release order matters (the Asterisk story). A B2BUA keeps each leg's INVITE session
and dialog for as long as it bridges them, and so holds a reference on each. The session is
allocated *inside* its dialog's memory pool. Asterisk's res_pjsip_session.c drops its session
reference first and its dialog reference second, with a comment saying why: the other way
round, the dialog's last reference goes first, the pool is released, and the session the code
still holds is freed memory — it "works" until, one call in a million, the allocator has reused
the block. Each :class:`~invsess.aio.Call` here does it in the right order in ``close()``;
under MALLOC_DEBUG (``INVSESS_MALLOC_DEBUG=1``) the wrong order raises ``UseAfterFreeError``
at the first touch, with who freed the block and why (tests/test_b2bua.py does exactly that).
"""

from __future__ import annotations

import asyncio

from invsess.aio import Call, DtmfReceived, MediaChanged, SendGuard, UserAgent
from invsess.b2bua import B2bua
from invsess.inv import InviteState
from invsess.logs import configure
from invsess.sdp import SessionDescription, parse_sdp


def phone_sdp(user: str, port: int) -> SessionDescription:
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )


async def bob_answers(bob: UserAgent) -> None:
    """Bob rings, answers, and prints the digits and media changes he sees."""
    async for call in bob.incoming_calls():
        print(
            "bob: incoming",
            call.request.uri_text if call.request else "?",
            "from",
            call.request.from_ if call.request else "?",
        )
        await call.ring()
        await call.answer()
        async for event in call.events():
            if isinstance(event, DtmfReceived):
                print("bob: DTMF", event.digit)
            elif isinstance(event, MediaChanged):
                print("bob: media now", event.remote.media[0].direction)
        await call.close()


async def main() -> None:
    configure("warning")
    guard = SendGuard.loopback_only()
    bob = await UserAgent.create(["udp:127.0.0.1:0"], sdp=phone_sdp("bob", 40002), user="bob", guard=guard)
    host, port = bob.endpoint.listeners["udp"]
    b2bua = await B2bua.create(["udp:127.0.0.1:0"], to=f"sip:{host}:{port}", guard=guard)
    alice = await UserAgent.create(
        ["udp:127.0.0.1:0"], sdp=phone_sdp("alice", 40000), user="alice", guard=guard
    )
    answering = asyncio.get_running_loop().create_task(bob_answers(bob))

    b2b_host, b2b_port = b2bua.ua.endpoint.listeners["udp"]
    call: Call = await alice.call(f"sip:bob@{b2b_host}:{b2b_port}")
    await call.wait_for(InviteState.CONFIRMED)
    print(
        "alice: connected through the B2BUA; Bob answered",
        call.media.remote.origin.username if call.media else "?",
    )
    await call.hold()
    print("alice: on hold, Bob's side answers", call.media.remote.media[0].direction if call.media else "?")
    await call.send_dtmf("5")  # INFO, relayed by the B2BUA to Bob's leg
    await call.resume()
    await call.hangup(reason="done")  # BYE on Alice's leg; the B2BUA ends Bob's
    print("alice: states", [s.name for s in call.history], "cause", call.cause)
    await call.close()

    await asyncio.sleep(0.2)
    answering.cancel()
    for name, closing in (("alice", alice.close()), ("bob", bob.close()), ("b2bua", b2bua.close())):
        print(f"{name}:", (await closing).format())


if __name__ == "__main__":
    asyncio.run(main())
