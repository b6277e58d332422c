"""What real user agents send: offer/answer and dialog edge cases, each against a scripted peer.

Most scenarios are PJSIP's own regression scenarios (``tests/pjsua/scripts-sipp``): SDP in an
unreliable 18x, a 200 without To tag, re-INVITEs and ACKs without SDP, a re-INVITE re-using its
INVITE's Via branch, a refresh UPDATE refused for lack of SDP, an answer with several codecs
("lock codec"). Each test fails on a layer without the behaviour it names.
"""

from __future__ import annotations

from typing import Any

import pytest

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    IncomingCall,
    InviteResponseReceived,
    InviteSession,
    InviteState,
    MediaUpdated,
    SessionLayer,
    SessionStateChanged,
    TimerSettings,
)
from invsess.sdp import parse_sdp
from invsess.sip import UAS_CHECKS, Check, NameAddress, Request, Response, Via, make_request, make_response
from invsess.testing import ScriptedPeer, SimNetwork
from invsess.transaction import RequestReceived

from .sessions import ALICE_SDP, A, B, finish, layer_at

SDP = "application/sdp"
CONTACT = ("Contact", "<sip:bob@127.0.0.2:5060>")


def sdp(port: int, formats: str, *extra: str, media: str = "audio") -> bytes:
    """A callee's SDP: one m-line (or more, in ``extra``: whole lines)."""
    lines = [
        "v=0", "o=bob 7 7 IN IP4 127.0.0.2", "s=-", "c=IN IP4 127.0.0.2", "t=0 0",
        f"m={media} {port} RTP/AVP {formats}", *extra,
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n").encode()


ANSWER_0 = sdp(7000, "0")
ANSWER_8 = sdp(7002, "8")


def respond(peer: ScriptedPeer, request: Request, code: int, *, tag: str | None = "bob-1",
            body: bytes = b"", headers: tuple[tuple[str, object], ...] = (CONTACT,)) -> Response:  # fmt: skip
    """The scripted peer answers ``request`` (``tag`` None: a To without tag)."""
    response = make_response(request, code, to_tag=tag, headers=list(headers), body=body,
                             content_type=SDP if body else None)  # fmt: skip
    peer.send(response, A if peer.address == B else B)
    return response


def calling(
    seed: int = 20, **options: Any
) -> tuple[SimNetwork, SessionLayer, ScriptedPeer, InviteSession, Request]:
    """Alice calls a scripted Bob; returns the INVITE Bob received."""
    net = SimNetwork(seed)
    alice = layer_at(net, A, seed=seed, user="alice", **options)
    bob = ScriptedPeer(net, B, name="bob")
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    invite = bob.expect(method="INVITE")
    assert isinstance(invite, Request)
    return net, alice, bob, session, invite


def events(layer: SessionLayer) -> list[object]:
    """Every pending event, as (kind, detail) read while valid."""
    out: list[object] = []
    while (event := layer.next_event()) is not None:
        if isinstance(event, SessionStateChanged):
            out.append(("state", event.new.name, event.cause))
        elif isinstance(event, MediaUpdated):
            out.append(("media", event.remote.media[0].port, event.session.state.name))
        elif isinstance(event, RequestReceived):
            out.append(("request", event.request.method))
        elif isinstance(event, InviteResponseReceived):
            continue  # (each response to our INVITE, for the application: not these tests' subject)
        else:
            out.append((type(event).__name__,))
    return out


def hang_up(net: SimNetwork, layer: SessionLayer, session: InviteSession, peer: ScriptedPeer) -> None:
    """Alice hangs up a confirmed call; the scripted peer says 200 to the BYE."""
    layer.hangup(session, net.now)
    bye = peer.expect(method="BYE")
    assert isinstance(bye, Request)
    respond(peer, bye, 200, tag=None)
    finish(net, layer)


# -- SDP in an unreliable provisional is the answer ------------------------------------------------


def test_sdp_in_an_unreliable_180_is_the_answer_and_the_2xx_sdp_is_ignored() -> None:
    """RFC 3261 §13.2.1: the first SDP from the callee answers our offer, even in an unreliable
    180; the 200's SDP (here another port and codec) is not negotiated again
    (PJSIP's uas-answer-180-multiple-fmts)."""
    net, alice, bob, session, invite = calling()
    respond(bob, invite, 180, body=ANSWER_0)
    net.run_until(net.now + 0.1)
    assert session.state is InviteState.EARLY
    assert events(alice) == [("state", "CALLING", None), ("media", 7000, "EARLY"), ("state", "EARLY", None)]
    respond(bob, invite, 200, body=ANSWER_8)
    ack = bob.expect(method="ACK")
    assert not ack.body
    assert session.state.name == "CONFIRMED"  # (mypy narrowed the state above)
    assert session.negotiator.active_remote is not None
    assert session.negotiator.active_remote.media[0].port == 7000  # the 180's, not the 200's
    assert events(alice) == [("state", "CONNECTING", None), ("state", "CONFIRMED", None)]  # no 2nd media
    hang_up(net, alice, session, bob)


def test_sdp_in_a_183_without_to_tag_is_the_answer() -> None:
    """PJSIP's uas-answer-183-without-to-tag (#2066): no dialog yet, the SDP answers all the same."""
    net, alice, bob, session, invite = calling(21)
    respond(bob, invite, 183, tag=None, body=ANSWER_0)
    net.run_until(net.now + 0.1)
    assert session.state is InviteState.CALLING  # no To tag: no early dialog
    assert ("media", 7000, "CALLING") in events(alice)
    respond(bob, invite, 200, body=ANSWER_0)
    bob.expect(method="ACK")
    assert session.state.name == "CONFIRMED"
    hang_up(net, alice, session, bob)


def test_a_fork_answering_after_early_media_of_another_is_negotiated_again() -> None:
    """Early media from one fork, 200 from another (another To tag): that fork's SDP answers
    our offer again, as PJSIP follows the fork that answered."""
    net, alice, bob, session, invite = calling(22)
    respond(bob, invite, 183, tag="fork-a", body=ANSWER_0)
    net.run_until(net.now + 0.1)
    respond(bob, invite, 200, tag="fork-b", body=ANSWER_8)
    bob.expect(method="ACK")
    assert session.dialog.remote_tag == "fork-b"
    assert session.negotiator.active_remote is not None
    assert session.negotiator.active_remote.media[0].port == 7002
    medias = [e[1] for e in events(alice) if e[0] == "media"]  # type: ignore[index]
    assert medias == [7000, 7002]  # the early fork's answer, then the answering fork's
    hang_up(net, alice, session, bob)


UNUSABLE = {
    "no codec in common": sdp(
        7000, "109 105", "a=rtpmap:109 EVS/16000", "a=rtpmap:105 telephone-event/16000"
    ),
    "another media type": sdp(7000, "34", "a=rtpmap:34 H263/90000", media="video"),
    "more m-lines than offered": sdp(7000, "0", "m=audio 7002 RTP/AVP 0"),
    "unreadable": b"v=0\r\nthis is not SDP\r\n",
}


@pytest.mark.parametrize("body", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_an_unusable_answer_in_a_183_cancels_the_call_with_reason_488(body: bytes) -> None:
    """PJSIP's uas-answer-183-wrong-codec / -wrong-media (PR #3137): CANCEL with
    ``Reason: SIP;cause=488``, then the 487 ends the call."""
    net, alice, bob, _, invite = calling(23)
    respond(bob, invite, 180)
    respond(bob, invite, 183, body=body)
    cancel = bob.expect(method="CANCEL")
    assert "SIP;cause=488" in (cancel.headers.get("Reason") or "")
    respond(bob, cancel, 200, tag=None)  # type: ignore[arg-type]
    respond(bob, invite, 487)
    bob.expect(method="ACK")
    alice_events = events(alice)
    states = [e[1] for e in alice_events if e[0] == "state"]  # type: ignore[index]
    assert states[0] == "CALLING" and set(states[1:-1]) == {"EARLY"} and states[-1] == "DISCONNECTED"
    assert [e[2] for e in alice_events if e[0] == "state"][-1] == 488  # type: ignore[index]
    finish(net, alice)


def test_an_unusable_early_answer_and_a_crossing_2xx_end_with_bye_488() -> None:
    """The CANCEL crosses the 200: ACK it, then BYE (RFC 3261 §9.1); its SDP is not taken."""
    net, alice, bob, session, invite = calling(24)
    respond(bob, invite, 183, body=UNUSABLE["another media type"])
    cancel = bob.expect(method="CANCEL")
    respond(bob, invite, 200, body=ANSWER_0)  # before the CANCEL arrived
    respond(bob, cancel, 200, tag=None)  # type: ignore[arg-type]
    bob.expect(method="ACK")
    bye = bob.expect(method="BYE")
    assert "cause=488" in (bye.headers.get("Reason") or "")
    assert session.negotiator.active_remote is None  # the 200's SDP answered nothing
    respond(bob, bye, 200, tag=None)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    assert [e for e in events(alice) if e[0] == "state"][-1] == ("state", "DISCONNECTED", 488)  # type: ignore[index]
    finish(net, alice)


def test_an_unusable_answer_in_a_reliable_183_cancels_the_call_too() -> None:
    net, alice, bob, session, invite = calling(25, rel100="supported")
    rel = (CONTACT, ("Require", "100rel"), ("RSeq", "1"))
    respond(bob, invite, 183, body=UNUSABLE["no codec in common"], headers=rel)
    prack = bob.expect(method="PRACK")  # acknowledged all the same (RFC 3262 §4)
    assert not prack.body
    cancel = bob.expect(method="CANCEL")
    assert "cause=488" in (cancel.headers.get("Reason") or "")
    respond(bob, prack, 200)  # type: ignore[arg-type]
    respond(bob, cancel, 200, tag=None)  # type: ignore[arg-type]
    respond(bob, invite, 487)
    bob.expect(method="ACK")
    net.run_until(net.now + 0.1)
    assert session.cause == 488
    finish(net, alice)


# -- a 2xx without To tag ----------------------------------------------------------------------------


def _peer_request(
    method: str, invite: Request, cseq: int, *, from_tag: str, branch: str, body: bytes = b""
) -> Request:
    """A request of the callee in the dialog: From = the INVITE's To (with ``from_tag``)."""
    assert invite.to is not None and invite.from_ is not None and invite.call_id is not None
    contact = next(c for c in invite.contact if isinstance(c, NameAddress))
    return make_request(
        method, contact.uri, via=Via("UDP", "127.0.0.2", 5060, (("branch", branch),)),
        from_=invite.to.with_tag(from_tag) if from_tag else invite.to, to=invite.from_,
        call_id=invite.call_id, cseq=cseq, contact=NameAddress(invite.uri), body=body,
        content_type=SDP if body else None,
    )  # fmt: skip


def test_a_2xx_without_to_tag_makes_a_dialog_with_a_null_remote_tag() -> None:
    """PJSIP's uas-answer-200-without-to-tag (#1096): ACKed (To without tag), confirmed, and
    in-dialog requests of ours go without a To tag; the peer's BYE (with a From tag) ends it."""
    net, alice, bob, session, invite = calling(26)
    respond(bob, invite, 200, tag=None, body=ANSWER_0)
    ack = bob.expect(method="ACK")
    assert ack.to is not None and ack.to.tag is None
    assert session.state is InviteState.CONFIRMED and session.dialog.remote_tag == ""
    alice.update(session, net.now)
    update = bob.expect(method="UPDATE")
    assert update.to is not None and update.to.tag is None
    respond(bob, update, 200, tag=None, body=ANSWER_0)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    respond(bob, invite, 200, tag=None, body=ANSWER_0)  # a retransmission: ACKed again
    assert bob.expect(method="ACK").to.tag is None  # type: ignore[union-attr]
    bye = _peer_request("BYE", invite, 1, from_tag="late-tag", branch="z9hG4bKbye1")
    bob.send(bye, A)
    ok = bob.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.method == "BYE")
    assert ok.to is not None and ok.to.tag == invite.from_.tag  # type: ignore[union-attr]
    net.run_until(net.now + 0.1)
    assert [e for e in events(alice) if e[0] == "state"][-1] == ("state", "DISCONNECTED", 200)  # type: ignore[index]
    finish(net, alice)


def test_the_peers_first_request_supplies_the_missing_tag() -> None:
    """PJSIP's uas-reinv-and-ack-without-sdp: the re-INVITE names the tag; from then on our
    requests carry it, and a request with yet another tag is not of this dialog (481)."""
    net, alice, bob, session, invite = calling(27)
    respond(bob, invite, 200, tag=None, body=ANSWER_0)
    bob.expect(method="ACK")
    reinvite = _peer_request("INVITE", invite, 1, from_tag="peer-tag", branch="z9hG4bKre1", body=ANSWER_8)
    bob.send(reinvite, A)
    ok = bob.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.method == "INVITE")
    assert session.dialog.remote_tag == "peer-tag"
    bob.send(make_request("ACK", reinvite.uri, via=Via("UDP", "127.0.0.2", 5060, (("branch", "z9hG4bKack1"),)),
                          from_=reinvite.from_, to=ok.to, call_id=invite.call_id or "", cseq=1), A)  # type: ignore[arg-type]  # fmt: skip
    net.run_until(net.now + 0.1)
    other = _peer_request("BYE", invite, 2, from_tag="another-tag", branch="z9hG4bKbye2")
    bob.send(other, A)
    bob.expect(status=481)
    alice.hangup(session, net.now)
    bye = bob.expect(method="BYE")
    assert bye.to is not None and bye.to.tag == "peer-tag"
    respond(bob, bye, 200, tag=None)  # type: ignore[arg-type]
    finish(net, alice)


