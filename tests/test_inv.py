"""INVITE sessions end to end on the simulated network: calls, CANCEL, BYE, re-INVITE, memory."""

from __future__ import annotations

import itertools

import pytest

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    ForkedCall,
    IncomingCall,
    InviteSession,
    InviteState,
    SessionLayer,
    SessionStateChanged,
)
from invsess.inv.states import TRANSITIONS, Effect
from invsess.memory import DanglingReferenceError, UseAfterFreeError
from invsess.sdp import parse_sdp
from invsess.sip import LocalProtocolError, Request, Response, make_response
from invsess.testing import LinkProfile, ScriptedPeer, SimNetwork
from invsess.transaction import Outgoing

from .sessions import ALICE_SDP, A, B, World, agreed_direction, finish, layer_at


def test_a_whole_call() -> None:
    w = World()
    alice, bob = w.call()
    w.bob.answer(bob, 180, w.net.now)
    w.run(0.1)
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.1)
    assert alice.state is InviteState.CONFIRMED
    assert bob.state is InviteState.CONFIRMED
    assert alice.negotiator.active_remote is not None
    assert alice.negotiator.active_remote.media[0].formats == ("8",)
    w.alice.hangup(alice, w.net.now)
    w.run(0.2)
    assert w.states("alice") == ["CALLING", "EARLY", "CONNECTING", "CONFIRMED", "DISCONNECTED"]
    assert w.states("bob") == ["INCOMING", "EARLY", "CONNECTING", "CONFIRMED", "DISCONNECTED"]
    assert ("alice", "media", "sendrecv") in w.log and ("bob", "media", "sendrecv") in w.log
    assert [d for wh, k, d in w.log if k == "state" and d[0] == "DISCONNECTED"] == [("DISCONNECTED", 200)] * 2  # type: ignore[index]
    w.settle()


def test_rejected_call() -> None:
    w = World()
    alice, bob = w.call()
    w.bob.answer(bob, 486, w.net.now)
    w.run(0.2)
    assert alice.state is InviteState.DISCONNECTED
    assert alice.cause == 486
    assert w.states("bob") == ["INCOMING", "DISCONNECTED"]
    w.settle()


@pytest.mark.virtual_time  # exact virtual timing
def test_cancel_before_any_provisional_is_held() -> None:
    w = World()
    alice, bob = w.call()
    w.alice.hangup(alice, w.net.now)  # no 1xx yet (the 100 comes at 0.22 s): RFC 3261 §9.1 says wait
    w.run(0.1)
    assert not any(o.first_line.startswith("CANCEL") for o in w.net.trace)
    w.run(0.5)
    (trying,) = [e for e in w.net.trace if e.first_line.startswith("SIP/2.0 100")]
    (cancel,) = [e for e in w.net.trace if e.first_line.startswith("CANCEL")]
    assert cancel.time == pytest.approx(trying.time + 0.01)  # sent as the 100 arrived
    assert alice.cause == 487
    assert bob.cause == 487
    assert bob.state is InviteState.DISCONNECTED
    assert w.states("bob")[-1] == "DISCONNECTED"
    w.settle()


def test_uas_hangup_in_connecting_waits_for_the_ack() -> None:
    w = World()
    _, bob = w.call()
    w.bob.answer(bob, 200, w.net.now)
    w.bob.hangup(bob, w.net.now)  # before the ACK arrived
    assert bob.state is InviteState.CONNECTING
    w.run(0.5)
    lines = [e.first_line.split(" ")[0] for e in w.net.trace]
    assert lines.index("ACK") < lines.index("BYE")
    w.settle()


