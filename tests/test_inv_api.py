"""The embedding API of the session layer (sans-IO, virtual time): per-call SDP, answers made
when the application answers, offers the application answers itself (re-INVITE, UPDATE, the 2xx
of a late offer), requests inside the dialog (INFO, MESSAGE), Reason headers, extra headers."""

from __future__ import annotations

from typing import Any

import pytest

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    DialogRequestReceived,
    DialogResponseReceived,
    IncomingCall,
    InviteResponseReceived,
    InviteSession,
    InviteState,
    MediaUpdated,
    OfferKind,
    OfferReceived,
    OfferWithdrawn,
    SessionEvent,
    SessionLayer,
    SessionStateChanged,
    option_tags,
)
from invsess.inv.offer import INCOMING_TRANSITIONS, IncomingInput, IncomingOffer, IncomingState
from invsess.routeset import parse_route_set
from invsess.sdp import NegotiatorState, parse_sdp
from invsess.sip import LocalProtocolError, Request, Response, parse_message
from invsess.testing import LinkProfile, ScriptedPeer, SimNetwork

from .sessions import ALICE_SDP, BOB_SDP, A, B, finish

OTHER = parse_sdp(
    "v=0\r\no=carol 7 7 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
    "m=audio 9000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
)
VIDEO_ONLY = parse_sdp(
    "v=0\r\no=vid 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
    "m=video 9002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)
ALLOW = ("INVITE", "BYE", "UPDATE", "PRACK", "INFO", "MESSAGE")


def events(layer: SessionLayer) -> list[SessionEvent]:
    return list(iter(layer.next_event, None))


ACCEPT = ("application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain")


def layer(net: SimNetwork, address: tuple[str, int], *, seed: int, user: str, sdp=ALICE_SDP,
          allow: tuple[str, ...] = ALLOW, **options: object) -> SessionLayer:  # fmt: skip
    """A session layer (MALLOC_DEBUG) whose endpoint takes INFO/MESSAGE bodies too."""
    supported = option_tags(options.get("timer"), options.get("rel100", "off"))  # type: ignore[arg-type]
    config = EndpointConfig(seed=seed, malloc_debug=True, allow=allow, supported=supported, accept=ACCEPT)
    made = SessionLayer(Endpoint(config), sdp, user=user, **options)  # type: ignore[arg-type]
    net.attach(made, address)
    return made


def pair(
    alice: dict[str, Any] | None = None, **bob_options: Any
) -> tuple[SimNetwork, SessionLayer, SessionLayer]:
    net = SimNetwork(21)
    caller = layer(net, A, seed=21, user="alice", **(alice or {}))
    bob = layer(net, B, seed=22, user="bob", sdp=BOB_SDP, **bob_options)
    return net, caller, bob


def ring(net: SimNetwork, alice: SessionLayer, bob: SessionLayer, **invite: object):
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=net.now, **invite)  # type: ignore[arg-type]
    net.run_until(net.now + 0.1)
    incoming = next(e for e in events(bob) if isinstance(e, IncomingCall))
    return session, incoming


def connect(net: SimNetwork, alice: SessionLayer, bob: SessionLayer) -> tuple[InviteSession, InviteSession]:
    session, incoming = ring(net, alice, bob)
    bob.answer(incoming.session, 200, net.now)
    net.run_until(net.now + 0.2)
    events(alice), events(bob)
    assert session.state is InviteState.CONFIRMED and incoming.session.state is InviteState.CONFIRMED
    return session, incoming.session


def sent(net: SimNetwork, first: str) -> list[Request | Response]:
    out: list[Request | Response] = []
    for entry in net.trace:
        if entry.first_line.startswith(first):
            out.append(parse_message(entry.data))
    return out


def hang_up(net: SimNetwork, alice: SessionLayer, bob: SessionLayer, session: InviteSession) -> None:
    alice.hangup(session, net.now)
    finish(net, alice, bob)


# -- per-call SDP, answers made at answer time -------------------------------------------------