# -- an ACK that does not answer the offer of our 2xx -------------------------------------------------

CALLER_INVITE = """INVITE sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:caller@127.0.0.1>;tag=caller-1
To: <sip:bob@127.0.0.2>{to_tag}
Call-ID: caller-interop-1
CSeq: {cseq} INVITE
Contact: <sip:caller@{local}>
Content-Type: application/sdp
Content-Length: {content_length}

"""

CALLER_ACK = """ACK sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:caller@127.0.0.1>;tag=caller-1
To: <sip:bob@127.0.0.2>{to_tag}
Call-ID: caller-interop-1
CSeq: {cseq} ACK
Content-Type: application/sdp
Content-Length: {content_length}

"""


def invite_bob(caller: ScriptedPeer, body: bytes, *, branch: str = "z9hG4bKinv1", cseq: int = 1,
               to_tag: str = "") -> None:  # fmt: skip
    template = CALLER_INVITE.replace(
        "Content-Type: application/sdp\n", "" if not body else "Content-Type: application/sdp\n"
    )
    caller.send(
        template + body.decode(), B, branch=branch, cseq=cseq, to_tag=f";tag={to_tag}" if to_tag else ""
    )


def ack_bob(
    caller: ScriptedPeer, body: bytes, *, to_tag: str, cseq: int = 1, branch: str = "z9hG4bKack"
) -> None:
    template = CALLER_ACK if body else CALLER_ACK.replace("Content-Type: application/sdp\n", "")
    caller.send(template + body.decode(), B, branch=branch, cseq=cseq, to_tag=f";tag={to_tag}")


