"""Session timers (RFC 4028) in virtual time: negotiation, refreshes, expiry, 422, failures."""

from __future__ import annotations

import pytest

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteState, SessionLayer
from invsess.inv.timer import (
    TimerDecision,
    TimerRejection,
    TimerSettings,
    uac_decide,
    uas_decide,
)
from invsess.memory import DanglingReferenceError, UseAfterFreeError
from invsess.sip import Request, Response, make_response, parse_message
from invsess.testing import ScriptedPeer, SimNetwork

from .sessions import ALICE_SDP, A, B, World, finish, layer_at

pytestmark = pytest.mark.virtual_time  # half-hour calls and exact deadlines


def _invite(*headers: str) -> Request:
    extra = "".join(f"{h}\r\n" for h in headers)
    message = parse_message(
        "INVITE sip:bob@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.2>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:a@127.0.0.1>\r\n{extra}Content-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(message, Request)
    return message


UAS_CASES = [
    # (request headers, settings, expected (interval, we_refresh) or rejection code)
    (("Supported: timer", "Session-Expires: 1800"), TimerSettings(), (1800, False)),
    (("Supported: timer", "Session-Expires: 1800;refresher=uas"), TimerSettings(), (1800, True)),
    (("Supported: timer", "Session-Expires: 600"), TimerSettings(session_expires=300), (300, False)),
    (("Supported: timer", "Session-Expires: 60"), TimerSettings(), 422),
    (("Supported: timer", "Session-Expires: 100"), TimerSettings(min_se=120, session_expires=300), 422),
    # a proxy asked for the timer for a UA that would not understand a 422: raise it, refresh ourselves
    (("Session-Expires: 60",), TimerSettings(), (90, True)),
    (("Session-Expires: 1800;refresher=uac",), TimerSettings(), (1800, True)),
    # no Session-Expires: we impose ours; the caller refreshes if it can, else we do
    (("Supported: timer",), TimerSettings(session_expires=600), (600, False)),
    ((), TimerSettings(session_expires=600), (600, True)),
    (("Supported: timer",), TimerSettings(refresher="uas"), (1800, True)),
    (
        ("Supported: timer", "Session-Expires: 1800", "Min-SE: 1000"),
        TimerSettings(session_expires=900),
        (1000, False),
    ),
    ((), TimerSettings(required=True), 421),
    (("k: timer", "x: 200;refresher=uas"), TimerSettings(), (200, True)),  # compact forms
]


@pytest.mark.parametrize(("headers", "settings", "expected"), UAS_CASES)
def test_uas_negotiation(headers: tuple[str, ...], settings: TimerSettings, expected: object) -> None:
    decision = uas_decide(_invite(*headers), settings, min_se=settings.min_se, initial=True)
    if isinstance(expected, int):
        assert isinstance(decision, TimerRejection) and decision.status_code == expected
        if expected == 422:
            assert ("Min-SE", str(max(settings.min_se, 90))) in decision.headers
    else:
        assert isinstance(decision, TimerDecision)
        assert (decision.interval, decision.we_refresh) == expected


def test_uac_reads_the_2xx() -> None:
    invite = _invite("Supported: timer", "Session-Expires: 1800")
    ok = make_response(invite, 200, to_tag="b", headers=[("Session-Expires", "900;refresher=uas")])
    assert uac_decide(ok, min_se=90) == TimerDecision(900, False, 90)
    ok = make_response(invite, 200, to_tag="b", headers=[("Session-Expires", "900")])
    assert uac_decide(ok, min_se=90) == TimerDecision(900, True, 90)
    assert uac_decide(make_response(invite, 200, to_tag="b"), min_se=90) is None  # no timer at all


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="floor"):
        TimerSettings(min_se=30)
    with pytest.raises(ValueError, match="below min_se"):
        TimerSettings(session_expires=100, min_se=120)
    with pytest.raises(ValueError, match="refresher"):
        TimerSettings(refresher="both")  # type: ignore[arg-type]
    assert TimerSettings(min_se=10, session_expires=20, floor=5).min_se == 10  # test beds may go lower


