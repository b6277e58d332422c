"""``invsess demo``, part one: a real call between two user agents over loopback UDP.

INVITE with SDP -> 180 -> 200 -> ACK -> re-INVITE (hold) -> BYE, each side a SessionLayer on
its own endpoint, both under MALLOC_DEBUG and the loopback send guard. Prints the ladder, the
state changes and the memory statistics before and after; returns the number of leaked blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from invsess.aio import AsyncEndpoint, SendGuard
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import IncomingCall, InviteState, MediaUpdated, SessionLayer, SessionStateChanged
from invsess.sdp import parse_sdp
from invsess.trace import Trace, render_text
from invsess.transaction import TimerConfig

#: Fast timers: every transaction of the demo has ended 64*T1 = 1.28 s after its last message.
DEMO_TIMERS = TimerConfig(t1=0.02, t2=0.16, t4=0.1)


def _sdp(user: str, port: int) -> str:
    return (
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=invsess demo\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )


async def _user_agent(name: str, rtp_port: int, trace: Trace | None) -> tuple[AsyncEndpoint, SessionLayer]:
    endpoint = Endpoint(EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=DEMO_TIMERS))
    layer = SessionLayer(endpoint, parse_sdp(_sdp(name, rtp_port)), user=name)
    agent = AsyncEndpoint(endpoint, core=layer, guard=SendGuard.loopback_only(), trace=trace)
    await agent.listen("udp:127.0.0.1:0")
    return agent, layer


async def run_call(echo: Callable[[str], None]) -> int:
    """Place, answer, hold and end one call; returns the number of leaked blocks."""
    trace = Trace()
    alice, alice_layer = await _user_agent("alice", 40000, trace)
    bob, bob_layer = await _user_agent("bob", 40002, None)
    before = [ua.endpoint.factory.statistics() for ua in (alice, bob)]
    states: list[str] = []

    def note(who: str, event: object) -> None:
        if isinstance(event, SessionStateChanged):
            cause = f" (cause {event.cause})" if event.cause else ""
            states.append(f"  {who:5s} {event.old.name} -> {event.new.name}{cause}")
        elif isinstance(event, MediaUpdated):
            media = event.local.media[0]
            states.append(f"  {who:5s} media: {media.media} {' '.join(media.formats)} {media.direction}")

    async def until(agent: AsyncEndpoint, who: str, done: Callable[[object], bool]) -> object:
        while True:
            event = await agent.next_event(timeout=5)
            note(who, event)
            if done(event):
                return event

    def state_is(state: InviteState) -> Callable[[object], bool]:
        return lambda e: isinstance(e, SessionStateChanged) and e.new is state

    bob_host, bob_port = bob.endpoint.listeners["udp"]
    session = alice_layer.invite(
        f"sip:bob@{bob_host}:{bob_port}", destination=(bob_host, bob_port), now=alice.now()
    )
    alice.flush()
    incoming = await until(bob, "bob", lambda e: isinstance(e, IncomingCall))
    if not isinstance(incoming, IncomingCall):  # pragma: no cover - until() returns exactly that
        raise TypeError(incoming)
    bob_layer.answer(incoming.session, 180, bob.now())
    bob.flush()
    await until(alice, "alice", state_is(InviteState.EARLY))
    await asyncio.sleep(0.1)  # ringing
    bob_layer.answer(incoming.session, 200, bob.now())
    bob.flush()
    await until(alice, "alice", state_is(InviteState.CONFIRMED))
    await until(bob, "bob", state_is(InviteState.CONFIRMED))
    alice_layer.reinvite(session, alice.now(), direction="sendonly")  # hold
    alice.flush()
    await until(
        alice, "alice", lambda e: isinstance(e, MediaUpdated) and e.local.media[0].direction == "sendonly"
    )
    await until(
        bob, "bob", lambda e: isinstance(e, MediaUpdated) and e.local.media[0].direction == "recvonly"
    )
    alice_layer.hangup(session, alice.now())
    alice.flush()
    await until(alice, "alice", state_is(InviteState.DISCONNECTED))
    await until(bob, "bob", state_is(InviteState.DISCONNECTED))
    for agent in (alice, bob):  # read past the DISCONNECTED event: the session's references go
        agent.core.next_event()
    reports = [await ua.close(timeout=5.0) for ua in (alice, bob)]
    after = [ua.endpoint.factory.statistics() for ua in (alice, bob)]

    echo("== A call over loopback UDP: INVITE/180/200/ACK, re-INVITE to hold, BYE ==")
    echo(render_text(trace, relative=True))
    echo("")
    echo("state changes:")
    for line in states:
        echo(line)
    echo("")
    for name, b, a in zip(("alice", "bob"), before, after, strict=True):
        echo(f"memory {name}: before used={b.used_size} real_used={b.real_used_size} fragments={b.fragments}"
             f" | peak max_used={a.max_used_size} | after used={a.used_size} real_used={a.real_used_size}"
             f" fragments={a.fragments}")  # fmt: skip
    leaked = sum(r.total_blocks for r in reports)
    for report in reports:
        if report:
            echo(report.format())
    return leaked
