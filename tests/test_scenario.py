"""Scripted peers: one side of a flow by hand, with assertion messages that show the ladder."""

from __future__ import annotations

import pytest

from invsess.sip import Response
from invsess.testing import LinkProfile, ScriptedPeer, SimNetwork
from invsess.testing.plugin import EndpointFactory

OPTIONS = """OPTIONS sip:uas@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:peer@{local}>;tag={tag}
To: <sip:uas@127.0.0.2>
Call-ID: {call_id}
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: {content_length}

"""

INVITE = """INVITE sip:uas@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch={branch}
From: <sip:peer@{local}>;tag={tag}
To: <sip:uas@127.0.0.2>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:peer@{local}>
Content-Type: application/sdp
Max-Forwards: 70
Content-Length: {content_length}

v=0
o=peer 1 1 IN IP4 127.0.0.9
s=-
t=0 0
m=audio 4000 RTP/AVP 0
"""


@pytest.fixture
def world() -> tuple[SimNetwork, EndpointFactory, ScriptedPeer]:
    net = SimNetwork(seed=1)
    factory = EndpointFactory(net)
    factory(("127.0.0.2", 5060), allow=("OPTIONS", "INVITE"))
    return net, factory, ScriptedPeer(net, ("127.0.0.9", 5060))


def test_options_flow(world: tuple[SimNetwork, EndpointFactory, ScriptedPeer]) -> None:
    _, factory, peer = world
    sent = peer.send(OPTIONS, ("127.0.0.2", 5060))
    assert b"Content-Length: 0\r\n\r\n" in sent
    ok = peer.expect(status=200)
    assert isinstance(ok, Response)
    assert ok.allow == ["OPTIONS", "INVITE", "ACK", "CANCEL"]
    peer.expect_nothing(within=2.0)
    for endpoint, _ in factory.endpoints:
        assert not endpoint.close()


def test_invite_gets_100_trying_when_nobody_answers(
    world: tuple[SimNetwork, EndpointFactory, ScriptedPeer],
) -> None:
    net, factory, peer = world
    sent = peer.send(INVITE, ("127.0.0.2", 5060))
    body = sent.split(b"\r\n\r\n", 1)[1]
    assert f"Content-Length: {len(body)}\r\n".encode() in sent  # computed from the body
    trying = peer.expect(status=100, within=1.0)
    assert net.now == pytest.approx(0.22)  # 10 ms there, the 200 ms Trying delay, 10 ms back
    assert trying.to is not None and trying.to.tag is None
    for endpoint, _ in factory.endpoints:
        endpoint.close()


def test_a_failed_expectation_shows_the_ladder(
    world: tuple[SimNetwork, EndpointFactory, ScriptedPeer],
) -> None:
    net, factory, peer = world
    net.default = LinkProfile(loss=1.0)  # everything is lost
    peer.send(OPTIONS, ("127.0.0.2", 5060))
    with pytest.raises(AssertionError) as info:
        peer.expect(status=200, within=3.0)
    text = str(info.value)
    assert "peer at 127.0.0.9:5060: expected a 200 response within 3.0 s" in text
    assert "received:\n  (nothing)" in text
    assert "OPTIONS sip:uas@127.0.0.2:5060 SIP/2.0 [lost]" in text
    for endpoint, _ in factory.endpoints:
        endpoint.close()


def test_expect_nothing_fails_when_something_comes(
    world: tuple[SimNetwork, EndpointFactory, ScriptedPeer],
) -> None:
    _net, factory, peer = world
    peer.send(OPTIONS, ("127.0.0.2", 5060))
    with pytest.raises(AssertionError, match="expected nothing"):
        peer.expect_nothing(within=1.0)
    for endpoint, _ in factory.endpoints:
        endpoint.close()