@pytest.mark.virtual_time  # exact timings or counts of retransmissions
def test_ack_timeout_ends_the_call_with_bye() -> None:
    w = World()
    w.net.link(A, B, LinkProfile(), both_ways=True)
    _, bob = w.call()
    dropped: list[float] = []
    original = w.alice.endpoint.send_stateless_bytes

    def lose_acks(data: bytes, destination, transport: str) -> None:
        if data.startswith(b"ACK"):
            dropped.append(w.net.now)
            return
        original(data, destination, transport)

    w.alice.endpoint.send_stateless_bytes = lose_acks  # type: ignore[method-assign]
    w.bob.answer(bob, 200, w.net.now)
    w.run(40)
    oks = [
        e.time
        for e in w.net.trace
        if e.first_line.startswith("SIP/2.0 200") and e.source == B and b"INVITE" in e.data
    ]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(oks)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]  # T1 doubling, capped at T2
    # Bob's session is released once its DISCONNECTED event was read (the test holds no
    # reference to it, so touching it now would be a use-after-free): read the events instead.
    assert [d for wh, k, d in w.log if wh == "bob" and k == "state"][-1] == ("DISCONNECTED", 408)
    assert any(e.first_line.startswith("BYE") and e.source == B for e in w.net.trace)
    assert len(dropped) == len(oks)  # alice ACKed every 2xx retransmission
    w.settle()


def test_hold_and_resume_by_reinvite() -> None:
    w = World()
    alice, bob = w.connected(0.2)
    w.alice.reinvite(alice, w.net.now, direction="sendonly")
    w.run(0.3)
    assert agreed_direction(bob) == "recvonly"
    assert agreed_direction(alice) == "sendonly"
    w.alice.reinvite(alice, w.net.now, direction="sendrecv")
    w.run(0.3)
    assert agreed_direction(bob) == "sendrecv"
    assert alice.state is bob.state is InviteState.CONFIRMED
    with pytest.raises(LocalProtocolError):
        w.bob.answer(bob, 200, w.net.now)
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_reinvite_glare_gets_491_and_a_retry_wins() -> None:
    w = World(profile=LinkProfile(latency=0.05))
    alice, bob = w.connected(0.3)
    w.alice.reinvite(alice, w.net.now, direction="sendonly")
    w.bob.reinvite(bob, w.net.now, direction="sendonly")
    w.run(10)
    assert [e for e in w.net.trace if e.first_line.startswith("SIP/2.0 491")]
    reinvites = [e for e in w.net.trace if e.first_line.startswith("INVITE") and e.time > 0.2]
    assert len(reinvites) >= 3  # both, then at least one retry after the back-off
    assert alice.state is bob.state is InviteState.CONFIRMED
    assert alice.offers.retry_at is None and bob.offers.retry_at is None
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_late_offer_in_2xx_answer_in_ack() -> None:
    w = World()
    alice, bob = w.call(with_offer=False)
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    ack = next(e for e in w.net.trace if e.first_line.startswith("ACK"))
    assert b"m=audio 4000 RTP/AVP 8" in ack.data  # alice's answer rides in the ACK
    assert bob.negotiator.active_remote is not None
    assert alice.state is InviteState.CONFIRMED
    w.bob.hangup(bob, w.net.now)
    w.settle()


def test_unacceptable_offer_gets_488() -> None:
    w = World()
    w.bob.local_sdp = parse_sdp(
        "v=0\r\no=bob 1 1 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
    )
    session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    w.run(0.5)
    assert session.cause == 488
    assert not [k for _, k, _ in w.log if k == "incoming"]
    w.settle()


@pytest.mark.virtual_time  # exact timings or counts of retransmissions
def test_the_asterisk_crash_with_real_sessions() -> None:
    """Application references dropped dialog first: the next touch of the session fails."""
    w = World()
    alice, bob = w.call()
    bob.add_ref("app")
    bob.dialog.add_ref("app")
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    w.alice.hangup(alice, w.net.now)
    w.net.run_until_idle(limit=120)
    w.drain()
    w.drain()
    dialog = bob.dialog
    with pytest.raises(DanglingReferenceError):  # caught at the release: the session is still held
        dialog.dec_ref("app")  # wrong order: the pool holding the session goes now
    with pytest.raises(UseAfterFreeError) as info:
        bob.dec_ref("app")
    report = info.value.report
    assert report.type_name == "InviteSession"
    assert report.context["state"] == "TERMINATED"
    assert report.context["call_id"] == bob_call_id(w)
    assert "dialog session count 1 -> 0" in report.freed.reason  # type: ignore[union-attr]


