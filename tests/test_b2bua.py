"""The B2BUA between two invsess user agents over loopback UDP: offers both ways (late offer,
early media, hold and resume by re-INVITE and UPDATE), CANCEL, BYE from each side, failures,
INFO DTMF, the legs' independence, a short load run, and the wrong release order caught."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from invsess.aio import ACCEPT, Call, CallFailed, DtmfReceived, SendGuard, UserAgent
from invsess.b2bua import B2bua, map_failure
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState
from invsess.memory import DanglingReferenceError, UseAfterFreeError
from invsess.sdp import SessionDescription, parse_sdp
from invsess.transaction import TimerConfig

FAST = TimerConfig(t1=0.02, t2=0.16, t4=0.1)
ALLOW = ("INVITE", "BYE", "UPDATE", "INFO", "MESSAGE", "PRACK")


def sdp(user: str, port: int, codecs: str = "0 8") -> SessionDescription:
    maps = "".join(f"a=rtpmap:{c} {'PCMU' if c == '0' else 'PCMA'}/8000\r\n" for c in codecs.split())
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {codecs}\r\n{maps}a=sendrecv\r\n"
    )


def config(**extra: object) -> EndpointConfig:
    supported = extra.pop("supported", ())
    return EndpointConfig(malloc_debug=True, allow=ALLOW, timers=FAST, accept=ACCEPT, supported=supported)  # type: ignore[arg-type]


async def trio(rel100: str = "off") -> tuple[UserAgent, B2bua, UserAgent]:
    supported = ("100rel",) if rel100 != "off" else ()
    alice = await UserAgent.create(["udp:127.0.0.1:0"], sdp=sdp("alice", 40000), user="alice",
                                   config=config(supported=supported), guard=SendGuard.loopback_only(),
                                   rel100=rel100)  # fmt: skip
    bob = await UserAgent.create(["udp:127.0.0.1:0"], sdp=sdp("bob", 40002, "8"), user="bob",
                                 config=config(supported=supported), guard=SendGuard.loopback_only(),
                                 rel100=rel100)  # fmt: skip
    host, port = bob.endpoint.listeners["udp"]
    b2bua = await B2bua.create(["udp:127.0.0.1:0"], f"sip:{host}:{port}", config=config(supported=supported),
                               guard=SendGuard.loopback_only(), rel100=rel100)  # fmt: skip
    return alice, b2bua, bob


def via(b2bua: B2bua, user: str = "bob") -> str:
    host, port = b2bua.ua.endpoint.listeners["udp"]
    return f"sip:{user}@{host}:{port}"


async def close(alice: UserAgent, b2bua: B2bua, bob: UserAgent) -> None:
    """All three at once: nothing may leak. (Each waits up to 2 s for its transactions; Timer D
    alone would keep a UDP caller's for 32 s, T1 or not.)"""
    reports = await asyncio.gather(alice.close(timeout=2), bob.close(timeout=2), b2bua.close(timeout=2))
    for report in reports:
        assert not report, report.format()
    assert b2bua.active == 0


async def test_a_bridged_call_with_hold_resume_dtmf_and_bye_from_the_caller() -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    assert incoming.request is not None and incoming.request.uri_text.startswith("sip:bob@")
    assert incoming.remote_offer == sdp("alice", 40000)  # the caller's offer, as it was
    assert incoming.call_id != call.call_id  # two legs, two dialogs
    await incoming.ring()
    await call.wait_for(InviteState.EARLY)
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    assert call.media is not None and call.media.remote.origin.username == "bob"  # bob's answer
    assert call.media.remote.media[0].formats == ("8",)
    digits: list[str] = []
    incoming.on_dtmf = lambda c, e: digits.append(e.digit)
    assert (await call.send_dtmf("7")).status_code == 200
    assert digits == ["7"]
    await call.hold()
    assert call.media.remote.media[0].direction == "recvonly"  # bob's answer to the relayed hold
    assert incoming.media is not None and incoming.media.remote.media[0].direction == "sendonly"
    await call.resume()
    assert call.media.remote.media[0].direction == "sendrecv"
    await incoming.update(sdp=sdp("bob", 40004, "8"))  # an UPDATE from bob, relayed to alice
    assert call.media.remote.media[0].port == 40004
    back = [e async for e in _until_dtmf(call, incoming)]
    assert back == ["#"]
    await call.hangup()
    await incoming.wait_for(InviteState.DISCONNECTED)
    assert incoming.cause == 200 and call.cause == 200
    await close(alice, b2bua, bob)
    assert b2bua.outcomes[200] == 1


async def _until_dtmf(call: Call, incoming: Call) -> AsyncIterator[str]:
    await incoming.send_dtmf("#")
    async for event in call.events():
        if isinstance(event, DtmfReceived):
            yield event.digit
            return


async def test_bye_from_the_callee_ends_both_legs() -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    await incoming.hangup(reason="callee left")
    await call.wait_for(InviteState.DISCONNECTED)
    assert call.cause == 200
    await close(alice, b2bua, bob)


async def test_cancel_is_propagated_487_on_both_legs() -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    await incoming.ring()
    await call.wait_for(InviteState.EARLY)
    await call.hangup()  # CANCEL
    await incoming.wait_for(InviteState.DISCONNECTED)
    assert call.cause == 487 and incoming.cause == 487
    await close(alice, b2bua, bob)


@pytest.mark.parametrize(("code", "mapped"), [(486, 486), (302, 480), (407, 403), (603, 603)])
async def test_a_failure_of_leg_b_is_leg_as_final_response(code: int, mapped: int) -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    await incoming.reject(code)
    with pytest.raises(CallFailed) as failed:
        await call.wait_for(InviteState.CONFIRMED)
    assert failed.value.cause == mapped == map_failure(code)
    await close(alice, b2bua, bob)


async def test_a_late_offer_goes_through_both_ways() -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua), with_offer=False)
    incoming = await bob.incoming(timeout=5)
    assert incoming.remote_offer is None  # leg B is a late offer too
    await incoming.answer()  # bob offers in its 2xx ...
    await call.wait_for(InviteState.CONFIRMED)
    await incoming.wait_for(InviteState.CONFIRMED)
    # ... which reached alice, whose answer (in her ACK) reached bob in the B2BUA's ACK.
    assert call.media is not None and call.media.remote.origin.username == "bob"
    assert incoming.media is not None and incoming.media.remote.origin.username == "alice"
    await call.hangup()
    await close(alice, b2bua, bob)