def answered(
    seed: int, body: bytes, **options: Any
) -> tuple[SimNetwork, SessionLayer, ScriptedPeer, InviteSession, str]:
    """A scripted caller's INVITE (with ``body``) answered 200 by Bob; returns Bob's To tag."""
    net = SimNetwork(seed)
    bob = layer_at(net, B, seed=seed, user="bob", allow=("INVITE", "BYE", "UPDATE", "INFO"), **options)
    caller = ScriptedPeer(net, A, name="caller")
    invite_bob(caller, body)
    net.run_until(0.1)
    session = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall)).session
    bob.answer(session, 200, net.now)
    ok = caller.expect(status=200)
    assert ok.to is not None and ok.to.tag is not None
    return net, bob, caller, session, ok.to.tag


def test_an_ack_without_the_answer_to_our_offer_ends_a_call_with_bye_488() -> None:
    """PJSIP's uac-inv-and-ack-without-sdp (#1045): INVITE and ACK both without SDP."""
    net, bob, caller, session, tag = answered(30, b"")
    ack_bob(caller, b"", to_tag=tag)
    bye = caller.expect(method="BYE")
    assert "cause=488" in (bye.headers.get("Reason") or "")
    assert session.negotiator.state.name == "NULL"  # the offer of our 2xx is void
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    assert [e for e in events(bob) if e[0] == "state"][-1] == ("state", "DISCONNECTED", 488)  # type: ignore[index]
    finish(net, bob)