def bob_call_id(w: World) -> str:
    invite = next(e for e in w.net.trace if e.first_line.startswith("INVITE"))
    return invite.data.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()


def test_the_right_order_leaks_nothing() -> None:
    w = World()
    alice, bob = w.call()
    bob.add_ref("app")
    bob.dialog.add_ref("app")
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    w.alice.hangup(alice, w.net.now)
    w.net.run_until_idle(limit=120)
    w.drain()
    w.drain()
    dialog = bob.dialog
    bob.dec_ref("app")  # session first
    dialog.dec_ref("app")  # dialog second
    w.settle()


@pytest.mark.virtual_time  # exact timings or counts of retransmissions
def test_calls_survive_a_lossy_network() -> None:
    w = World(seed=3, profile=LinkProfile(latency=0.02, jitter=0.01, loss=0.15, duplicate=0.05, reorder=0.05))
    for _ in range(20):
        session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=w.net.now)
        w.net.run_until(w.net.now + 5)
        for _, kind, detail in w.drain():
            if kind == "incoming":
                w.bob.answer(detail, 200, w.net.now)  # type: ignore[arg-type]
        w.net.run_until(w.net.now + 5)
        w.drain()
        if session.state is InviteState.CONFIRMED:
            w.alice.hangup(session, w.net.now)
        w.net.run_until(w.net.now + 40)
        w.drain()
    finals = [d for wh, k, d in w.log if wh == "alice" and k == "state" and d[0] == "DISCONNECTED"]  # type: ignore[index]
    assert len(finals) == 20  # every call ended
    w.settle()


def test_table_reaches_disconnected_from_everywhere() -> None:
    states = {s for s, _ in TRANSITIONS} | {nxt for nxt, _ in TRANSITIONS.values()}
    assert states == set(InviteState)
    for state in InviteState:
        if state not in (InviteState.DISCONNECTED, InviteState.NULL):
            assert any(
                s is state and nxt is InviteState.DISCONNECTED and effect is Effect.END
                for (s, _), (nxt, effect) in TRANSITIONS.items()
            ), state
    # and only the END effect leads there, and END leads nowhere else
    for (_, _), (nxt, effect) in TRANSITIONS.items():
        assert (nxt is InviteState.DISCONNECTED) == (effect is Effect.END)


def test_outgoing_type() -> None:
    assert Outgoing(b"x", A, "udp").transport == "udp"


@pytest.mark.virtual_time  # exact timings or counts of retransmissions
def test_update_changes_media_without_an_ack() -> None:
    w = World()
    alice, bob = w.connected(0.2)
    w.bob.update(bob, w.net.now, direction="sendonly")
    w.run(0.3)
    assert agreed_direction(alice) == "recvonly"
    updates = [e for e in w.net.trace if e.first_line.startswith("UPDATE")]
    assert len(updates) == 1
    last_ack = [e for e in w.net.trace if e.first_line.startswith("ACK")][-1]
    assert last_ack.time < updates[0].time  # nothing acknowledges an UPDATE's 2xx
    w.bob.reinvite(bob, w.net.now)
    with pytest.raises(LocalProtocolError, match="in progress"):
        w.bob.update(bob, w.net.now)  # one offer at a time
    w.run(0.5)
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_update_while_our_offer_is_pending_gets_491() -> None:
    w = World(profile=LinkProfile(latency=0.05))
    alice, bob = w.connected(0.4)
    w.alice.update(alice, w.net.now, direction="sendonly")
    w.bob.update(bob, w.net.now, direction="inactive")
    w.run(10)
    assert [e for e in w.net.trace if e.first_line.startswith("SIP/2.0 491")]
    assert alice.offers.retry_at is None and bob.offers.retry_at is None
    assert alice.negotiator.state.name == "DONE"
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_408_to_a_reinvite_ends_the_call_with_bye() -> None:
    w = World()
    alice, bob = w.connected(0.2)
    w.net.partition(A, B)
    w.alice.reinvite(alice, w.net.now, direction="sendonly")
    w.run(40)  # Timer B: 32 s
    states = [d for wh, k, d in w.log if wh == "alice" and k == "state"]
    assert states[-1] == ("DISCONNECTED", 408)
    assert any(e.first_line.startswith("BYE") and e.fate == "partitioned" for e in w.net.trace)
    w.net.heal()
    w.bob.hangup(bob, w.net.now)
    w.settle()