def test_a_call_offers_its_own_sdp_and_the_callee_answers_with_the_sdp_it_chooses() -> None:
    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob, sdp=OTHER, headers=[("X-Leg", "a")], display_name="Carol")
    invite = sent(net, "INVITE")[0]
    assert parse_sdp(invite.body) == OTHER  # as given, o= line and all
    assert invite.headers.get("X-Leg") == "a"
    assert invite.from_ is not None and invite.from_.display_name == "Carol"
    assert incoming.offer == OTHER
    # The offer waits, unanswered, until the application answers: then with the SDP it chose.
    assert incoming.session.negotiator.state is NegotiatorState.REMOTE_OFFER
    bob.answer(incoming.session, 200, net.now, sdp=ALICE_SDP, headers=[("X-Answer", "yes")])
    net.run_until(net.now + 0.2)
    ok = sent(net, "SIP/2.0 200")[0]
    assert parse_sdp(ok.body) == ALICE_SDP and ok.headers.get("X-Answer") == "yes"
    assert session.negotiator.active_remote == ALICE_SDP
    assert session.state is InviteState.CONFIRMED
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_an_answer_that_does_not_answer_the_offer_gets_488() -> None:
    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob)
    bob.answer(incoming.session, 200, net.now, sdp=VIDEO_ONLY)  # an audio offer, a video answer
    net.run_until(net.now + 0.2)
    assert session.state is InviteState.DISCONNECTED and session.cause == 488
    finish(net, alice, bob)


def test_a_layer_without_sdp_needs_the_applications_and_sends_nothing_without_it() -> None:
    net, alice, bob = pair()
    bob.local_sdp = None  # a B2BUA's layer: no media of its own
    session, incoming = ring(net, alice, bob)
    assert incoming.offer is not None
    with pytest.raises(LocalProtocolError, match="no local SDP"):
        bob.answer(incoming.session, 200, net.now)
    assert incoming.session.state is InviteState.INCOMING  # nothing moved, nothing sent
    bob.answer(incoming.session, 180, net.now)  # an unreliable 1xx needs no SDP
    bob.answer(incoming.session, 200, net.now, sdp=BOB_SDP)
    net.run_until(net.now + 0.2)
    assert session.state is InviteState.CONFIRMED
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_a_call_without_any_sdp_is_a_late_offer_answered_in_the_ack() -> None:
    net, alice, bob = pair()
    alice.local_sdp = None
    session, incoming = ring(net, alice, bob)
    assert sent(net, "INVITE")[0].body == b"" and incoming.offer is None
    bob.answer(incoming.session, 200, net.now)  # bob's capabilities: its offer
    net.run_until(net.now + 0.2)
    # Alice has no capabilities and defers nothing: the offer in the 2xx cannot be answered.
    assert session.cause == 488
    finish(net, alice, bob)


def test_early_media_in_an_unreliable_183_is_repeated_in_the_2xx() -> None:
    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob)
    bob.answer(incoming.session, 183, net.now, sdp=OTHER)
    bob.answer(incoming.session, 200, net.now)
    net.run_until(net.now + 0.2)
    (early,), (ok,) = sent(net, "SIP/2.0 183"), sent(net, "SIP/2.0 200")
    assert parse_sdp(early.body) == OTHER and parse_sdp(ok.body) == OTHER  # RFC 3261 §13.2.1
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_the_caller_sees_every_response_to_its_invite_as_a_copy_it_may_keep() -> None:
    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob)
    bob.answer(incoming.session, 180, net.now, headers=[("X-Ring", "1")])
    net.run_until(net.now + 0.1)
    bob.answer(incoming.session, 486, net.now, reason="Busy Here", headers=[("X-Why", "busy")])
    net.run_until(net.now + 0.1)
    got = [e.response for e in events(alice) if isinstance(e, InviteResponseReceived)]
    assert [(r.status_code, r.reason) for r in got] == [(180, "Ringing"), (486, "Busy Here")]
    assert got[0].headers.get("X-Ring") == "1" and got[1].headers.get("X-Why") == "busy"
    assert session.cause == 486
    finish(net, alice, bob)