def test_the_layer_refuses_an_endpoint_that_would_turn_timers_away() -> None:
    with pytest.raises(ValueError, match="supported: 'timer'"):
        SessionLayer(Endpoint(EndpointConfig()), ALICE_SDP, timer=TimerSettings())
    with pytest.raises(ValueError, match="allow: 'PRACK'"):
        SessionLayer(Endpoint(EndpointConfig(supported=("100rel",))), ALICE_SDP, rel100="required")


def _refreshes(w: World, sender: tuple[str, int], method: str) -> list[float]:
    return [
        e.time
        for e in w.net.trace
        if e.source == sender and e.first_line.startswith(f"{method} ") and b"Session-Expires" in e.data
    ]


REFRESH_CASES = [
    # (who refreshes, the callee allows UPDATE?) -> refresh method, sender
    ("uac", True, "UPDATE", A),
    ("uas", True, "UPDATE", B),
    ("uac", False, "INVITE", A),
    ("uas", False, "INVITE", B),
]


@pytest.mark.parametrize(("refresher", "update", "method", "sender"), REFRESH_CASES)
def test_an_1800_second_call_is_refreshed_ten_times(
    refresher: str, update: bool, method: str, sender: tuple[str, int]
) -> None:
    settings = TimerSettings(session_expires=340, refresher=refresher)  # type: ignore[arg-type]
    allow = ("INVITE", "BYE", "UPDATE") if update else ("INVITE", "BYE")
    w = World(alice={"timer": settings}, bob={"timer": TimerSettings()}, allow=allow)
    alice, bob = w.connected()
    start = w.net.now
    assert alice.timer is not None and bob.timer is not None
    assert (alice.timer.interval, bob.timer.interval) == (340, 340)
    assert alice.timer.we_refresh is (refresher == "uac") and bob.timer.we_refresh is (refresher == "uas")
    w.run(1800.0)
    times = _refreshes(w, sender, method)
    if method == "INVITE":
        times = times[1:] if sender == A else times  # Alice's first INVITE is the call itself
    assert len(times) == 10, times
    # every refresh half the interval after the one before (each restarts the clock at its 2xx,
    # one round trip of 20 ms later)
    gaps = [b - a for a, b in zip([start, *times], times, strict=False)]
    assert all(169.7 < gap < 170.1 for gap in gaps), gaps
    assert alice.state is InviteState.CONFIRMED and bob.state is InviteState.CONFIRMED
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_the_non_refresher_ends_the_call_at_the_deadline_when_refreshes_stop() -> None:
    w = World(alice={"timer": TimerSettings(session_expires=90)}, bob={"timer": TimerSettings()})
    alice, bob = w.connected()
    assert alice.timer is not None and alice.timer.we_refresh
    assert bob.timer is not None and not bob.timer.we_refresh
    confirmed_at = max(e.time for e in w.net.trace if e.first_line.startswith("SIP/2.0 200"))
    w.net.partition(A, B)  # Alice's refreshes never arrive
    w.run(200.0)
    byes = [e for e in w.net.trace if e.source == B and e.first_line.startswith("BYE")]
    # RFC 4028 §10: BYE at SE - min(32, SE/3) = 90 - 30 = 60 s after the 2xx that set the timer
    assert byes and byes[0].time == pytest.approx(confirmed_at + 60.0, abs=0.01)
    assert b'Reason: SIP;cause=408;text="Session timer expired"' in byes[0].data
    assert ("bob", "state", ("DISCONNECTED", 408)) in w.log
    assert ("alice", "state", ("DISCONNECTED", 408)) in w.log  # its refresh timed out: BYE too
    w.net.heal()
    w.settle()