def test_a_reinvite_without_sdp_whose_ack_has_no_answer_keeps_the_session() -> None:
    """PJSIP's uas-reinv-and-ack-without-sdp: the session stays up with the media it had and
    the negotiator goes back to its stable state, so a later offer is answered (not 491)."""
    net, bob, caller, session, tag = answered(31, ALICE_SDP.serialize())
    ack_bob(caller, b"", to_tag=tag)
    net.run_until(net.now + 0.1)
    before, agreed = session.negotiator.active_remote, session.negotiator.generation
    invite_bob(caller, b"", branch="z9hG4bKre2", cseq=2, to_tag=tag)
    offer = caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.number == 2)
    assert b"m=audio" in offer.body  # our 2xx offers
    ack_bob(caller, b"", to_tag=tag, cseq=2, branch="z9hG4bKre2")  # the same branch: PJSIP's other variant
    net.run_until(net.now + 0.1)
    assert session.state is InviteState.CONFIRMED
    assert session.negotiator.state.name == "DONE" and session.negotiator.generation == agreed
    assert session.negotiator.active_remote == before  # the media it had
    assert not [e for e in net.trace if e.first_line.startswith("BYE")]
    invite_bob(caller, ALICE_SDP.serialize(), branch="z9hG4bKre3", cseq=3, to_tag=tag)
    caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.number == 3)  # not 491
    ack_bob(caller, b"", to_tag=tag, cseq=3, branch="z9hG4bKack3")
    net.run_until(net.now + 0.1)
    bob.reinvite(session, net.now)  # and our own offers go out too
    ours = caller.expect(method="INVITE")
    caller.send(make_response(ours, 200, body=ALICE_SDP.serialize(), content_type=SDP), B)  # type: ignore[arg-type]
    caller.expect(method="ACK")
    bob.hangup(session, net.now)
    bye = caller.expect(method="BYE")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    finish(net, bob)