# -- Reason headers, extra headers, preloaded routes -----------------------------------------


def test_hangup_with_a_reason_sends_the_reason_header_on_bye_and_cancel() -> None:
    net, alice, bob = pair()
    session, _ = connect(net, alice, bob)
    alice.hangup(session, net.now, code=480, reason="Gone away")
    net.run_until(net.now + 0.2)
    (bye,) = sent(net, "BYE")
    assert bye.headers.get("Reason") == 'SIP;cause=480;text="Gone away"'
    assert session.cause == 480
    finish(net, alice, bob)

    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob)
    bob.answer(incoming.session, 180, net.now)
    net.run_until(net.now + 0.1)
    alice.hangup(session, net.now, reason="Call completed elsewhere", code=200 + 400)
    net.run_until(net.now + 0.2)
    (cancel,) = sent(net, "CANCEL")
    assert cancel.headers.get("Reason") == 'SIP;cause=600;text="Call completed elsewhere"'
    with pytest.raises(LocalProtocolError, match="3xx-6xx"):
        alice.hangup(session, net.now, code=200)
    finish(net, alice, bob)


def test_a_preloaded_route_goes_in_the_invite() -> None:
    net, alice, bob = pair()
    _session, incoming = ring(net, alice, bob, route=parse_route_set(["sip:127.0.0.2:5060;lr"]))
    assert sent(net, "INVITE")[0].headers.get("Route") == "<sip:127.0.0.2:5060;lr>"
    bob.answer(incoming.session, 603, net.now)
    net.run_until(net.now + 0.1)
    finish(net, alice, bob)


def test_headers_must_be_name_value_pairs() -> None:
    net, alice, bob = pair()
    with pytest.raises(ValueError, match="not a header"):
        alice.invite("sip:bob@127.0.0.2", destination=B, now=0.0, headers=[("X-Bad", "a\r\nVia: x")])
    with pytest.raises(TypeError, match="pair"):
        alice.invite("sip:bob@127.0.0.2", destination=B, now=0.0, headers=["X-Bad: a"])  # type: ignore[list-item]
    finish(net, alice, bob)


# -- offers the application answers ----------------------------------------------------------


def test_a_reinvite_waits_for_the_application_which_answers_with_its_own_sdp() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    bob.defer_offers(callee)
    alice.reinvite(session, net.now, direction="sendonly")
    net.run_until(net.now + 1.0)  # long enough for the transaction's own 100 Trying
    (offer,) = [e for e in events(bob) if isinstance(e, OfferReceived)]
    assert offer.kind is OfferKind.REINVITE and offer.offer is not None
    assert offer.offer.media[0].direction == "sendonly"
    assert offer.request is not None and offer.request.method == "INVITE"
    assert len(sent(net, "SIP/2.0 100")) == 1  # the re-INVITE's (the INVITE was answered at once)
    with pytest.raises(LocalProtocolError, match="waiting"):
        bob.reinvite(callee, net.now)  # our own offer cannot cross the peer's
    bob.answer_offer(callee, net.now)  # from bob's capabilities
    net.run_until(net.now + 0.2)
    assert session.negotiator.active_remote is not None
    assert session.negotiator.active_remote.media[0].direction == "recvonly"
    assert [e for e in events(alice) if isinstance(e, MediaUpdated)]
    with pytest.raises(LocalProtocolError, match="no offer"):
        bob.answer_offer(callee, net.now)
    hang_up(net, alice, bob, session)