def test_a_422_raises_the_interval_and_the_call_goes_on() -> None:
    w = World(
        alice={"timer": TimerSettings(session_expires=90)},
        bob={"timer": TimerSettings(session_expires=600, min_se=300)},
    )
    alice, _ = w.connected()
    assert alice.state is InviteState.CONFIRMED
    invites = [e for e in w.net.trace if e.source == A and e.first_line.startswith("INVITE")]
    assert len(invites) == 2
    assert b"Session-Expires: 300" in invites[1].data and b"Min-SE: 300" in invites[1].data
    assert b"CSeq: 2 INVITE" in invites[1].data
    assert any(e.first_line.startswith("SIP/2.0 422") for e in w.net.trace)
    assert alice.timer is not None and alice.timer.interval == 300
    assert w.states("alice") == ["CALLING", "CONNECTING", "CONFIRMED"]
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_a_peer_without_timers_is_refreshed_by_the_callee() -> None:
    w = World(bob={"timer": TimerSettings(session_expires=120)})
    alice, bob = w.connected()
    assert alice.timer is None and bob.timer is not None and bob.timer.we_refresh
    ok = next(e for e in w.net.trace if e.first_line.startswith("SIP/2.0 200") and e.source == B)
    assert b"Session-Expires: 120;refresher=uas" in ok.data and b"Require: timer" not in ok.data
    w.run(300.0)
    assert len(_refreshes(w, B, "UPDATE")) == 5  # at 60, 120, ... 300 s
    assert alice.state is InviteState.CONFIRMED
    w.bob.hangup(bob, w.net.now)
    w.settle()


def test_a_callee_without_timers_means_no_expiry() -> None:
    w = World(alice={"timer": TimerSettings(session_expires=90)})
    alice, _ = w.connected()
    assert alice.timer is not None and not alice.timer.active
    w.run(400.0)
    assert not _refreshes(w, A, "UPDATE") and alice.state is InviteState.CONFIRMED
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_a_refresh_waits_for_an_exchange_in_progress() -> None:
    w = World(alice={"timer": TimerSettings(session_expires=90)}, bob={"timer": TimerSettings()})
    alice, _ = w.connected()
    assert alice.timer is not None and alice.timer.refresh_at is not None
    w.net.run_until(alice.timer.refresh_at - 0.001)
    w.drain()
    w.net.partition(B, A)  # Bob's 2xx to the re-INVITE is held up: the exchange is in progress
    w.alice.reinvite(alice, w.net.now, direction="sendonly")
    w.run(0.5)
    assert alice.timer.refresh_tx is None and alice.timer.refresh_at is not None  # deferred
    assert not _refreshes(w, A, "UPDATE")
    w.net.heal()
    w.run(10.0)  # the re-INVITE succeeds (Bob retransmits its 2xx): that was the refresh
    assert alice.state is InviteState.CONFIRMED
    assert alice.timer.refresh_at is not None and alice.timer.refresh_at > w.net.now + 30
    w.alice.hangup(alice, w.net.now)
    w.settle()


def test_glare_between_two_refreshes_is_resolved_by_491_and_retry() -> None:
    # Both sides think they refresh: Bob's timer is set up by hand to collide with Alice's.
    w = World(alice={"timer": TimerSettings(session_expires=90)}, bob={"timer": TimerSettings()})
    alice, bob = w.connected()
    assert alice.timer is not None and bob.timer is not None and alice.timer.refresh_at is not None
    w.net.run_until(alice.timer.refresh_at - 0.001)
    w.drain()
    w.bob.reinvite(bob, w.net.now, direction="sendonly")  # crosses Alice's refresh
    alice.timer.refresh_at = w.net.now  # Alice refreshes with a re-INVITE now, too
    alice.peer_allow = frozenset({"INVITE"})
    w.run(10.0)
    assert sum(1 for e in w.net.trace if e.first_line.startswith("SIP/2.0 491")) >= 1
    assert alice.state is InviteState.CONFIRMED and bob.state is InviteState.CONFIRMED
    assert alice.timer.refresh_at is not None and alice.timer.refresh_at > w.net.now + 30
    w.alice.hangup(alice, w.net.now)
    w.settle()