FORK_200 = """SIP/2.0 200 OK
Via: {via}
From: {from_}
To: <sip:bob@127.0.0.2:5060>;tag={to_tag}
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:fork@127.0.0.9:5060>
Content-Type: application/sdp
Content-Length: {content_length}

v=0
o=fork 1 1 IN IP4 127.0.0.9
s=-
c=IN IP4 127.0.0.9
t=0 0
m=audio 7000 RTP/AVP 0
"""


def test_a_second_forked_2xx_gets_ack_and_bye() -> None:

    net = SimNetwork(1)
    alice = SessionLayer(
        Endpoint(EndpointConfig(seed=1, malloc_debug=True, allow=("INVITE", "BYE"))), ALICE_SDP, user="alice"
    )
    net.attach(alice, A)
    forker = ScriptedPeer(net, ("127.0.0.9", 5060), name="forker")
    session = alice.invite("sip:bob@127.0.0.9:5060", destination=("127.0.0.9", 5060), now=0.0)
    session.add_ref("test")
    session.dialog.add_ref("test")
    invite = forker.expect(method="INVITE")
    assert isinstance(invite, Request)
    via, from_ = invite.headers.get("Via"), invite.headers.get("From")
    for tag in ("fork-one", "fork-two"):  # two branches of a forking proxy both answer
        forker.send(FORK_200, A, to_tag=tag, via=via, from_=from_, call_id=invite.call_id)
    acks = [forker.expect(method="ACK"), forker.expect(method="ACK")]
    bye = forker.expect(method="BYE")
    assert isinstance(bye, Request)
    assert bye.to is not None and bye.to.tag == "fork-two"  # the second fork is hung up
    assert sorted(a.to.tag or "" for a in acks if a.to) == ["fork-one", "fork-two"]  # both 2xx acknowledged
    forker.send(FORK_200, A, to_tag="fork-two", via=via, from_=from_, call_id=invite.call_id)  # again
    again = forker.expect(method="ACK")
    assert again.to is not None and again.to.tag == "fork-two"  # the same ACK, and no second BYE:
    forker.expect_nothing(within=0.3)  # (the first BYE is not answered yet, so it is still quiet)
    forker.send(make_response(bye, 200), A)
    assert session.state is InviteState.CONFIRMED
    assert session.dialog.remote_tag == "fork-one"
    alice.hangup(session, net.now)
    bye1 = forker.expect(method="BYE")
    assert isinstance(bye1, Request)
    forker.send(make_response(bye1, 200), A)
    net.run_until_idle(limit=120)
    while alice.next_event() is not None:
        pass
    dialog = session.dialog
    session.dec_ref("test")
    dialog.dec_ref("test")
    alice.next_event()
    assert not alice.close(net.now)