def test_a_reinvite_answered_with_the_sdp_of_another_leg() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    bob.defer_offers(callee)
    alice.reinvite(session, net.now, direction="sendonly")
    net.run_until(net.now + 0.1)
    events(bob)
    answer = parse_sdp(
        OTHER.serialize().decode().replace("a=sendrecv", "a=recvonly").replace(" 7 7 ", " 7 9 ")
    )
    bob.answer_offer(callee, net.now, sdp=answer, headers=[("X-B2BUA", "1")])
    net.run_until(net.now + 0.2)
    (ok,) = [m for m in sent(net, "SIP/2.0 200") if m.cseq and m.cseq.number == 2]
    assert parse_sdp(ok.body) == answer and ok.headers.get("X-B2BUA") == "1"
    assert session.negotiator.active_remote == answer
    hang_up(net, alice, bob, session)


def test_a_refused_offer_leaves_the_session_as_it_was() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    before = callee.negotiator.generation, callee.negotiator.active_local
    bob.defer_offers(callee)
    alice.reinvite(session, net.now, direction="sendonly")
    net.run_until(net.now + 0.1)
    events(bob)
    with pytest.raises(LocalProtocolError, match="3xx-6xx"):
        bob.reject_offer(callee, net.now, code=200)
    bob.reject_offer(callee, net.now, code=488, reason="Not Now")
    net.run_until(net.now + 0.2)
    assert [m.reason for m in sent(net, "SIP/2.0 488") if isinstance(m, Response)] == ["Not Now"]
    assert callee.negotiator.state is NegotiatorState.DONE
    assert (callee.negotiator.generation, callee.negotiator.active_local) == before
    assert session.state is InviteState.CONFIRMED and callee.state is InviteState.CONFIRMED
    with pytest.raises(LocalProtocolError, match="no offer"):
        bob.reject_offer(callee, net.now)
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_an_answer_that_does_not_fit_the_offer_gets_the_reinvite_488() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    bob.defer_offers(callee)
    alice.reinvite(session, net.now, direction="sendonly")
    net.run_until(net.now + 0.1)
    events(bob)
    bob.answer_offer(callee, net.now, sdp=VIDEO_ONLY)
    net.run_until(net.now + 0.2)
    assert [m.cseq.number for m in sent(net, "SIP/2.0 488") if m.cseq] == [2]
    assert session.state is InviteState.CONFIRMED
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_an_offer_not_answered_in_time_gets_504() -> None:
    net = SimNetwork(23)
    alice = layer(net, A, seed=23, user="alice", allow=ALLOW)
    bob = layer(net, B, seed=24, user="bob", sdp=BOB_SDP, allow=ALLOW, offer_timeout=5.0)
    session, callee = connect(net, alice, bob)
    bob.defer_offers(callee)
    alice.reinvite(session, net.now, direction="sendonly")
    net.run_until(net.now + 5.2)
    assert [e.code for e in events(bob) if isinstance(e, OfferWithdrawn)] == [504]
    assert len(sent(net, "SIP/2.0 504")) == 1
    assert callee.negotiator.state is NegotiatorState.DONE and session.state is InviteState.CONFIRMED
    with pytest.raises(LocalProtocolError, match="no offer"):
        bob.answer_offer(callee, net.now)
    events(alice)
    hang_up(net, alice, bob, session)


def test_a_bye_while_an_offer_waits_gets_the_reinvite_487() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    bob.defer_offers(callee)
    alice.reinvite(session, net.now, direction="sendonly")
    net.run_until(net.now + 0.1)
    events(bob)
    alice.hangup(session, net.now)  # our BYE while our own re-INVITE waits: the peer ends both
    net.run_until(net.now + 0.2)
    assert len(sent(net, "SIP/2.0 487")) == 1
    kinds = [type(e).__name__ for e in events(bob)]
    assert "OfferWithdrawn" in kinds and kinds[-1] == "SessionStateChanged"
    finish(net, alice, bob)


