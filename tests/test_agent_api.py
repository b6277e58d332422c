"""The embedding API over real loopback sockets: what a softphone or a B2BUA writes with
UserAgent and Call, through their public names only."""

from __future__ import annotations

import asyncio

import pytest

from invsess.aio import (
    ACCEPT,
    Call,
    CallEnded,
    CallFailed,
    CallTimedOut,
    DtmfReceived,
    MediaChanged,
    OfferArrived,
    OfferRefusedError,
    ProgressReceived,
    Reject,
    Reply,
    RequestArrived,
    SendGuard,
    StateChanged,
    TransportFailed,
    UserAgent,
)
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState, OfferKind
from invsess.sdp import SessionDescription, parse_sdp
from invsess.sip import Request
from invsess.transaction import TimerConfig

FAST = TimerConfig(t1=0.02, t2=0.16, t4=0.1)
ALLOW = ("INVITE", "BYE", "UPDATE", "INFO", "MESSAGE")


def sdp(user: str, port: int, direction: str = "sendrecv") -> SessionDescription:
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )


async def agent(name: str, media: SessionDescription | None = None, **options: object) -> UserAgent:
    return await UserAgent.create(
        ["udp:127.0.0.1:0"],
        sdp=media if media is not None else sdp(name, 40000 if name == "alice" else 40002),
        user=name,
        config=EndpointConfig(malloc_debug=True, allow=ALLOW, timers=FAST, accept=ACCEPT),
        guard=SendGuard.loopback_only(),
        **options,  # type: ignore[arg-type]
    )


def uri(ua: UserAgent, user: str = "bob") -> str:
    host, port = ua.endpoint.listeners["udp"]
    return f"sip:{user}@{host}:{port}"


async def done(*agents: UserAgent) -> None:
    # Up to 2 s each for the transactions (Timer D would keep a UDP caller's for 32 s).
    for report in await asyncio.gather(*(ua.close(timeout=2) for ua in agents)):
        assert not report, report.format()


async def test_an_incoming_call_is_seen_whole_before_it_is_answered() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    offer = sdp("carol", 41000)
    call = await alice.call(uri(bob), sdp=offer, headers=[("X-Account", "42")], from_="sip:carol@example.com",
                            display_name="Carol")  # fmt: skip
    incoming = await bob.incoming(timeout=5)
    assert incoming.request is not None
    assert incoming.request.headers.get("X-Account") == "42"
    assert incoming.request.from_ is not None and str(incoming.request.from_.uri) == "sip:carol@example.com"
    assert incoming.request.from_.display_name == "Carol"
    assert incoming.remote_offer == offer
    answer = sdp("dave", 42000)
    await incoming.ring(180)
    await incoming.answer(200, sdp=answer, headers=[("X-Answered-By", "dave")])
    await call.wait_for(InviteState.CONFIRMED)
    assert call.media is not None and call.media.remote == answer
    await call.hangup(reason="bye now")
    await incoming.wait_for(InviteState.DISCONNECTED)
    events = [e async for e in call.events()]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "StateChanged" and kinds[-1] == "CallEnded"
    assert [e.new.name for e in events if isinstance(e, StateChanged)] == [
        "CALLING", "EARLY", "CONNECTING", "CONFIRMED", "DISCONNECTED",
    ]  # fmt: skip
    assert any(isinstance(e, ProgressReceived) and e.response.status_code == 180 for e in events)
    assert any(isinstance(e, MediaChanged) for e in events)
    assert events[-1] == CallEnded(200, None)
    await call.close()
    await incoming.close()
    await done(alice, bob)


async def test_a_refused_call_raises_call_failed_with_the_final_response() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    call = await alice.call(uri(bob))
    incoming = await bob.incoming(timeout=5)
    await incoming.reject(486, "Busy Here", headers=[("X-Why", "in a meeting")])
    with pytest.raises(CallFailed) as failed:
        await call.wait_for(InviteState.CONFIRMED)
    assert failed.value.cause == 486 and failed.value.response is not None
    assert failed.value.response.headers.get("X-Why") == "in a meeting"
    assert "486 Busy Here" in str(failed.value)
    with pytest.raises(Exception, match="3xx-6xx"):
        await incoming.reject(200)
    await done(alice, bob)


async def test_timeouts_and_unresolvable_hosts_have_their_own_errors() -> None:
    alice = await agent("alice")
    call = await alice.call("sip:nobody@127.0.0.1:9")  # nothing answers there
    with pytest.raises(CallTimedOut) as timed_out:
        await call.wait_for(InviteState.CONFIRMED, timeout=10)
    assert timed_out.value.cause == 408 and timed_out.value.response is None
    with pytest.raises(TransportFailed, match=r"no\.such\.host\.invalid"):
        await alice.call("sip:bob@no.such.host.invalid:5060")
    await done(alice)