def test_a_reinvite_reusing_the_invite_branch_gets_400() -> None:
    """PJSIP's uac-reinvite-bad-via-branch (#965): same branch as the INVITE, another CSeq:
    not a retransmission. 400, and the call goes on."""
    net, bob, caller, session, tag = answered(32, ALICE_SDP.serialize())
    ack_bob(caller, b"", to_tag=tag, branch="z9hG4bKack2")
    net.run_until(net.now + 0.1)
    invite_bob(caller, ALICE_SDP.serialize(), branch="z9hG4bKinv1", cseq=2, to_tag=tag)
    refused = caller.expect(status=400)
    assert "different CSeq" in (refused.headers.get("Warning") or "")
    assert session.state is InviteState.CONFIRMED
    bob.hangup(session, net.now)
    bye = caller.expect(method="BYE")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    finish(net, bob)


def test_an_info_in_the_dialog_is_the_applications_to_answer() -> None:
    """An allowed method no session handles (INFO) reaches the application, not a 501."""
    net, bob, caller, session, tag = answered(33, ALICE_SDP.serialize())
    ack_bob(caller, b"", to_tag=tag)
    net.run_until(net.now + 0.1)
    events(bob)
    info = CALLER_ACK.replace("ACK sip", "INFO sip").replace("{cseq} ACK", "{cseq} INFO")
    caller.send(info.replace("Content-Type: application/sdp\n", ""), B, branch="z9hG4bKinfo", cseq=2,
                to_tag=f";tag={tag}")  # fmt: skip
    net.run_until(net.now + 0.1)
    received = [e for e in iter(bob.next_event, None) if isinstance(e, RequestReceived)]
    assert [r.request.method for r in received] == ["INFO"]
    bob.endpoint.respond(received[0].transaction, make_response(received[0].request, 200), net.now)
    caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.method == "INFO")
    bob.hangup(session, net.now)
    bye = caller.expect(method="BYE")
    caller.send(make_response(bye, 200), B)  # type: ignore[arg-type]
    finish(net, bob)