def test_an_update_in_the_early_dialog_waits_for_the_application() -> None:
    net, alice, bob = pair(rel100="supported", alice={"rel100": "supported"})
    session, incoming = ring(net, alice, bob)
    callee = incoming.session
    bob.defer_offers(callee)
    bob.answer(callee, 183, net.now)  # reliable, with our answer; the PRACK comes back
    net.run_until(net.now + 0.2)
    assert session.state is InviteState.EARLY and session.negotiator.state is NegotiatorState.DONE
    alice.update(session, net.now, direction="sendonly")
    net.run_until(net.now + 0.1)
    (offer,) = [e for e in events(bob) if isinstance(e, OfferReceived)]
    assert offer.kind is OfferKind.UPDATE and callee.state is InviteState.EARLY
    bob.answer_offer(callee, net.now)
    net.run_until(net.now + 0.1)
    assert session.negotiator.active_remote is not None
    assert session.negotiator.active_remote.media[0].direction == "recvonly"
    bob.answer(callee, 200, net.now)
    net.run_until(net.now + 0.2)
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_an_update_waits_no_longer_than_the_peers_timer_f() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    bob.defer_offers(callee)
    alice.update(session, net.now, direction="sendonly")
    net.run_until(net.now + 16.5)  # 32*T1: before the peer's Timer F (64*T1)
    assert [e.code for e in events(bob) if isinstance(e, OfferWithdrawn)] == [504]
    assert session.state is InviteState.CONFIRMED
    events(alice)
    hang_up(net, alice, bob, session)


def test_the_offer_in_the_2xx_of_a_late_offer_holds_our_ack_until_the_application_answers() -> None:
    net, alice, bob = pair(alice={}, rel100="off")
    session, incoming = ring(net, alice, bob, with_offer=False, defer_offers=True)
    callee = incoming.session
    bob.answer(callee, 200, net.now)  # bob offers in its 2xx
    net.run_until(net.now + 1.6)  # its 2xx is retransmitted at 0.5 s and 1.5 s: no ACK yet
    assert not sent(net, "ACK") and len(sent(net, "SIP/2.0 200")) == 3
    (offer,) = [e for e in events(alice) if isinstance(e, OfferReceived)]
    assert offer.kind is OfferKind.ACK and offer.request is None and offer.offer == BOB_SDP
    assert (session.state, callee.state) == (InviteState.CONNECTING, InviteState.CONNECTING)
    # Inside the dialog meanwhile: bob (waiting for the ACK) sends INFO; alice takes it.
    tx = bob.send_request(callee, "INFO", net.now, body=b"Signal=5\r\nDuration=160\r\n",
                          content_type="application/dtmf-relay")  # fmt: skip
    net.run_until(net.now + 0.05)
    (info,) = [e for e in events(alice) if isinstance(e, DialogRequestReceived)]
    alice.respond(session, info.transaction, 200, net.now)
    net.run_until(net.now + 0.05)
    assert [
        e.response.status_code
        for e in events(bob)
        if isinstance(e, DialogResponseReceived) and e.transaction is tx and e.response
    ] == [200]
    alice.answer_offer(session, net.now, sdp=OTHER)
    net.run_until(net.now + 0.2)
    (ack,) = sent(net, "ACK")
    assert parse_sdp(ack.body) == OTHER
    assert session.state is InviteState.CONFIRMED and callee.state is InviteState.CONFIRMED
    assert callee.negotiator.active_remote == OTHER
    events(alice), events(bob)
    hang_up(net, alice, bob, session)


def test_hanging_up_while_the_ack_waits_sends_it_then_bye() -> None:
    net, alice, bob = pair()
    alice.local_sdp = None
    session, incoming = ring(net, alice, bob, defer_offers=True)
    bob.answer(incoming.session, 200, net.now)
    net.run_until(net.now + 0.1)
    events(alice)
    alice.hangup(session, net.now, reason="changed my mind")
    net.run_until(net.now + 0.3)
    lines = [e.first_line.split()[0] for e in net.trace if not e.first_line.startswith("SIP/")]
    assert lines.index("ACK") < lines.index("BYE")  # our ACK first (then bob, answered nothing, BYEs too)
    assert sent(net, "ACK")[0].body == b""
    finish(net, alice, bob)


