"""UserAgent and Call over real loopback sockets: calls, hold/resume, reject, cancel, memory."""

from __future__ import annotations

import asyncio

import pytest

from invsess.aio import SendGuard, UserAgent
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState
from invsess.sdp import parse_sdp
from invsess.transaction import TimerConfig

FAST = TimerConfig(t1=0.02, t2=0.16, t4=0.1)


def sdp(user: str, port: int) -> str:
    return (
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    )


async def agent(name: str, transport: str = "udp") -> UserAgent:
    return await UserAgent.create(
        [f"{transport}:127.0.0.1:0"],
        sdp=parse_sdp(sdp(name, 40000 if name == "alice" else 40002)),
        user=name,
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=FAST),
        guard=SendGuard.loopback_only(),
    )


def uri(ua: UserAgent, transport: str = "udp") -> str:
    host, port = ua.endpoint.listeners[transport]
    return f"sip:bob@{host}:{port}" + ("" if transport == "udp" else f";transport={transport}")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_call_hold_resume_hangup(transport: str) -> None:
    alice, bob = await agent("alice", transport), await agent("bob", transport)
    call = await alice.call(uri(bob, transport))
    incoming = await bob.incoming(timeout=5)
    await incoming.answer(180)
    await call.wait_for(InviteState.EARLY)
    await incoming.answer(200)
    await call.wait_for(InviteState.CONFIRMED)
    await incoming.wait_for(InviteState.CONFIRMED)
    await call.hold()
    assert call.media is not None and call.media.local.media[0].direction == "sendonly"
    await asyncio.sleep(0.05)
    assert incoming.media is not None and incoming.media.local.media[0].direction == "recvonly"
    await call.resume()
    assert call.media is not None and call.media.local.media[0].direction == "sendrecv"
    await call.hangup()
    await incoming.wait_for(InviteState.DISCONNECTED)
    assert call.history == [
        InviteState.CALLING,
        InviteState.EARLY,
        InviteState.CONNECTING,
        InviteState.CONFIRMED,
        InviteState.DISCONNECTED,
    ]
    assert incoming.cause == 200
    assert call.state is InviteState.DISCONNECTED  # readable: the Call still holds its references
    await call.close()
    await incoming.close()
    for ua in (alice, bob):
        assert not await ua.close()


async def test_rejected_and_cancelled_calls() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    call = await alice.call(uri(bob))
    incoming = await bob.incoming(timeout=5)
    await incoming.answer(486)
    with pytest.raises(Exception, match="cause 486"):
        await call.wait_for(InviteState.CONFIRMED)
    second = await alice.call(uri(bob))
    ringing = await bob.incoming(timeout=5)
    await ringing.answer(180)
    await second.wait_for(InviteState.EARLY)
    await second.hangup()  # CANCEL
    assert second.cause == 487
    await ringing.wait_for(InviteState.DISCONNECTED)
    assert ringing.cause == 487
    for ua in (alice, bob):
        assert not await ua.close()  # closes the calls left open


async def test_unreachable_callee_times_out() -> None:
    alice = await agent("alice")
    call = await alice.call("sip:nobody@127.0.0.1:9")
    await call.wait_for(InviteState.CALLING)
    with pytest.raises(Exception, match="cause 408"):
        await call.wait_for(InviteState.CONFIRMED, timeout=10)
    assert not await alice.close()