# -- duplicate tags ----------------------------------------------------------------------------------


def test_duplicate_tags_take_the_last_or_get_400_from_a_strict_server() -> None:
    net = SimNetwork(34)
    bob = layer_at(net, B, seed=34, user="bob", allow=("INVITE", "BYE"))
    caller = ScriptedPeer(net, A, name="caller")
    twice = CALLER_INVITE.replace("tag=caller-1", "tag=first;tag=second").replace(
        "Content-Type: application/sdp\n", ""
    )
    caller.send(twice, B, branch="z9hG4bKdup", cseq=1, to_tag="")
    net.run_until(0.1)
    session = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall)).session
    assert session.dialog.remote_tag == "second"  # PJSIP's parser keeps the last
    bob.answer(session, 486, net.now)
    caller.expect(status=486)
    finish(net, bob)

    strict = SimNetwork(35)
    config = EndpointConfig(
        seed=35, malloc_debug=True, allow=("INVITE", "BYE"), checks=UAS_CHECKS | Check.DUPLICATE_TAGS
    )
    layer = SessionLayer(Endpoint(config), ALICE_SDP, user="bob")
    strict.attach(layer, B)
    peer = ScriptedPeer(strict, A, name="caller")
    peer.send(twice, B, branch="z9hG4bKdup2", cseq=1, to_tag="")
    refused = peer.expect(status=400)
    assert "Duplicate tag" in refused.start_line()
    finish(strict, layer)


# -- a refresh UPDATE refused for having no SDP ----------------------------------------------------

SE = ("Session-Expires", "90;refresher=uac")


def _timed_call(seed: int) -> tuple[SimNetwork, SessionLayer, ScriptedPeer, InviteSession]:
    net, alice, bob, session, invite = calling(seed, timer=TimerSettings(session_expires=90))
    respond(bob, invite, 200, body=ANSWER_0, headers=(CONTACT, ("Allow", "INVITE, ACK, BYE, UPDATE"), SE))
    bob.expect(method="ACK")
    return net, alice, bob, session


@pytest.mark.parametrize("code", [400, 488, 415, 404])
def test_a_refresh_refused_for_lack_of_sdp_is_sent_again_with_it(code: int) -> None:
    """PJSIP's uas-timer-update: "400 Want SDP Body" to the refresh UPDATE; the UPDATE goes again
    at once with our current SDP (the same o= version), and so do later refreshes."""
    net, alice, bob, session = _timed_call(40)
    update = bob.expect(method="UPDATE", within=46.0)
    assert isinstance(update, Request) and not update.body
    respond(bob, update, code, headers=(CONTACT, ("Allow", "INVITE"), SE))
    again = bob.expect(method="UPDATE", within=1.0)
    assert isinstance(again, Request) and b"m=audio 4000" in again.body
    assert b"o=alice 1 1 " in again.body  # the session we have, not a new one
    respond(bob, again, 200, body=ANSWER_0, headers=(CONTACT, SE))
    net.run_until(net.now + 1)
    assert session.state is InviteState.CONFIRMED
    third = bob.expect(method="UPDATE", within=46.0)
    assert isinstance(third, Request) and third.body  # from now on with SDP
    respond(bob, third, 200, body=ANSWER_0, headers=(CONTACT, SE))
    net.run_until(net.now + 1)
    hang_up(net, alice, session, bob)