async def test_a_host_name_is_resolved_before_the_invite_goes() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    port = bob.endpoint.listeners["udp"][1]
    call = await alice.call(f"sip:bob@localhost:{port}")
    incoming = await bob.incoming(timeout=5)
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    await call.hangup()
    await done(alice, bob)


async def test_an_offer_handler_may_await_before_answering_and_the_reinvite_waits() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    released = asyncio.Event()
    seen: list[OfferArrived] = []

    async def on_offer(call: Call, offer: OfferArrived) -> SessionDescription | Reject | None:
        seen.append(offer)
        await released.wait()  # e.g. a B2BUA waiting for the other leg's answer
        return sdp("other-leg", 43000, "recvonly")

    bob.on_offer = on_offer
    call = await alice.call(uri(bob))
    incoming = await bob.incoming(timeout=5)
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    hold = asyncio.ensure_future(call.hold())
    await asyncio.sleep(0.4)
    assert not hold.done() and seen and seen[0].kind is OfferKind.REINVITE
    assert seen[0].sdp is not None and seen[0].sdp.media[0].direction == "sendonly"
    released.set()
    await asyncio.wait_for(hold, 5)
    assert call.media is not None and call.media.remote.origin.username == "other-leg"
    await call.hangup()
    await done(alice, bob)


async def test_an_offer_handler_can_refuse_and_a_failing_one_refuses_with_500() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    replies: list[Reject | None] = [Reject(488, "No Hold Here"), None]

    async def on_offer(call: Call, offer: OfferArrived) -> SessionDescription | Reject | None:
        reply = replies.pop(0)
        if reply is None:
            raise RuntimeError("the handler's own bug")
        return reply

    call = await alice.call(uri(bob))
    incoming = await bob.incoming(timeout=5)
    incoming.on_offer = on_offer
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    before = call.media
    with pytest.raises(OfferRefusedError) as refused:
        await call.hold()  # refused: the call goes on as it was
    assert refused.value.cause == 488 and refused.value.reason == "No Hold Here"
    assert call.media is before and call.state is InviteState.CONFIRMED
    with pytest.raises(OfferRefusedError, match="500"):
        await call.resume()  # the handler raises: 500
    assert call.media is before and call.state is InviteState.CONFIRMED
    await call.hangup()
    await done(alice, bob)


async def test_a_late_offer_answered_by_the_callers_handler_in_its_ack() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    answered: list[SessionDescription | None] = []

    async def on_offer(call: Call, offer: OfferArrived) -> SessionDescription | Reject | None:
        answered.append(offer.sdp)
        await asyncio.sleep(0.05)
        return sdp("late", 44000)

    call = await alice.call(uri(bob), with_offer=False, on_offer=on_offer)
    incoming = await bob.incoming(timeout=5)
    assert incoming.remote_offer is None
    await incoming.answer()  # bob offers in its 2xx
    await call.wait_for(InviteState.CONFIRMED)
    await incoming.wait_for(InviteState.CONFIRMED)
    assert answered and answered[0] is not None and answered[0].origin.username == "bob"
    assert incoming.media is not None and incoming.media.remote.origin.username == "late"
    await call.hangup()
    await done(alice, bob)


async def test_dtmf_info_and_message_with_handlers_and_callbacks() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    call = await alice.call(uri(bob))
    incoming = await bob.incoming(timeout=5)
    digits: list[str] = []
    states: list[str] = []
    incoming.on_dtmf = lambda c, e: digits.append(e.digit)
    incoming.on_state = lambda c, e: states.append(e.new.name if isinstance(e, StateChanged) else "ended")

    async def on_request(c: Call, request: Request) -> int | Reply:
        if request.method == "MESSAGE":
            return Reply(200, body=b"got " + request.body, content_type="text/plain")
        return 200

    incoming.on_request = on_request
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    assert (await call.send_dtmf("5")).status_code == 200
    assert (await call.send_dtmf("#", relay=False)).status_code == 200
    reply = await call.send_request("MESSAGE", body=b"hello", content_type="text/plain")
    assert reply.status_code == 200 and reply.body == b"got hello"
    back = await incoming.send_request("INFO", headers=[("X-Note", "1")])
    assert back.status_code == 200  # alice has no handler: 200 for INFO
    with pytest.raises(ValueError, match="DTMF"):
        await call.send_dtmf("x")
    await call.hangup()
    await incoming.wait_for(InviteState.DISCONNECTED)
    assert digits == ["5", "#"]
    assert states[-2:] == ["DISCONNECTED", "ended"]
    got = [e async for e in incoming.events()]
    assert [e.digit for e in got if isinstance(e, DtmfReceived)] == ["5", "#"]
    assert [e.request.method for e in got if isinstance(e, RequestArrived)] == ["INFO", "INFO", "MESSAGE"]
    await done(alice, bob)


