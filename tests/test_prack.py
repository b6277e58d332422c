"""Reliable provisional responses and PRACK (RFC 3262), UPDATE in early dialogs (RFC 3311)."""

from __future__ import annotations

import pytest

from invsess.inv import InviteState, SessionLayer
from invsess.inv.prack import ReliableReceiver, ReliableSender
from invsess.sip import Request, Response, make_response
from invsess.testing import ScriptedPeer, SimNetwork

from .sessions import A, B, World, finish, layer_at


def flow(w: World) -> list[str]:
    """The first lines on the wire, shortened: "INVITE", "183", "PRACK", "200 PRACK", ..."""
    out = []
    for e in w.net.trace:
        line = e.first_line
        if line.startswith("SIP/2.0 "):
            code = line.split()[1]
            method = e.data.split(b"\r\nCSeq: ", 1)[1].split(b"\r\n", 1)[0].split()[1].decode()
            out.append(code if method == "INVITE" else f"{code} {method}")
        else:
            out.append(line.split()[0])
    return out


def rel_world(**kw: object) -> World:
    return World(alice={"rel100": "supported"}, bob={"rel100": "supported"}, **kw)  # type: ignore[arg-type]


@pytest.mark.virtual_time  # exact message order or timings
def test_reliable_183_with_the_answer_then_200() -> None:
    w = rel_world()
    alice, bob = w.call()
    w.bob.answer(bob, 183, w.net.now)
    w.run(0.2)
    # early media: both sides agreed before the 2xx
    assert ("alice", "media", "sendrecv") in w.log and ("bob", "media", "sendrecv") in w.log
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    assert flow(w) == ["INVITE", "183", "PRACK", "200 PRACK", "200", "ACK"]
    rel = next(e for e in w.net.trace if e.first_line.startswith("SIP/2.0 183"))
    assert b"Require: 100rel" in rel.data and b"RSeq: " in rel.data and b"application/sdp" in rel.data
    ok = [e for e in w.net.trace if e.first_line.startswith("SIP/2.0 200") and b"INVITE" in e.data]
    assert b"Content-Length: 0" in ok[-1].data  # the answer went in the 183: no SDP again
    prack = next(e for e in w.net.trace if e.first_line.startswith("PRACK"))
    rseq = rel.data.split(b"RSeq: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert f"RAck: {rseq} 1 INVITE".encode() in prack.data
    assert alice.state is InviteState.CONFIRMED and bob.state is InviteState.CONFIRMED
    assert [k for who, k, _ in w.log if who == "alice" and k == "media"] == ["media"]  # negotiated once
    w.alice.hangup(alice, w.net.now)
    w.settle()


@pytest.mark.virtual_time  # exact message order or timings
def test_the_2xx_waits_for_the_prack_of_a_1xx_with_sdp() -> None:
    w = rel_world()
    alice, bob = w.call()
    w.bob.answer(bob, 183, w.net.now)
    w.bob.answer(bob, 200, w.net.now)  # at once: must not overtake the 183's PRACK
    assert bob.state is InviteState.EARLY
    w.run(0.3)
    assert flow(w) == ["INVITE", "183", "PRACK", "200 PRACK", "200", "ACK"]
    assert alice.state is InviteState.CONFIRMED
    w.alice.hangup(alice, w.net.now)
    w.settle()


@pytest.mark.virtual_time  # exact message order or timings
def test_a_second_reliable_1xx_waits_and_counts_up() -> None:
    w = rel_world()
    alice, bob = w.call()
    w.bob.answer(bob, 180, w.net.now)  # carries the answer
    w.bob.answer(bob, 183, w.net.now)  # queued behind it
    w.run(0.3)
    assert flow(w) == ["INVITE", "180", "PRACK", "200 PRACK", "183", "PRACK", "200 PRACK"]
    rseqs = [
        int(e.data.split(b"RSeq: ", 1)[1].split(b"\r\n", 1)[0]) for e in w.net.trace if b"RSeq: " in e.data
    ]
    assert rseqs[1] == rseqs[0] + 1
    sdp_in = [b"application/sdp" in e.data for e in w.net.trace if b"RSeq: " in e.data]
    assert sdp_in == [True, False]
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    assert alice.state is InviteState.CONFIRMED
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_late_offer_in_the_reliable_1xx_answered_in_the_prack() -> None:
    w = rel_world()
    alice, bob = w.call(with_offer=False)
    w.bob.answer(bob, 183, w.net.now)
    w.run(0.2)
    prack = next(e for e in w.net.trace if e.first_line.startswith("PRACK"))
    assert b"application/sdp" in prack.data  # the answer
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    assert alice.state is InviteState.CONFIRMED and bob.state is InviteState.CONFIRMED
    ack = next(e for e in w.net.trace if e.first_line.startswith("ACK"))
    assert b"Content-Length: 0" in ack.data
    assert bob.negotiator.active_remote is not None and bob.negotiator.active_local is not None
    assert alice.negotiator.active_local is not None
    assert alice.negotiator.active_local.media[0].formats == ("8",)
    w.alice.hangup(alice, w.net.now)
    w.settle()


@pytest.mark.virtual_time  # exact message order or timings
def test_a_lost_prack_means_retransmissions_then_504() -> None:
    w = rel_world()
    _, bob = w.call()
    w.net.partition(A, B)  # Alice's PRACKs (and everything else of hers) are lost
    w.bob.answer(bob, 183, w.net.now)
    start = w.net.now
    w.run(40.0)
    sent = [round(e.time - start, 2) for e in w.net.trace if e.first_line.startswith("SIP/2.0 183")]
    # RFC 3262 §3: T1, then doubling (no T2 cap), until 64*T1
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert any(e.first_line.startswith("SIP/2.0 504") for e in w.net.trace)
    assert ("bob", "state", ("DISCONNECTED", 504)) in w.log
    refusal = next(e for e in w.net.trace if e.first_line.startswith("SIP/2.0 504"))
    assert round(refusal.time - start, 2) == 32.0
    w.net.heal()
    w.run(40.0)
    assert "DISCONNECTED" in w.states("alice")  # its INVITE timed out (the session is released: read the log)
    w.settle()


@pytest.mark.virtual_time  # exact message order or timings
def test_cancel_while_a_reliable_1xx_waits_for_its_prack() -> None:
    w = rel_world()
    alice, bob = w.call()
    w.net.partition(A, B)
    w.bob.answer(bob, 183, w.net.now)
    w.run(0.1)
    w.net.heal()
    w.alice.hangup(alice, w.net.now)
    w.run(1.0)
    assert ("bob", "state", ("DISCONNECTED", 487)) in w.log
    before = len([e for e in w.net.trace if e.first_line.startswith("SIP/2.0 183")])
    w.run(40.0)
    assert len([e for e in w.net.trace if e.first_line.startswith("SIP/2.0 183")]) == before  # stopped
    w.settle()


@pytest.mark.virtual_time  # exact message order or timings
def test_update_in_the_early_dialog() -> None:
    w = rel_world()
    alice, bob = w.call()
    w.bob.answer(bob, 183, w.net.now)
    w.run(0.2)
    w.alice.update(alice, w.net.now, direction="sendonly")  # RFC 3311 in an early dialog
    w.run(0.2)
    assert bob.negotiator.active_local is not None
    assert bob.negotiator.active_local.media[0].direction == "recvonly"
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.2)
    assert alice.state is InviteState.CONFIRMED
    assert flow(w)[-4:] == ["UPDATE", "200 UPDATE", "200", "ACK"]
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_required_100rel_against_a_peer_that_lacks_it() -> None:
    w = World(alice={}, bob={"rel100": "required"})
    alice = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    w.run(0.5)
    refusal = next(e for e in w.net.trace if e.first_line.startswith("SIP/2.0 421"))
    assert b"Require: 100rel" in refusal.data
    assert alice.state is InviteState.DISCONNECTED
    w.settle()