def test_an_application_may_keep_the_call_a_second_fork_answered() -> None:
    net = SimNetwork(2)
    alice = SessionLayer(
        Endpoint(EndpointConfig(seed=2, malloc_debug=True, allow=("INVITE", "BYE"))),
        ALICE_SDP,
        user="alice",
        keep_forks=True,
    )
    net.attach(alice, A)
    forker = ScriptedPeer(net, ("127.0.0.9", 5060), name="forker")
    session = alice.invite("sip:bob@127.0.0.9:5060", destination=("127.0.0.9", 5060), now=0.0)
    invite = forker.expect(method="INVITE")
    assert isinstance(invite, Request)
    via, from_ = invite.headers.get("Via"), invite.headers.get("From")
    for tag in ("fork-one", "fork-two"):
        forker.send(FORK_200, A, to_tag=tag, via=via, from_=from_, call_id=invite.call_id)
    acks = [forker.expect(method="ACK"), forker.expect(method="ACK")]
    assert sorted(a.to.tag or "" for a in acks if a.to) == ["fork-one", "fork-two"]
    forker.expect_nothing(within=0.3)  # no BYE: the fork is kept
    events = list(iter(alice.next_event, None))
    (forked_event,) = [e for e in events if isinstance(e, ForkedCall)]
    forked = forked_event.session
    assert forked_event.original is session and forked is not session
    assert forked.state is InviteState.CONFIRMED and forked.dialog.remote_tag == "fork-two"
    assert forked.dialog.pool is not session.dialog.pool  # its own dialog, its own pool
    assert forked.negotiator.active_remote is not None  # its answer, negotiated against our offer
    assert [e.new.name for e in events if isinstance(e, SessionStateChanged) and e.session is forked] == [
        "CALLING", "CONNECTING", "CONFIRMED"
    ]  # fmt: skip
    for call in (session, forked):
        alice.hangup(call, net.now)
        bye = forker.expect(method="BYE")
        forker.send(make_response(bye, 200), A)  # type: ignore[arg-type]
    finish(net, alice)


# -- a scripted caller: what a well-behaved UA never does, a real peer may ------------------------

CALLER_INVITE = """INVITE sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch=z9hG4bKcaller1
From: <sip:caller@127.0.0.1>;tag=caller-1
To: <sip:bob@127.0.0.2>
Call-ID: caller-call-1
CSeq: 1 INVITE
Contact: <sip:caller@{local}>
Content-Length: 0

"""

CALLER_IN_DIALOG = """{method} sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:caller@127.0.0.1>;tag=caller-1
To: {to}
Call-ID: caller-call-1
CSeq: {cseq} {method}
Content-Type: application/sdp
Content-Length: {content_length}

{body}"""


def _scripted_caller(
    allow: tuple[str, ...] = ("INVITE", "BYE"),
) -> tuple[SimNetwork, SessionLayer, ScriptedPeer, InviteSession]:
    net = SimNetwork(9)
    bob = layer_at(net, B, seed=9, user="bob", allow=allow)
    caller = ScriptedPeer(net, A, name="caller")
    caller.send(CALLER_INVITE, B)
    net.run_until(0.1)
    incoming = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall))
    return net, bob, caller, incoming.session


def _in_dialog(caller: ScriptedPeer, method: str, to: str, cseq: int, body: str = "") -> None:
    # The body goes in as it is (fill() formats the head only: SDP may hold braces).
    template = CALLER_IN_DIALOG.replace("{body}", body)
    if not body:
        template = template.replace("Content-Type: application/sdp\n", "")
    if method == "ACK":
        template = template.replace("{branch}", "z9hG4bKcaller1")
    caller.send(template, B, method=method, to=to, cseq=cseq)


def test_a_bye_in_an_early_dialog_ends_the_invite_with_487() -> None:
    net, bob, caller, session = _scripted_caller()
    bob.answer(session, 180, net.now)
    ringing = caller.expect(status=180)
    _in_dialog(caller, "BYE", ringing.headers.get("To") or "", 2)
    assert isinstance(caller.expect(status=200), Response)
    final = caller.expect(status=487)  # RFC 3261 §15.1.2: the INVITE ends too
    assert final.cseq is not None and final.cseq.method == "INVITE"
    states = [e.new.name for e in iter(bob.next_event, None) if isinstance(e, SessionStateChanged)]
    assert states[-1] == "DISCONNECTED"
    _in_dialog(caller, "ACK", ringing.headers.get("To") or "", 1)
    finish(net, bob)