def test_an_offer_in_a_2xx_not_answered_in_time_ends_the_call() -> None:
    net, alice, bob = pair()
    alice.local_sdp = None
    session, incoming = ring(net, alice, bob, defer_offers=True)
    bob.answer(incoming.session, 200, net.now)
    net.run_until(net.now + 16.5)
    assert [e.code for e in events(alice) if isinstance(e, OfferWithdrawn)] == [504]
    assert sent(net, "BYE") and session.state is InviteState.DISCONNECTED and session.cause == 488
    finish(net, alice, bob)


# -- requests inside the dialog --------------------------------------------------------------


def test_info_and_message_both_ways_with_their_answers() -> None:
    net, alice, bob = pair()
    session, callee = connect(net, alice, bob)
    dtmf = b"Signal=1\r\nDuration=250\r\n"
    tx = alice.send_request(session, "info", net.now, body=dtmf, content_type="application/dtmf-relay",
                            headers=[("X-Digit", "1")])  # fmt: skip
    net.run_until(net.now + 0.05)
    (got,) = [e for e in events(bob) if isinstance(e, DialogRequestReceived)]
    assert got.request.method == "INFO" and got.request.body == dtmf
    assert got.request.headers.get("X-Digit") == "1"
    bob.respond(callee, got.transaction, 200, net.now, body=b"ok", content_type="text/plain")
    net.run_until(net.now + 0.05)
    (answer,) = [e for e in events(alice) if isinstance(e, DialogResponseReceived)]
    assert answer.transaction is tx and answer.response is not None and answer.response.body == b"ok"
    with pytest.raises(LocalProtocolError, match="cannot send"):
        bob.respond(callee, got.transaction, 200, net.now)  # answered already
    bob.send_request(callee, "MESSAGE", net.now, body=b"hi", content_type="text/plain")
    net.run_until(net.now + 0.05)
    (message,) = [e for e in events(alice) if isinstance(e, DialogRequestReceived)]
    alice.respond(session, message.transaction, 415, net.now)
    net.run_until(net.now + 0.05)
    assert [
        e.response.status_code for e in events(bob) if isinstance(e, DialogResponseReceived) and e.response
    ] == [415]
    assert session.state is InviteState.CONFIRMED
    hang_up(net, alice, bob, session)


def test_requests_the_session_sends_itself_are_refused_and_bodies_need_a_type() -> None:
    net, alice, bob = pair()
    session, _ = connect(net, alice, bob)
    for method in ("BYE", "INVITE", "UPDATE", "PRACK", "ACK", "CANCEL"):
        with pytest.raises(LocalProtocolError, match="session's own"):
            alice.send_request(session, method, net.now)
    with pytest.raises(LocalProtocolError, match="content type"):
        alice.send_request(session, "INFO", net.now, body=b"x")
    hang_up(net, alice, bob, session)


def test_info_in_an_early_dialog_both_ways() -> None:
    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob)
    callee = incoming.session
    bob.answer(callee, 180, net.now)
    net.run_until(net.now + 0.1)
    alice.send_request(session, "INFO", net.now)
    bob.send_request(callee, "INFO", net.now)
    net.run_until(net.now + 0.1)
    for layer, own in ((alice, session), (bob, callee)):
        (got,) = [e for e in events(layer) if isinstance(e, DialogRequestReceived)]
        layer.respond(own, got.transaction, 200, net.now)
    net.run_until(net.now + 0.1)
    assert len([e for e in events(alice) if isinstance(e, DialogResponseReceived)]) == 1
    assert len([e for e in events(bob) if isinstance(e, DialogResponseReceived)]) == 1
    bob.answer(callee, 486, net.now)
    finish(net, alice, bob)