def test_a_required_extension_this_layer_does_not_do_gets_420() -> None:
    w = World(alice={"rel100": "required"}, bob={})  # Bob's endpoint lists 100rel, his layer does not
    alice = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    w.run(0.5)
    refusal = next(e for e in w.net.trace if e.first_line.startswith("SIP/2.0 420"))
    assert b"Unsupported: 100rel" in refusal.data
    assert alice.state is InviteState.DISCONNECTED and alice.cause == 420
    w.settle()


@pytest.mark.virtual_time  # exact message order
def test_a_peer_without_100rel_gets_ordinary_provisionals() -> None:
    w = World(alice={}, bob={"rel100": "supported"})
    alice, bob = w.call()
    w.bob.answer(bob, 180, w.net.now)
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.3)
    assert flow(w) == ["INVITE", "180", "200", "ACK"]
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_sender_and_receiver_rules() -> None:
    import random

    sender = ReliableSender.create(random.Random(1))
    first = sender.take_rseq()
    assert 1 <= first < 2**31 and sender.take_rseq() == first + 1
    receiver = ReliableReceiver()
    assert receiver.accept("a", 7) and not receiver.accept("a", 7)  # a retransmission
    assert not receiver.accept("a", 9) and receiver.accept("a", 8)  # a gap, then the next
    assert receiver.accept("b", 100)  # another early dialog counts on its own