def test_a_refresh_refused_twice_ends_the_session() -> None:
    net, alice, bob, _ = _timed_call(41)
    update = bob.expect(method="UPDATE", within=46.0)
    respond(bob, update, 400)  # type: ignore[arg-type]
    again = bob.expect(method="UPDATE", within=1.0)
    respond(bob, again, 400)  # type: ignore[arg-type]
    bye = bob.expect(method="BYE")
    assert "cause=400" in (bye.headers.get("Reason") or "")
    respond(bob, bye, 200, tag=None)  # type: ignore[arg-type]
    finish(net, alice)


# -- lock codec --------------------------------------------------------------------------------------

RICH = parse_sdp(
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)
MULTI = sdp(
    7000, "8 0 111", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:111 telephone-event/8000"
)
SINGLE = sdp(7000, "8 111", "a=rtpmap:8 PCMA/8000", "a=rtpmap:111 telephone-event/8000")


@pytest.mark.parametrize(
    ("allow", "method"), [("INVITE, ACK, BYE", "INVITE"), ("INVITE, ACK, BYE, UPDATE", "UPDATE")]
)
def test_lock_codec_offers_the_chosen_codec_alone(allow: str, method: str) -> None:
    """pjsua's lock_codec (uas-answer-200-multiple-fmts[-support-update]): the answer kept PCMA
    and PCMU; we offer again with PCMA (the answer's first) and telephone-event only."""
    net, alice, bob, session, invite = calling(50, sdp=RICH, lock_codec=True)
    respond(bob, invite, 200, body=MULTI, headers=(CONTACT, ("Allow", allow)))
    bob.expect(method="ACK")
    locked = bob.expect(method=method)
    assert isinstance(locked, Request)
    assert b"m=audio 4000 RTP/AVP 8 101\r\n" in locked.body and b"PCMU" not in locked.body
    assert b"o=alice 1 2 " in locked.body  # a changed offer: a new version
    respond(bob, locked, 200, body=SINGLE)
    if method == "INVITE":
        bob.expect(method="ACK")
    bob.expect_nothing(within=0.5)  # one codec now: done
    hang_up(net, alice, session, bob)


def test_lock_codec_is_off_unless_asked_for() -> None:
    net, alice, bob, session, invite = calling(51, sdp=RICH)
    respond(bob, invite, 200, body=MULTI)
    bob.expect(method="ACK")
    bob.expect_nothing(within=0.5)
    hang_up(net, alice, session, bob)


def test_lock_codec_waits_for_the_call_after_an_unreliable_early_answer() -> None:
    """The answer in an unreliable 180 cannot be followed by an early UPDATE: the lock waits
    until the call is confirmed (pjsua's reinv_pending), and PJSIP's scenario answers it."""
    net, alice, bob, session, invite = calling(52, sdp=RICH, lock_codec=True)
    respond(bob, invite, 180, body=MULTI, headers=(CONTACT, ("Allow", "INVITE, ACK, BYE, UPDATE")))
    bob.expect_nothing(within=0.5)
    respond(bob, invite, 200, body=MULTI)
    bob.expect(method="ACK")
    locked = bob.expect(method="UPDATE")
    respond(bob, locked, 200, body=SINGLE)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    hang_up(net, alice, session, bob)