# -- a scripted callee answering Alice's refreshes as we please ------------------------------------

OK_WITH_TIMER = "90;refresher=uac"


def _scripted_call(timer: TimerSettings) -> tuple[SimNetwork, SessionLayer, ScriptedPeer, object, Request]:
    net = SimNetwork(3)
    alice = layer_at(net, A, seed=3, user="alice", timer=timer)
    peer = ScriptedPeer(net, B, name="bob")
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=0.0)
    invite = peer.expect(method="INVITE")
    assert isinstance(invite, Request)
    return net, alice, peer, session, invite


def _answer(peer: ScriptedPeer, invite: Request, code: int, **headers: str) -> Response:
    hdrs: list[tuple[str, object]] = [
        ("Contact", "<sip:bob@127.0.0.2:5060>"),
        ("Allow", "INVITE, ACK, BYE, UPDATE"),
    ]
    hdrs += [(k.replace("_", "-"), v) for k, v in headers.items()]
    body = b"" if code != 200 or invite.method != "INVITE" or not invite.body else _BOB_SDP
    response = make_response(
        invite,
        code,
        to_tag="bob-1",
        headers=hdrs,
        body=body,
        content_type="application/sdp" if body else None,
    )
    peer.send(response, A)
    return response


_BOB_SDP = (
    b"v=0\r\no=bob 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
)


@pytest.mark.parametrize(
    ("code", "ends"),
    [(500, True), (404, False), (491, False), (503, False), (422, False)],  # 404: again with SDP
)
def test_what_a_failed_refresh_does(code: int, ends: bool) -> None:
    net, alice, peer, session, invite = _scripted_call(TimerSettings(session_expires=90))
    _answer(peer, invite, 200, Session_Expires=OK_WITH_TIMER)
    peer.expect(method="ACK")
    update = peer.expect(method="UPDATE", within=46.0)
    assert isinstance(update, Request) and not update.body
    assert net.now == pytest.approx(45.0, abs=0.1)
    extra = {"Min_SE": "120"} if code == 422 else {"Retry_After": "3"} if code == 503 else {}
    _answer(peer, update, code, **extra)
    if ends:
        bye = peer.expect(method="BYE")
        assert isinstance(bye, Request) and f"cause={code}" in (bye.headers.get("Reason") or "")
        peer.send(make_response(bye, 200), A)
    else:
        again = peer.expect(method="UPDATE", within=5.0)
        assert isinstance(again, Request)
        if code == 422:
            assert again.session_expires is not None and again.session_expires.delta == 120
            assert net.now == pytest.approx(45.0, abs=0.1)  # at once
        if code == 503:
            assert net.now == pytest.approx(48.0, abs=0.1)  # after Retry-After
        _answer(peer, again, 200, Session_Expires="120;refresher=uac" if code == 422 else OK_WITH_TIMER)
        net.run_until(net.now + 1)
        assert session.state is InviteState.CONFIRMED  # type: ignore[attr-defined]
        alice.hangup(session, net.now)  # type: ignore[arg-type]
        bye = peer.expect(method="BYE")
        peer.send(make_response(bye, 200), A)  # type: ignore[arg-type]
    finish(net, alice)


def test_a_422_without_a_higher_min_se_is_not_retried_forever() -> None:
    net, alice, peer, session, invite = _scripted_call(TimerSettings(session_expires=90))
    _answer(peer, invite, 422, Min_SE="90")  # no higher than asked: retrying would loop
    peer.expect(method="ACK")
    net.run_until(net.now + 1)
    assert session.state is InviteState.DISCONNECTED  # type: ignore[attr-defined]
    assert session.cause == 422  # type: ignore[attr-defined]
    finish(net, alice)