# -- scripted peers: PRACK mismatches and forked reliable 1xx ----------------------------------------


def _alice(net: SimNetwork) -> SessionLayer:
    return layer_at(net, A, seed=5, user="alice", rel100="supported")


_FORK_SDP = (
    b"v=0\r\no=fork 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"
)


def _fork_response(
    invite: Request, code: int, tag: str, *, rseq: int | None = None, sdp: bool = True
) -> Response:
    headers: list[tuple[str, object]] = [("Contact", f"<sip:{tag}@127.0.0.9:5060>")]
    if rseq is not None:
        headers += [("Require", "100rel"), ("RSeq", str(rseq))]
    return make_response(
        invite, code, to_tag=tag, headers=headers, body=_FORK_SDP if sdp else b"",
        content_type="application/sdp" if sdp else None,
    )  # fmt: skip


def test_forked_reliable_1xx_are_each_pracked_in_their_own_dialog_and_the_answering_fork_wins() -> None:
    net = SimNetwork(5)
    alice = _alice(net)
    forker = ScriptedPeer(net, ("127.0.0.9", 5060), name="forker")
    session = alice.invite("sip:bob@127.0.0.9:5060", destination=("127.0.0.9", 5060), now=0.0)
    invite = forker.expect(method="INVITE")
    assert isinstance(invite, Request)
    forker.send(_fork_response(invite, 183, "leg-one", rseq=10), A)
    forker.send(_fork_response(invite, 183, "leg-two", rseq=500), A)
    pracks = [forker.expect(method="PRACK"), forker.expect(method="PRACK")]
    by_tag = {p.to.tag: p for p in pracks if isinstance(p, Request) and p.to}
    assert set(by_tag) == {"leg-one", "leg-two"}
    assert str(by_tag["leg-one"].rack) == "10 1 INVITE" and str(by_tag["leg-two"].rack) == "500 1 INVITE"
    assert str(by_tag["leg-two"].uri) == "sip:leg-two@127.0.0.9:5060"  # that fork's Contact
    assert session.uac is not None and len(session.uac.forks) == 1
    for prack in by_tag.values():
        forker.send(make_response(prack, 200), A)
    # a retransmission of leg one's 183 is not PRACKed again
    forker.send(_fork_response(invite, 183, "leg-one", rseq=10), A)
    forker.expect_nothing(within=0.3)
    forker.send(_fork_response(invite, 200, "leg-two"), A)  # the other fork answers
    ack = forker.expect(method="ACK")
    assert isinstance(ack, Request) and ack.to is not None and ack.to.tag == "leg-two"
    net.run_until(net.now + 0.1)
    assert session.state is InviteState.CONFIRMED
    assert session.dialog.remote_tag == "leg-two" and session.uac is not None and not session.uac.forks
    alice.hangup(session, net.now)
    bye = forker.expect(method="BYE")
    assert isinstance(bye, Request) and bye.to is not None and bye.to.tag == "leg-two"
    forker.send(make_response(bye, 200), A)
    finish(net, alice)