def test_lock_codec_in_an_early_dialog_by_update_after_a_reliable_answer() -> None:
    net, alice, bob, session, invite = calling(53, sdp=RICH, lock_codec=True, rel100="supported")
    rel = (CONTACT, ("Require", "100rel"), ("RSeq", "1"), ("Allow", "INVITE, ACK, BYE, UPDATE, PRACK"))
    respond(bob, invite, 183, body=MULTI, headers=rel)
    prack = bob.expect(method="PRACK")
    update = bob.expect(method="UPDATE")
    assert session.state is InviteState.EARLY and b"RTP/AVP 8 101" in update.body
    respond(bob, prack, 200)  # type: ignore[arg-type]
    respond(bob, update, 200, body=SINGLE)  # type: ignore[arg-type]
    respond(bob, invite, 200)
    bob.expect(method="ACK")
    bob.expect_nothing(within=0.5)
    hang_up(net, alice, session, bob)


def test_lock_codec_counts_only_the_codecs_it_offered() -> None:
    """The answer to the locked offer names PCMU again, which that offer did not have: not a
    second codec to lock away (so the exchange cannot loop)."""
    net, alice, bob, session, invite = calling(54, sdp=RICH, lock_codec=True)
    respond(bob, invite, 200, body=MULTI)
    bob.expect(method="ACK")
    locked = bob.expect(method="INVITE")
    respond(bob, locked, 200, body=MULTI)  # type: ignore[arg-type]
    bob.expect(method="ACK")
    bob.expect_nothing(within=0.5)
    hang_up(net, alice, session, bob)


# -- transport failures (RFC 3261 §8.1.3.1) -------------------------------------------------------


def test_a_first_send_that_fails_ends_the_call_at_once_with_503() -> None:
    """The known bug: a call whose INVITE could not be sent stayed CALLING for ever."""
    net = SimNetwork(60)
    alice = layer_at(net, A, seed=60, user="alice")
    session = alice.invite("sip:bob@bob.example.com", destination=("bob.example.com", 5060), now=0.0)
    alice.datagrams_to_send()  # the driver took it, and its transport refused it:
    alice.transport_error(("bob.example.com", 5060), "udp", 0.0, reason="transport error: no DNS here")
    assert session.state is InviteState.DISCONNECTED and session.cause == 503
    assert session.cause_text == "transport error: no DNS here"
    assert events(alice) == [("state", "CALLING", None), ("state", "DISCONNECTED", 503)]
    assert alice.endpoint.transactions() == []
    finish(net, alice)


def test_a_bye_that_cannot_be_sent_still_ends_the_call() -> None:
    net, alice, bob, session, invite = calling(61)
    respond(bob, invite, 200, body=ANSWER_0)
    bob.expect(method="ACK")
    alice.hangup(session, net.now)
    alice.datagrams_to_send()
    alice.transport_error(B, "udp", net.now)
    assert (session.state, session.cause) == (InviteState.DISCONNECTED, 503)  # it never reached Bob
    finish(net, alice)


def test_a_reinvite_that_cannot_be_sent_leaves_the_call_as_it_was() -> None:
    net, alice, bob, session, invite = calling(62)
    respond(bob, invite, 200, body=ANSWER_0)
    bob.expect(method="ACK")
    alice.reinvite(session, net.now, direction="sendonly")
    alice.datagrams_to_send()
    alice.transport_error(B, "udp", net.now)
    assert session.state is InviteState.CONFIRMED and not session.offers.busy
    assert session.negotiator.state.name == "DONE"
    alice.reinvite(session, net.now)  # nothing is stuck
    again = bob.expect(method="INVITE")
    respond(bob, again, 200, body=ANSWER_0)  # type: ignore[arg-type]
    bob.expect(method="ACK")
    hang_up(net, alice, session, bob)


def test_a_callee_whose_answer_cannot_be_sent_ends_the_call() -> None:
    net = SimNetwork(63)
    bob = layer_at(net, B, seed=63, user="bob")
    caller = ScriptedPeer(net, A, name="caller")
    invite_bob(caller, ALICE_SDP.serialize())
    net.run_until(0.1)
    session = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall)).session
    bob.answer(session, 180, net.now)
    bob.datagrams_to_send()
    bob.transport_error(A, "udp", net.now)
    assert (session.state, session.cause) == (InviteState.DISCONNECTED, 503)
    finish(net, bob)