def test_a_method_the_endpoint_does_not_allow_gets_405_and_never_reaches_the_session() -> None:
    net = SimNetwork(25)
    alice = layer(net, A, seed=25, user="alice", allow=ALLOW)
    bob = layer(net, B, seed=26, user="bob", allow=("INVITE", "BYE"))
    session, _callee = connect(net, alice, bob)
    alice.send_request(session, "INFO", net.now)
    net.run_until(net.now + 0.1)
    (answer,) = [e for e in events(alice) if isinstance(e, DialogResponseReceived)]
    assert answer.response is not None and answer.response.status_code == 405
    assert not [e for e in events(bob) if isinstance(e, DialogRequestReceived)]
    hang_up(net, alice, bob, session)


def test_an_in_dialog_request_that_times_out_ends_the_session() -> None:
    net, alice, bob = pair()
    session, _ = connect(net, alice, bob)
    net.link(A, B, LinkProfile(loss=1.0), both_ways=True)
    tx = alice.send_request(session, "INFO", net.now)
    net.run_until(net.now + 40)
    got = [e for e in events(alice) if isinstance(e, DialogResponseReceived)]
    assert got[0].transaction is tx and got[0].response is None
    assert session.state is InviteState.DISCONNECTED and session.cause == 408
    net.link(A, B, LinkProfile(), both_ways=True)
    finish(net, alice, bob, limit=400)


# -- the peer's offers while one waits, CANCEL of a waiting re-INVITE (a scripted peer) ------

CALLER_INVITE = """INVITE sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch=z9hG4bKapi1
From: <sip:caller@127.0.0.1>;tag=caller-1
To: <sip:bob@127.0.0.2>
Call-ID: api-call-1
CSeq: 1 INVITE
Contact: <sip:caller@{local}>
Content-Length: 0

"""

IN_DIALOG = """{method} sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:caller@127.0.0.1>;tag=caller-1
To: {to}
Call-ID: api-call-1
CSeq: {cseq} {cseq_method}
Contact: <sip:caller@{local}>
Content-Type: application/sdp
Content-Length: {content_length}

"""


def _scripted() -> tuple[SimNetwork, SessionLayer, ScriptedPeer, InviteSession, str]:
    net = SimNetwork(27)
    bob = layer(net, B, seed=27, user="bob", allow=ALLOW)
    caller = ScriptedPeer(net, A, name="caller")
    caller.send(CALLER_INVITE, B)
    net.run_until(0.1)
    session = next(e for e in events(bob) if isinstance(e, IncomingCall)).session
    bob.answer(session, 200, net.now)  # bob offers (late offer)
    ok = caller.expect(status=200)
    to = ok.headers.get("To") or ""
    answer = ALICE_SDP.serialize().decode()
    caller.send(IN_DIALOG.replace("Content-Type: application/sdp\n", "Content-Type: application/sdp\n") + answer, B,
                method="ACK", branch="z9hG4bKapi1ack", to=to, cseq=1, cseq_method="ACK")  # fmt: skip
    net.run_until(net.now + 0.1)
    events(bob)
    bob.defer_offers(session)
    return net, bob, caller, session, to


def _send(
    caller: ScriptedPeer, method: str, branch: str, to: str, cseq: int, body: str = "", cseq_method: str = ""
) -> None:
    template = IN_DIALOG + body
    if not body:
        template = template.replace("Content-Type: application/sdp\n", "")
    caller.send(
        template, B, method=method, branch=branch, to=to, cseq=cseq, cseq_method=cseq_method or method
    )