def test_a_bye_before_the_ack_ends_the_call() -> None:
    net, bob, caller, session = _scripted_caller()
    bob.answer(session, 200, net.now)
    ok = caller.expect(status=200)
    _in_dialog(caller, "BYE", ok.headers.get("To") or "", 2)  # the ACK was lost, the BYE was not
    caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.method == "BYE")
    changes = [e for e in iter(bob.next_event, None) if isinstance(e, SessionStateChanged)]
    assert (changes[-1].old.name, changes[-1].new.name, changes[-1].cause) == (
        "CONNECTING",
        "DISCONNECTED",
        200,
    )
    finish(net, bob)


def test_an_unusable_answer_in_the_ack_ends_the_call_with_bye_488() -> None:
    net, bob, caller, session = _scripted_caller()  # an INVITE without SDP: our 2xx offers
    bob.answer(session, 200, net.now)
    ok = caller.expect(status=200)
    assert b"m=audio" in ok.body
    video_only = (
        "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 0 RTP/AVP 31\r\n"
    )
    _in_dialog(caller, "ACK", ok.headers.get("To") or "", 1, body=video_only)
    bye = caller.expect(method="BYE")
    assert "cause=488" in (bye.headers.get("Reason") or "")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    changes = [e for e in iter(bob.next_event, None) if isinstance(e, SessionStateChanged)]
    assert (changes[-1].old.name, changes[-1].new.name, changes[-1].cause) == (
        "CONNECTING",
        "DISCONNECTED",
        488,
    )
    finish(net, bob)


def test_a_cancel_whose_invite_never_gets_its_487_ends_after_64_t1() -> None:
    """RFC 3261 §9.1: the callee said 200 to the CANCEL and then nothing: 64*T1 later the INVITE
    is given up, the session ends (487) and its transaction is gone."""
    net = SimNetwork(12)
    alice = layer_at(net, A, seed=12, user="alice", allow=("INVITE", "BYE"))
    callee = ScriptedPeer(net, B, name="callee")
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    invite = callee.expect(method="INVITE")
    assert isinstance(invite, Request)
    callee.send(make_response(invite, 180, to_tag="callee-1", headers=[("Contact", "<sip:b@127.0.0.2>")]), A)
    net.run_until(net.now + 0.1)
    alice.hangup(session, net.now)
    cancel = callee.expect(method="CANCEL")
    callee.send(make_response(cancel, 200), A)  # type: ignore[arg-type]
    sent = net.now
    net.run_until(sent + 31.0)
    assert session.state is InviteState.EARLY  # still waiting for the 487 ...
    net.run_until(sent + 33.0)
    assert (session.state.name, session.cause) == ("DISCONNECTED", 487)  # ... not for ever
    finish(net, alice)


def test_a_callee_never_byes_an_early_dialog() -> None:
    """Bob's UPDATE in the early dialog gets 481: the dialog must end, but a callee may not send
    BYE on an early dialog (RFC 3261 §15): the INVITE gets a final response instead."""
    net = SimNetwork(13)
    bob = layer_at(net, B, seed=13, user="bob", allow=("INVITE", "BYE", "UPDATE"))
    caller = ScriptedPeer(net, A, name="caller")
    offer = ALICE_SDP.serialize().decode()
    caller.send(CALLER_INVITE.replace("Content-Length: 0\n\n", "Content-Type: application/sdp\n"
                                      "Content-Length: {content_length}\n\n" + offer), B)  # fmt: skip
    net.run_until(0.1)
    session = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall)).session
    bob.answer(session, 183, net.now, sdp=ALICE_SDP)  # the INVITE's offer answered (early media)
    caller.expect(status=183)
    bob.update(session, net.now, direction="sendonly")
    update = caller.expect(method="UPDATE")
    caller.send(make_response(update, 481), B)  # type: ignore[arg-type]
    final = caller.expect(status=500)
    assert final.cseq is not None and final.cseq.method == "INVITE"
    _in_dialog(caller, "ACK", final.headers.get("To") or "", 1)
    net.run_until(net.now + 1)
    assert not any(e.first_line.startswith("BYE") for e in net.trace)
    finish(net, bob)