async def test_a_ua_without_sdp_must_be_given_one() -> None:
    alice, b2b = await agent("alice"), await UserAgent.create(
        ["udp:127.0.0.1:0"], user="b2b", config=EndpointConfig(malloc_debug=True, allow=ALLOW, timers=FAST),
        guard=SendGuard.loopback_only(),
    )  # fmt: skip
    call = await alice.call(uri(b2b))
    incoming = await b2b.incoming(timeout=5)
    with pytest.raises(Exception, match="no local SDP"):
        await incoming.answer()
    await incoming.answer(200, sdp=sdp("passed-through", 45000))
    await call.wait_for(InviteState.CONFIRMED)
    assert call.media is not None and call.media.remote.origin.username == "passed-through"
    out = await b2b.call(uri(alice, "alice"))  # no SDP anywhere: a late offer
    ringing = await alice.incoming(timeout=5)
    assert ringing.remote_offer is None
    await ringing.reject(603)
    with pytest.raises(CallFailed):
        await out.wait_for(InviteState.CONFIRMED)
    await call.hangup()
    await done(alice, b2b)


async def test_incoming_calls_stream_and_on_incoming_callback() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    seen: list[Call] = []
    bob.on_incoming = seen.append
    first = await alice.call(uri(bob))
    await asyncio.sleep(0.2)
    assert len(seen) == 1
    await seen[0].reject(480)
    bob.on_incoming = None
    second = await alice.call(uri(bob))

    async def take_one() -> Call:
        async for call in bob.incoming_calls():
            return call
        raise AssertionError("no call")

    got = await asyncio.wait_for(take_one(), 5)
    await got.answer()
    await second.wait_for(InviteState.CONFIRMED)
    assert first.cause == 480
    await second.hangup(code=503, reason="maintenance")
    await got.wait_for(InviteState.DISCONNECTED)
    assert got.cause == 200
    await done(alice, bob)


async def test_requests_without_a_handler_get_their_default_answers() -> None:
    alice = await agent("alice")
    bob = await UserAgent.create(
        ["udp:127.0.0.1:0"], sdp=sdp("bob", 40002), user="bob", guard=SendGuard.loopback_only(),
        config=EndpointConfig(malloc_debug=True, allow=(*ALLOW, "NOTIFY"), timers=FAST, accept=ACCEPT),
    )  # fmt: skip
    call = await alice.call(uri(bob))
    incoming = await bob.incoming(timeout=5)
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    assert (await call.send_request("INFO")).status_code == 200  # legacy INFO usage
    bad = await call.send_request("INFO", headers=[("Info-Package", "foo")])
    assert (bad.status_code, bad.reason) == (469, "Bad Info Package")  # RFC 6086 §4.2.2
    assert (await call.send_request("NOTIFY", headers=[("Event", "x")])).status_code == 501
    assert (
        await call.send_request("REFER", headers=[("Refer-To", "sip:x@y")])
    ).status_code == 405  # not served
    await call.hangup()
    await done(alice, bob)


async def test_calls_answered_and_released_from_callbacks_alone() -> None:
    """No task per call: ``answer_now`` from ``on_incoming``, ``release`` from ``on_state`` at
    CallEnded; the callee's calls are gone as soon as they end, and nothing leaks."""
    alice, bob = await agent("alice"), await agent("bob")
    ended: list[tuple[str, int | None]] = []

    def on_state(call: Call, event: object) -> None:
        if isinstance(event, CallEnded):
            ended.append((call.call_id, event.cause))
            call.release()
            call.release()  # a second release is a no-op, never a second dec_ref

    def on_incoming(call: Call) -> None:
        call.on_state = on_state
        wanted = call.request.headers.get("X-Answer") if call.request is not None else None
        call.answer_now(int(wanted or 200))

    bob.on_incoming = on_incoming
    connected = await alice.call(uri(bob))
    await connected.wait_for(InviteState.CONFIRMED)
    assert len(bob.calls) == 1
    busy = await alice.call(uri(bob), headers=[("X-Answer", "486")])
    with pytest.raises(CallFailed) as refused:
        await busy.wait_for(InviteState.CONFIRMED)
    assert refused.value.response is not None and refused.value.response.status_code == 486
    await connected.hangup()
    async with asyncio.timeout(5):
        while len(ended) < 2:
            await asyncio.sleep(0.01)
    assert len(ended) == 2 and {cause for _, cause in ended} == {200, 486}
    assert bob.calls == []  # released from the callback: no close() left to call
    await connected.close()
    await busy.close()
    await done(alice, bob)
