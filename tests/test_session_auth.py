"""Sessions through an authenticating peer or proxy, and preloaded route sets (RFC 3261 §22, §8.1.2).

Bob's endpoint challenges (a :class:`~invsess.auth.DigestAuthenticator`, with ``in_dialog=True``
so that re-INVITE, UPDATE, BYE and PRACK are challenged as well, as some proxies do); Alice's
layer answers with its credentials. The trace shows each request going twice: without, then
with credentials.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsess.auth import MAX_REALMS, MAX_STALE_RETRIES, CredentialStore, DigestAuthenticator
from invsess.inv import InviteState
from invsess.routeset import parse_route_set, route_request
from invsess.sip import Request, Response, parse_message, parse_uri
from invsess.testing import ScriptedPeer, SimNetwork

from .sessions import B, World, agreed_direction, finish, layer_at

ALL = frozenset({"INVITE", "BYE", "UPDATE", "PRACK"})


def world(password: str = "pw", *, proxy: bool = False, methods: frozenset[str] = ALL, **bob: Any) -> World:
    credentials = CredentialStore()
    credentials.add("alice", password)
    w = World(alice={"credentials": credentials, **bob.pop("alice", {})}, bob=bob or None)
    w.bob.endpoint.authenticator = DigestAuthenticator(
        "bob.test", {"alice": "pw"}, in_dialog=True, methods=methods, proxy=proxy
    )
    return w


def wire(w: World, sender: tuple[str, int] | None = None) -> list[Request | Response]:
    """Every message delivered on the network so far (from ``sender``), parsed."""
    out = []
    for entry in w.net.trace:
        if entry.fate == "delivered" and (sender is None or entry.source == sender):
            out.append(parse_message(entry.data))
    return out


def requests(w: World, method: str) -> list[Request]:
    return [m for m in wire(w) if isinstance(m, Request) and m.method == method]


def statuses(w: World, method: str) -> list[int]:
    return [
        m.status_code
        for m in wire(w)
        if isinstance(m, Response) and m.cseq is not None and m.cseq.method == method
    ]


def credentials_header(proxy: bool) -> str:
    return "Proxy-Authorization" if proxy else "Authorization"


@pytest.mark.parametrize("proxy", [False, True])
def test_invite_challenged_then_sent_again_with_credentials(proxy: bool) -> None:
    w = world(proxy=proxy)
    alice, bob = w.call()
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.5)
    assert alice.state is InviteState.CONFIRMED and bob.state is InviteState.CONFIRMED
    first, second = requests(w, "INVITE")
    header = credentials_header(proxy)
    assert header not in first.headers and header in second.headers
    # RFC 3261 §22.2: same Call-ID, From tag and To; next CSeq; a new transaction (branch).
    assert first.call_id == second.call_id and first.from_ == second.from_ and first.to == second.to
    assert second.cseq.number == first.cseq.number + 1  # type: ignore[union-attr]
    assert first.top_via.branch != second.top_via.branch  # type: ignore[union-attr]
    assert first.body == second.body  # the same offer
    assert statuses(w, "INVITE") == [407 if proxy else 401, 200]
    # The ACK of the 401/407 is the transaction's: the first INVITE's branch and CSeq, no
    # credentials. The ACK of the 2xx repeats the INVITE's credentials (§13.2.2.4).
    ack_error, ack_2xx = requests(w, "ACK")
    assert ack_error.top_via.branch == first.top_via.branch and ack_error.cseq.number == 1  # type: ignore[union-attr]
    assert header not in ack_error.headers
    assert ack_2xx.cseq.number == 2 and ack_2xx.headers.get(header) == second.headers.get(header)  # type: ignore[union-attr]
    w.alice.hangup(alice, w.net.now)
    w.run(0.5)
    finish(w.net, w.alice, w.bob)


def test_reinvite_update_and_bye_through_an_authenticating_peer() -> None:
    w = world()
    alice, bob = w.connected(0.5)
    w.alice.reinvite(alice, w.net.now, direction="sendonly")
    w.run(0.5)
    assert agreed_direction(alice) == "sendonly" and agreed_direction(bob) == "recvonly"
    w.alice.update(alice, w.net.now, direction="sendrecv")
    w.run(0.5)
    assert agreed_direction(alice) == "sendrecv"
    w.alice.hangup(alice, w.net.now)
    w.run(0.5)
    assert alice.state is InviteState.DISCONNECTED and alice.cause == 200
    assert bob.state is InviteState.DISCONNECTED
    for method in ("UPDATE", "BYE"):
        plain, authorized = requests(w, method)
        assert "Authorization" not in plain.headers and "Authorization" in authorized.headers
        assert authorized.cseq.number == plain.cseq.number + 1  # type: ignore[union-attr]
        assert statuses(w, method) == [401, 200]
    reinvites = requests(w, "INVITE")[2:]
    assert ["Authorization" in r.headers for r in reinvites] == [False, True]
    assert statuses(w, "INVITE")[2:] == [401, 200]
    finish(w.net, w.alice, w.bob)


def test_a_session_refresh_through_an_authenticating_peer_stays_a_refresh() -> None:
    from invsess.inv import TimerSettings

    credentials = CredentialStore()
    credentials.add("alice", "pw")
    w = World(
        alice={"credentials": credentials, "timer": TimerSettings(session_expires=90, refresher="uac")},
        bob={"timer": TimerSettings(session_expires=90)},
    )
    w.bob.endpoint.authenticator = DigestAuthenticator(
        "bob.test", {"alice": "pw"}, in_dialog=True, methods=ALL
    )
    alice, bob = w.connected(0.5)
    w.run(100)  # two refreshes (UPDATE, at 45 s and 90 s), each challenged once
    assert alice.state is InviteState.CONFIRMED and bob.state is InviteState.CONFIRMED
    assert statuses(w, "UPDATE") == [401, 200, 401, 200]
    w.alice.hangup(alice, w.net.now)
    w.run(0.5)
    finish(w.net, w.alice, w.bob)


def test_prack_through_an_authenticating_peer() -> None:
    w = world(rel100="required", alice={"rel100": "supported"})
    alice, bob = w.call()
    w.bob.answer(bob, 183, w.net.now)
    w.run(0.5)
    assert alice.state is InviteState.EARLY
    plain, authorized = requests(w, "PRACK")
    assert "Authorization" not in plain.headers and "Authorization" in authorized.headers
    assert plain.headers.get("RAck") == authorized.headers.get("RAck")
    assert statuses(w, "PRACK") == [401, 200]
    w.bob.answer(bob, 200, w.net.now)
    w.run(0.5)
    assert w.states("alice")[-1] == "CONFIRMED"
    w.alice.hangup(alice, w.net.now)
    w.run(0.5)
    finish(w.net, w.alice, w.bob)


def test_wrong_password_ends_the_call_after_one_retry() -> None:
    w = world(password="wrong")
    session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=w.net.now)
    w.run(2)
    assert session.state is InviteState.DISCONNECTED and session.cause == 401
    assert len(requests(w, "INVITE")) == 2  # no third attempt
    assert statuses(w, "INVITE") == [401, 401]
    assert w.bob.endpoint.authenticator.failures == {"127.0.0.1": 1}  # type: ignore[union-attr]
    finish(w.net, w.alice, w.bob)


def test_no_credentials_no_retry() -> None:
    w = World()
    w.bob.endpoint.authenticator = DigestAuthenticator("bob.test", {"alice": "pw"})
    session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=w.net.now)
    w.run(2)
    assert session.state is InviteState.DISCONNECTED and session.cause == 401
    assert len(requests(w, "INVITE")) == 1
    finish(w.net, w.alice, w.bob)


def test_cancel_of_an_authenticated_invite_carries_no_credentials() -> None:
    w = world()
    alice, bob = w.call()
    w.bob.answer(bob, 180, w.net.now)
    w.run(0.2)
    w.alice.hangup(alice, w.net.now)
    w.run(1)
    assert alice.state is InviteState.DISCONNECTED and alice.cause == 487
    (cancel,) = requests(w, "CANCEL")
    invite = requests(w, "INVITE")[1]
    assert "Authorization" in invite.headers
    assert "Authorization" not in cancel.headers and "Proxy-Authorization" not in cancel.headers
    # The CANCEL matches the authenticated INVITE: its branch, Call-ID and CSeq number.
    assert cancel.top_via.branch == invite.top_via.branch and cancel.cseq.number == 2  # type: ignore[union-attr]
    assert statuses(w, "CANCEL") == [200]
    finish(w.net, w.alice, w.bob)


def test_hangup_before_the_challenge_ends_with_it() -> None:
    """The caller hangs up while the first INVITE is unanswered: the 401 is final then."""
    w = world()
    session = w.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=w.net.now)
    w.alice.hangup(session, w.net.now)  # no provisional yet: the CANCEL waits
    w.run(2)
    assert session.state is InviteState.DISCONNECTED and session.cause == 401
    assert len(requests(w, "INVITE")) == 1
    finish(w.net, w.alice, w.bob)


# -- preloaded routes (an outbound proxy), loose and strict ------------------------------------------


def test_route_request_loose_and_strict() -> None:
    target = parse_uri("sip:bob@10.0.0.2")
    loose = parse_route_set(["sip:10.0.0.1;lr", "<sip:10.0.0.3;lr>"])
    assert route_request(target, loose) == (target, loose)
    strict = parse_route_set(["sip:10.0.0.1", "sip:10.0.0.3;lr"])
    uri, routes = route_request(target, strict)
    assert str(uri) == "sip:10.0.0.1"
    assert [str(r) for r in routes] == ["<sip:10.0.0.3;lr>", "<sip:bob@10.0.0.2>"]
    assert route_request(target, ()) == (target, ())
    with pytest.raises(Exception, match="sip: or sips:"):
        parse_route_set(["tel:+123"])
    with pytest.raises(Exception, match="invalid route"):
        parse_route_set(["sip:"])


@pytest.mark.parametrize("strict", [False, True])
def test_a_call_through_a_preloaded_route(sip_network: Any, strict: bool) -> None:
    proxy = ScriptedPeer(sip_network, ("127.0.0.5", 5060), name="proxy")
    alice = layer_at(sip_network, ("127.0.0.1", 5060), seed=3, user="alice")
    route = parse_route_set(["sip:127.0.0.5:5060" + ("" if strict else ";lr")])
    session = alice.invite(
        "sip:bob@127.0.0.2:5060", destination=("127.0.0.5", 5060), now=sip_network.now, route=route
    )
    invite = proxy.expect(method="INVITE")
    assert isinstance(invite, Request)
    if strict:  # §12.2.1.1 / §16.12.1.2: the strict router's URI is the Request-URI, the target last
        assert invite.uri_text == "sip:127.0.0.5:5060"
        assert [str(r) for r in invite.route] == ["<sip:bob@127.0.0.2:5060>"]
    else:
        assert invite.uri_text == "sip:bob@127.0.0.2:5060"
        assert [str(r) for r in invite.route] == ["<sip:127.0.0.5:5060;lr>"]
    assert str(invite.to.uri) == "sip:bob@127.0.0.2:5060"  # type: ignore[union-attr]
    # The proxy answers for Bob, record-routing itself the same way (strict: no lr).
    rr = "<sip:127.0.0.5:5060>" if strict else "<sip:127.0.0.5:5060;lr>"
    proxy.send(
        "SIP/2.0 200 OK\n" + _copied(invite) + f"Record-Route: {rr}\nContact: <sip:bob@127.0.0.2:5060>\n"
        "Content-Type: application/sdp\nContent-Length: {content_length}\n\n"
        "v=0\r\no=b 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
        ("127.0.0.1", 5060),
        to_tag="bobtag",
    )
    ack = proxy.expect(method="ACK")
    assert session.state is InviteState.CONFIRMED
    alice.hangup(session, sip_network.now)
    bye = proxy.expect(method="BYE")
    for request in (ack, bye):
        assert isinstance(request, Request)
        if strict:  # the strict router's URI again, Bob's contact last in Route
            assert request.uri_text == "sip:127.0.0.5:5060"
            assert [str(r) for r in request.route] == ["<sip:bob@127.0.0.2:5060>"]
        else:
            assert request.uri_text == "sip:bob@127.0.0.2:5060"
            assert [str(r) for r in request.route] == ["<sip:127.0.0.5:5060;lr>"]
    assert isinstance(bye, Request)
    proxy.send("SIP/2.0 200 OK\n" + _copied(bye) + "Content-Length: 0\n\n", ("127.0.0.1", 5060))
    finish(sip_network, alice)


def _copied(request: Request, to_tag: str | None = None) -> str:
    """Via, From, To, Call-ID and CSeq of ``request`` for a response template (with {to_tag})."""
    h = request.headers
    to = h.get("To") or ""
    if "tag=" not in to:
        to += ";tag={to_tag}"
    vias = "".join(f"Via: {v}\n" for v in h.get_all("Via"))
    return f"{vias}From: {h.get('From')}\nTo: {to}\nCall-ID: {h.get('Call-ID')}\nCSeq: {h.get('CSeq')}\n"


# -- a hostile authenticating callee ------------------------------------------------------------------

CHALLENGE_PARTS = st.tuples(
    st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),  # realm
    st.sampled_from(["MD5", "SHA-256", "SHA-512-256-sess", "MD5-sess", "SHA-1", "", "md5"]),  # algorithm
    st.sampled_from(['qop="auth"', 'qop="auth-int"', 'qop="auth,auth-int"', 'qop="x"', "", 'qop="auth"']),
    st.booleans(),  # stale
    st.booleans(),  # proxy (407)
    st.booleans(),  # a broken header instead
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(answers=st.lists(CHALLENGE_PARTS, min_size=1, max_size=12))
def test_a_callee_that_challenges_for_ever_is_left(
    answers: list[tuple[str, str, str, bool, bool, bool]],
) -> None:
    """Whatever challenges come (ever new realms, stale for ever, broken headers, algorithms we
    lack), the caller retries a bounded number of times, ends, and leaks nothing."""
    net = SimNetwork(seed=11)
    peer = ScriptedPeer(net, B, name="bob")
    credentials = CredentialStore()
    credentials.add("alice", "pw")
    alice = layer_at(net, ("127.0.0.1", 5060), seed=5, user="alice", credentials=credentials)
    session = alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=net.now)
    sent = 0
    for realm, algorithm, qop, stale, proxy, broken in answers:
        try:
            invite = peer.expect(method="INVITE", within=2)
        except AssertionError:
            break  # the caller gave up
        sent += 1
        assert isinstance(invite, Request)
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        params = [f'realm="{realm}"', f'nonce="n{sent}"']
        if algorithm:
            params.append(f"algorithm={algorithm}")
        if qop:
            params.append(qop)
        if stale:
            params.append("stale=true")
        value = "Digest ,,=" if broken else "Digest " + ", ".join(params)
        peer.send("SIP/2.0 {code} Challenge\n" + _copied(invite) + f"{header}: {value}\nContent-Length: 0\n\n",
                  ("127.0.0.1", 5060), code=407 if proxy else 401, to_tag=f"t{sent}")  # fmt: skip
    else:  # the challenges ran out with the caller still trying: the callee is busy
        with contextlib.suppress(AssertionError):
            invite = peer.expect(method="INVITE", within=2)
            sent += 1
            assert isinstance(invite, Request)
            peer.send("SIP/2.0 486 Busy Here\n" + _copied(invite) + "Content-Length: 0\n\n",
                      ("127.0.0.1", 5060), to_tag="busy")  # fmt: skip
    net.run_until(net.now + 5)
    assert session.state is InviteState.DISCONNECTED and session.cause in (401, 407, 486)
    # Never more than the realms we may carry plus the stale retries, whatever the peer says.
    assert sent <= 1 + MAX_REALMS + MAX_STALE_RETRIES * MAX_REALMS
    finish(net, alice)