def test_a_second_offer_while_one_waits_gets_500_with_retry_after_and_cancel_withdraws_it() -> None:
    net, bob, caller, session, to = _scripted()
    offer = (
        ALICE_SDP.serialize()
        .decode()
        .replace("a=rtpmap:8 PCMA/8000\r\n", "a=rtpmap:8 PCMA/8000\r\na=sendonly\r\n")
    )
    _send(caller, "INVITE", "z9hG4bKapi2", to, 2, offer)
    caller.expect(status=100, within=1.0)  # the server transaction keeps the re-INVITE alive
    (waiting,) = [e for e in events(bob) if isinstance(e, OfferReceived)]
    assert waiting.kind is OfferKind.REINVITE
    _send(caller, "UPDATE", "z9hG4bKapi3", to, 3, offer)
    refused = caller.expect(status=500)
    assert refused.headers.get("Retry-After") is not None
    _send(caller, "INVITE", "z9hG4bKapi4", to, 4, offer)
    assert caller.expect(status=500).headers.get("Retry-After") is not None
    _send(caller, "ACK", "z9hG4bKapi4", to, 4, cseq_method="ACK")
    # CANCEL of the waiting re-INVITE: 200 to the CANCEL, 487 to the re-INVITE, the call goes on.
    caller.send(IN_DIALOG.replace("Content-Type: application/sdp\n", "").replace("{method} sip", "CANCEL sip"), B,
                branch="z9hG4bKapi2", to=to, cseq=2, cseq_method="CANCEL")  # fmt: skip
    caller.expect(status=487)
    assert [e.code for e in events(bob) if isinstance(e, OfferWithdrawn)] == [487]
    _send(caller, "ACK", "z9hG4bKapi2", to, 2, cseq_method="ACK")
    assert session.state is InviteState.CONFIRMED and session.negotiator.state is NegotiatorState.DONE
    with pytest.raises(LocalProtocolError, match="no offer"):
        bob.answer_offer(session, net.now)
    _send(caller, "BYE", "z9hG4bKapi5", to, 5)
    caller.expect(status=200)
    finish(net, bob)


def test_a_reinvite_without_sdp_is_answered_with_the_applications_offer() -> None:
    net, bob, caller, session, to = _scripted()
    _send(caller, "INVITE", "z9hG4bKapi2", to, 2)
    net.run_until(net.now + 0.1)
    (waiting,) = [e for e in events(bob) if isinstance(e, OfferReceived)]
    assert waiting.offer is None and waiting.kind is OfferKind.REINVITE
    bob.answer_offer(session, net.now, sdp=OTHER)
    ok = caller.expect(status=200, where=lambda m: m.cseq is not None and m.cseq.number == 2)
    assert parse_sdp(ok.body) == OTHER
    answer = ALICE_SDP.serialize().decode()
    _send(caller, "ACK", "z9hG4bKapi2ack", to, 2, answer, cseq_method="ACK")
    net.run_until(net.now + 0.1)
    assert [e for e in events(bob) if isinstance(e, MediaUpdated)]
    assert session.negotiator.active_local == OTHER
    _send(caller, "BYE", "z9hG4bKapi5", to, 3)
    caller.expect(status=200)
    finish(net, bob)


# -- the incoming-offer machine on its own ---------------------------------------------------


def test_the_incoming_offer_table_blames_each_misuse_on_the_right_side() -> None:
    offer = IncomingOffer()
    assert offer.state is IncomingState.IDLE
    with pytest.raises(LocalProtocolError):
        offer.go(IncomingInput.ANSWER)
    with pytest.raises(LocalProtocolError):
        offer.go(IncomingInput.REJECT)
    from invsess.errors import InternalError

    with pytest.raises(InternalError):
        offer.go(IncomingInput.TIMEOUT)
    offer.go(IncomingInput.RECEIVE)
    from invsess.inv import RequestRefusedError

    with pytest.raises(RequestRefusedError) as refused:
        offer.go(IncomingInput.RECEIVE)
    assert refused.value.status_code == 500 and refused.value.headers == (("Retry-After", "1"),)
    assert set(INCOMING_TRANSITIONS.values()) == set(IncomingState)


def test_a_session_event_stream_reads_states_in_order() -> None:
    net, alice, bob = pair()
    session, incoming = ring(net, alice, bob)
    bob.answer(incoming.session, 200, net.now)
    net.run_until(net.now + 0.2)
    states = [e.new.name for e in events(alice) if isinstance(e, SessionStateChanged)]
    assert states == ["CALLING", "CONNECTING", "CONFIRMED"]
    events(bob)
    hang_up(net, alice, bob, session)