def test_422_is_retried_at_most_twice() -> None:
    net, alice, peer, session, invite = _scripted_call(TimerSettings(session_expires=90))
    for min_se in (120, 180, 240):
        _answer(peer, invite, 422, Min_SE=str(min_se))
        peer.expect(method="ACK")
        if min_se == 240:
            break
        invite = peer.expect(method="INVITE")  # type: ignore[assignment]
        assert invite.session_expires is not None and invite.session_expires.delta == min_se
    net.run_until(net.now + 1)
    assert session.state is InviteState.DISCONNECTED and session.cause == 422  # type: ignore[attr-defined]
    finish(net, alice)


def test_the_timer_never_touches_a_session_released_in_the_wrong_order() -> None:
    """PJSIP #2007: the session timer fired after a network cut and logged through freed memory.

    Here the application drops the dialog before the session (the wrong order): the session's
    memory is freed at the BYE, and the timer that was armed must never fire into it.
    """
    w = World(alice={"timer": TimerSettings(session_expires=90)}, bob={"timer": TimerSettings()})
    _, bob = w.connected()
    bob.add_ref("app")
    bob.dialog.add_ref("app")
    w.net.partition(A, B)
    w.run(300.0)  # Bob's expiry BYE, its timeout, the release of everything the layer held
    with pytest.raises(DanglingReferenceError):  # caught at the release: the session is still held
        bob.dialog.dec_ref("app")  # wrong order: the dialog first ...
    with pytest.raises(UseAfterFreeError):
        _ = bob.state  # ... so the session is freed memory now, and says so
    w.run(600.0)  # nothing of the layer's touches it (that would raise inside run)
    w.net.heal()
    w.net.run_until_idle(limit=200)
    w.drain()
    w.drain()
    assert w.alice.sessions == [] and w.bob.sessions == []
    assert not w.alice.endpoint.close()


BAD_INVITE = """INVITE sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:caller@127.0.0.1>;tag=caller-1
To: <sip:bob@127.0.0.2>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:caller@{local}>
Supported: timer
{bad}
Content-Length: 0

"""


@pytest.mark.parametrize(
    "bad", ["Session-Expires: soon", "Session-Expires: 1800;refresher=both", "Min-SE: -1"]
)
def test_a_malformed_timer_header_in_an_invite_gets_400(bad: str) -> None:
    net = SimNetwork(4)
    bob = layer_at(net, B, seed=4, user="bob", timer=TimerSettings())
    caller = ScriptedPeer(net, A, name="caller")
    caller.send(BAD_INVITE, B, bad=bad)
    refusal = caller.expect(status=400)
    assert refusal.cseq is not None and refusal.cseq.method == "INVITE"
    caller.send(f"ACK sip:bob@127.0.0.2:5060 SIP/2.0\nVia: {refusal.headers.get('Via')}\nFrom: {refusal.headers.get('From')}\n"
                f"To: {refusal.headers.get('To')}\nCall-ID: {refusal.call_id}\nCSeq: 1 ACK\nContent-Length: 0\n\n", B)  # fmt: skip
    finish(net, bob)


def test_a_malformed_session_expires_in_the_2xx_means_no_timer() -> None:
    net, alice, peer, session, invite = _scripted_call(TimerSettings(session_expires=90))
    _answer(peer, invite, 200, Session_Expires="soon")
    peer.expect(method="ACK")
    assert session.state is InviteState.CONFIRMED  # type: ignore[attr-defined]
    assert session.timer is not None and not session.timer.active  # type: ignore[attr-defined]
    alice.hangup(session, net.now)  # type: ignore[arg-type]
    bye = peer.expect(method="BYE")
    peer.send(make_response(bye, 200), A)  # type: ignore[arg-type]
    finish(net, alice)