def test_a_reinvite_2xx_never_acked_ends_the_call_with_bye_408() -> None:
    """RFC 3261 §13.3.1.4 holds for a re-INVITE too: our 2xx is retransmitted, and 64*T1 without
    its ACK ends the session with BYE."""
    net, bob, caller, session = _scripted_caller()
    bob.answer(session, 200, net.now)
    ok = caller.expect(status=200)
    to = ok.headers.get("To") or ""
    _in_dialog(caller, "ACK", to, 1, body=ALICE_SDP.serialize().decode())
    net.run_until(net.now + 0.1)
    _in_dialog(caller, "INVITE", to, 2, body=ALICE_SDP.serialize().decode())  # and never an ACK
    caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.number == 2)
    bye = caller.expect(method="BYE", within=40)
    assert "cause=408" in (bye.headers.get("Reason") or "")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    changes = [e for e in iter(bob.next_event, None) if isinstance(e, SessionStateChanged)]
    assert (changes[-1].old, changes[-1].new, changes[-1].cause) == (
        InviteState.CONFIRMED,
        InviteState.DISCONNECTED,
        408,
    )
    finish(net, bob)


def test_an_update_before_the_ack_is_answered() -> None:
    """The callee's dialog is confirmed by its 2xx: an UPDATE may overtake the ACK (RFC 3311)."""
    net, bob, caller, session = _scripted_caller(allow=("INVITE", "BYE", "UPDATE"))
    bob.answer(session, 200, net.now)
    ok = caller.expect(status=200)
    to = ok.headers.get("To") or ""
    assert session.state is InviteState.CONNECTING
    _in_dialog(caller, "UPDATE", to, 2)  # a refresh without SDP, before the ACK
    caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.method == "UPDATE")
    _in_dialog(caller, "ACK", to, 1, body=ALICE_SDP.serialize().decode())
    net.run_until(net.now + 0.1)
    assert session.state.name == "CONFIRMED"  # (mypy narrowed the state above)
    bob.hangup(session, net.now)
    bye = caller.expect(method="BYE")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    finish(net, bob)


def test_a_session_timer_shorter_than_the_ack_wait_ends_a_call_never_acked() -> None:
    """With a test bed's short session timer, the callee's timer can run out before the ACK wait
    (64*T1): the session ends from CONNECTING, with BYE, like any expiry (RFC 4028 §10)."""
    from invsess.inv import TimerSettings

    net = SimNetwork(14)
    bob = layer_at(net, B, seed=14, user="bob", allow=("INVITE", "BYE"),
                   timer=TimerSettings(session_expires=4, min_se=4, floor=4))  # fmt: skip
    caller = ScriptedPeer(net, A, name="caller")
    caller.send(CALLER_INVITE.replace("Content-Length: 0", "Supported: timer\nSession-Expires: 4;refresher=uac\n"
                                      "Min-SE: 4\nContent-Length: 0"), B)  # fmt: skip
    net.run_until(0.1)
    session = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall)).session
    bob.answer(session, 200, net.now)
    caller.expect(status=200)  # and no ACK, ever
    bye = caller.expect(method="BYE", within=5)
    assert 'text="Session timer expired"' in (bye.headers.get("Reason") or "")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    changes = [e for e in iter(bob.next_event, None) if isinstance(e, SessionStateChanged)]
    assert (changes[-1].old, changes[-1].cause) == (InviteState.CONNECTING, 408)
    finish(net, bob)