async def test_early_media_in_a_183_reaches_the_caller() -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    early = sdp("bob-early", 40010, "8")
    await incoming.ring(183, sdp=early)
    progress = None
    async for event in call.events():
        if type(event).__name__ == "ProgressReceived" and event.response.status_code == 183:  # type: ignore[union-attr]
            progress = event
            break
    assert progress is not None and parse_sdp(progress.response.body) == early  # type: ignore[union-attr]
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    await call.hangup()
    await close(alice, b2bua, bob)


async def test_reliable_early_media_with_100rel_on_every_hop() -> None:
    alice, b2bua, bob = await trio(rel100="supported")
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    await incoming.ring(183)  # reliable, with bob's answer
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED, timeout=10)
    assert call.media is not None and call.media.remote.origin.username == "bob"
    await call.hangup()
    await close(alice, b2bua, bob)


async def test_crossing_offers_get_491_and_both_sides_retry() -> None:
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    await incoming.wait_for(InviteState.CONFIRMED)
    await asyncio.gather(call.hold(), incoming.reinvite(sdp=sdp("bob", 40006, "8")))
    assert call.state is InviteState.CONFIRMED and incoming.state is InviteState.CONFIRMED
    await call.hangup()
    await close(alice, b2bua, bob)


async def test_a_short_load_run_through_the_b2bua_fails_nothing_and_leaks_nothing() -> None:
    alice, b2bua, bob = await trio()

    async def answer() -> None:
        async for call in bob.incoming_calls():
            asyncio.get_running_loop().create_task(call.answer())

    answering = asyncio.get_running_loop().create_task(answer())

    async def one() -> int | None:
        call = await alice.call(via(b2bua))
        try:
            await call.wait_for(InviteState.CONFIRMED)
            await asyncio.sleep(0.05)
            await call.hangup()
            return call.cause
        finally:
            await call.close()

    causes = await asyncio.gather(*(one() for _ in range(40)))
    assert causes == [200] * 40
    answering.cancel()
    await close(alice, b2bua, bob)
    assert b2bua.outcomes == {200: 40}


async def test_releasing_a_legs_dialog_before_its_session_is_caught_at_once() -> None:
    """The Asterisk crash, deliberately: a B2BUA that holds a leg's session and dialog and drops
    the dialog first frees the session under its own feet; MALLOC_DEBUG says so exactly."""
    alice, b2bua, bob = await trio()
    call = await alice.call(via(b2bua))
    incoming = await bob.incoming(timeout=5)
    held: list[Call] = []
    bridge = next(iter(b2bua.bridges))
    leg = bridge.a
    session, dialog = leg.session, leg.dialog
    session.add_ref("b2bua-test")
    dialog.add_ref("b2bua-test")
    held.append(leg)
    call_id = leg.call_id
    await incoming.answer()
    await call.wait_for(InviteState.CONFIRMED)
    await call.hangup()
    # The bridge ends and closes its legs, the leg's transactions end (64*T1): only our own
    # references keep the session and its dialog.
    async with asyncio.timeout(10):
        while b2bua.active or b2bua.ua.endpoint.transactions():
            await asyncio.sleep(0.05)
    # The wrong order: the dialog's last reference first. Its pool goes, and the session the
    # B2BUA still holds with it: caught at the release itself ...
    with pytest.raises(DanglingReferenceError) as dangling:
        dialog.dec_ref("b2bua-test")
    assert dangling.value.report.type_name == "InviteSession"
    assert [h.owner for h in dangling.value.report.holders] == ["b2bua-test"]
    assert dangling.value.report.released.context.get("call_id") == call_id
    # ... and at the very next touch of the freed session.
    with pytest.raises(UseAfterFreeError) as caught:
        session.dec_ref("b2bua-test")
    report = caught.value.report
    assert report.kind == "use-after-free" and report.type_name == "InviteSession"
    assert report.freed is not None and report.freed.context.get("call_id") == call_id
    await close(alice, b2bua, bob)  # the freed session's own pools went with it: no leak