@pytest.mark.parametrize(
    ("rack", "expected"),
    [("RSEQ 1 INVITE", 200), ("999 1 INVITE", 481), ("RSEQ 7 INVITE", 481), ("RSEQ 1 BYE", 481), (None, 481)],
)
def test_a_prack_must_match_the_outstanding_1xx(rack: str | None, expected: int) -> None:
    net = SimNetwork(6)
    bob = layer_at(net, B, seed=6, user="bob", rel100="supported")
    peer = ScriptedPeer(net, A, name="caller")
    peer.send(
        "INVITE sip:bob@127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {local};branch={branch}\n"
        "From: <sip:c@127.0.0.1>;tag=c1\nTo: <sip:bob@127.0.0.2>\nCall-ID: prack-1\nCSeq: 1 INVITE\n"
        "Contact: <sip:c@{local}>\nSupported: 100rel\nContent-Length: 0\n\n",
        B,
    )
    net.run_until(0.1)
    incoming = bob.next_event()
    session = incoming.session  # type: ignore[union-attr]
    bob.answer(session, 180, net.now)
    rel = peer.expect(status=180)
    assert isinstance(rel, Response) and rel.rseq is not None
    rack_value = rack.replace("RSEQ", str(rel.rseq)) if rack else None
    to = rel.headers.get("To")
    peer.send(
        "PRACK sip:bob@127.0.0.2:5060 SIP/2.0\nVia: SIP/2.0/UDP {local};branch={branch}\n"
        "From: <sip:c@127.0.0.1>;tag=c1\nTo: {to_hdr}\nCall-ID: prack-1\nCSeq: 2 PRACK\n"
        + (f"RAck: {rack_value}\n" if rack_value else "")
        + "Content-Length: 0\n\n",
        B,
        to_hdr=to,
    )
    answer = peer.expect(method=None, status=expected)
    assert isinstance(answer, Response)
    bob.hangup(session, net.now, code=486)
    peer.expect(status=486)
    finish(net, bob)


def test_malformed_responses_are_discarded_and_the_call_still_ends() -> None:
    """A reliable 1xx with an unreadable RSeq is not PRACKed; a 2xx with an unreadable Contact
    is discarded (RFC 3261 §18.1.2); when the INVITE transaction then ends, so does the session."""
    net = SimNetwork(7)
    alice = _alice(net)
    forker = ScriptedPeer(net, ("127.0.0.9", 5060), name="forker")
    session = alice.invite("sip:bob@127.0.0.9:5060", destination=("127.0.0.9", 5060), now=0.0)
    invite = forker.expect(method="INVITE")
    assert isinstance(invite, Request)
    bad_rseq = _fork_response(invite, 183, "leg", rseq=1)
    bad_rseq.headers.set("RSeq", "one")
    forker.send(bad_rseq, A)
    forker.expect_nothing(within=0.5)  # no PRACK for it
    ok = _fork_response(invite, 200, "leg")
    ok.headers.set("Contact", "<sip:broken@@>")
    forker.send(ok, A)
    net.run_until(net.now + 60)
    assert session.state is InviteState.DISCONNECTED
    assert session.cause == 408
    finish(net, alice)


def test_a_second_fork_answering_without_contact_is_discarded() -> None:
    net = SimNetwork(8)
    alice = _alice(net)
    forker = ScriptedPeer(net, ("127.0.0.9", 5060), name="forker")
    session = alice.invite("sip:bob@127.0.0.9:5060", destination=("127.0.0.9", 5060), now=0.0)
    invite = forker.expect(method="INVITE")
    assert isinstance(invite, Request)
    forker.send(_fork_response(invite, 200, "leg-one"), A)
    forker.expect(method="ACK")
    no_contact = _fork_response(invite, 200, "leg-two")
    no_contact.headers.remove("Contact")
    forker.send(no_contact, A)  # cannot make a dialog of it: dropped, nothing raised
    forker.expect_nothing(within=0.5)
    assert session.state is InviteState.CONFIRMED
    alice.hangup(session, net.now)
    bye = forker.expect(method="BYE")
    forker.send(make_response(bye, 200), A)  # type: ignore[arg-type]
    finish(net, alice)
