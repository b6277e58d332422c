"""RFC 3264 offer/answer with pjmedia's states, and its memory staying flat."""

from __future__ import annotations

import pytest

from invsess.memory import PoolFactory
from invsess.sdp import NegotiatorState, SdpNegotiationError, SdpNegotiator, parse_sdp
from invsess.sip import LocalProtocolError

ALICE = parse_sdp(
    "v=0\r\no=alice 100 100 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 111 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)
BOB = parse_sdp(
    "v=0\r\no=bob 200 200 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 8 97 100\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 OPUS/48000/2\r\n"
    "a=rtpmap:100 telephone-event/8000\r\na=ptime:20\r\n"
)


def pair() -> tuple[SdpNegotiator, SdpNegotiator, PoolFactory]:
    factory = PoolFactory(malloc_debug=True)
    return SdpNegotiator(ALICE, factory, name="alice"), SdpNegotiator(BOB, factory, name="bob"), factory


def exchange(offerer: SdpNegotiator, answerer: SdpNegotiator) -> None:
    offer = offerer.create_offer()
    answerer.receive_offer(parse_sdp(offer.serialize()))
    answer = answerer.create_answer()
    offerer.receive_answer(parse_sdp(answer.serialize()))
    offerer.negotiate()


def test_initial_offer_answer_intersects_codecs_and_rejects_video() -> None:
    alice, bob, factory = pair()
    offer = alice.create_offer()
    assert alice.state is NegotiatorState.LOCAL_OFFER
    bob.receive_offer(offer)
    assert bob.state is NegotiatorState.REMOTE_OFFER
    answer = bob.create_answer()
    assert bob.state.name == "DONE"
    audio, video = answer.media
    # Offerer's order and payload numbers; opus matched by name/clock/channels, case-insensitively.
    assert audio.formats == ("8", "111", "101")
    assert audio.rtpmaps()["111"].encoding == "opus"
    assert audio.attribute("ptime") == ["20"]
    assert audio.port == 6000
    assert video.rejected  # Bob has no video: port 0, the m-line kept in place (RFC 3264 §6)
    assert answer.origin.username == "bob"
    alice.receive_answer(answer)
    assert alice.state.name == "WAIT_NEGO"
    alice.negotiate()
    assert alice.state.name == "DONE"
    assert alice.active_remote == answer
    assert bob.active_remote == offer
    alice.release()
    bob.release()
    assert not factory.leak_report()


def test_directions_hold_and_resume() -> None:
    alice, bob, _ = pair()
    exchange(alice, bob)
    first_version = alice.active_local.origin.session_version  # type: ignore[union-attr]
    alice.set_direction("sendonly")  # hold
    exchange(alice, bob)
    assert alice.active_local.media[0].direction == "sendonly"  # type: ignore[union-attr]
    assert bob.active_local.media[0].direction == "recvonly"  # type: ignore[union-attr]
    assert alice.active_local.origin.session_version == first_version + 1  # type: ignore[union-attr]
    alice.set_direction("sendrecv")  # resume
    exchange(alice, bob)
    assert bob.active_local.media[0].direction == "sendrecv"  # type: ignore[union-attr]
    assert alice.active_local.origin.session_version == first_version + 2  # type: ignore[union-attr]
    version = alice.active_local.origin.session_version  # type: ignore[union-attr]
    exchange(alice, bob)  # nothing changed: the version stays (RFC 3264 §8)
    assert alice.active_local.origin.session_version == version  # type: ignore[union-attr]
    assert len(alice.active_local.media) == 2  # type: ignore[union-attr]
    assert alice.active_local.media[1].rejected  # type: ignore[union-attr]  # stays rejected in re-offers


@pytest.mark.parametrize(
    ("local", "offered", "answered"),
    [("sendrecv", "sendonly", "recvonly"), ("sendrecv", "recvonly", "sendonly"), ("sendrecv", "inactive", "inactive"),
     ("sendonly", "sendrecv", "sendonly"), ("recvonly", "sendrecv", "recvonly"), ("sendonly", "sendonly", "inactive")],
)  # fmt: skip
def test_direction_answers(local: str, offered: str, answered: str) -> None:
    alice, bob, _ = pair()
    alice.set_direction(offered)
    bob.set_direction(local)
    exchange(alice, bob)
    assert bob.active_local.media[0].direction == answered  # type: ignore[union-attr]


def test_late_offer_in_2xx_answer_in_ack() -> None:
    alice, bob, _ = pair()
    offer = bob.create_offer()  # Bob offers in his 200 to an INVITE without SDP
    alice.receive_offer(offer)
    answer = alice.create_answer()  # ... Alice answers in the ACK
    bob.receive_answer(answer)
    bob.negotiate()
    assert bob.active_remote == answer
    assert alice.state is bob.state is NegotiatorState.DONE


def test_nothing_acceptable_is_488_and_the_session_stays() -> None:
    factory = PoolFactory(malloc_debug=True)
    video_only = parse_sdp(
        "v=0\r\no=v 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=video 7000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
    )
    bob = SdpNegotiator(BOB, factory)
    bob.receive_offer(video_only)
    with pytest.raises(SdpNegotiationError) as info:
        bob.create_answer()
    assert info.value.status_code == 488
    assert bob.state is NegotiatorState.NULL
    alice, bob2, _ = pair()
    exchange(alice, bob2)
    agreed = bob2.active_local
    bob2.receive_offer(
        parse_sdp(
            video_only.serialize().replace(
                b"m=video 7000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
                b"m=audio 7000 RTP/AVP 9\r\nm=video 0 RTP/AVP 96\r\n",
            )
        )
    )
    with pytest.raises(SdpNegotiationError):
        bob2.create_answer()
    assert bob2.state is NegotiatorState.DONE
    assert bob2.active_local == agreed


def test_answers_that_break_the_rules() -> None:
    alice, _bob, _ = pair()
    alice.create_offer()
    alice.receive_answer(
        parse_sdp("v=0\r\no=b 1 1 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\n")
    )
    with pytest.raises(SdpNegotiationError, match="m-lines"):
        alice.negotiate()
    assert alice.state is NegotiatorState.NULL
    alice.create_offer()
    alice.receive_answer(
        parse_sdp(
            "v=0\r\no=b 1 1 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\nm=video 0 RTP/AVP 96\r\n"
        )
    )
    with pytest.raises(SdpNegotiationError, match="codec"):
        alice.negotiate()


def test_cancelled_offer_returns_to_the_agreed_session() -> None:
    alice, bob, _factory = pair()
    exchange(alice, bob)
    agreed = alice.active_local
    alice.set_direction("inactive")
    alice.create_offer()  # re-INVITE ... answered 491
    alice.cancel_offer()
    assert alice.state is NegotiatorState.DONE
    assert alice.active_local == agreed


def test_a_received_offer_can_be_abandoned_too() -> None:
    """pjmedia's cancel_offer works on either side's offer (a request refused for other reasons)."""
    alice, bob, _factory = pair()
    bob.receive_offer(ALICE)
    bob.cancel_offer()
    assert bob.state is NegotiatorState.NULL and bob.active_local is None
    exchange(alice, bob)
    agreed = bob.active_remote
    bob.receive_offer(ALICE)  # alice.local, the same offer
    bob.cancel_offer()
    assert bob.state.name == "DONE" and bob.active_remote == agreed  # (mypy narrowed .state above)
    alice.release()
    bob.release()


def test_misuse_is_typed() -> None:
    alice, _bob, _ = pair()
    with pytest.raises(LocalProtocolError):
        alice.receive_answer(BOB)
    with pytest.raises(LocalProtocolError):
        alice.negotiate()
    with pytest.raises(LocalProtocolError):
        alice.create_answer()
    alice.create_offer()
    with pytest.raises(LocalProtocolError):
        alice.create_offer()
    exchange_b = SdpNegotiator(BOB, PoolFactory())
    exchange_b.receive_offer(ALICE)
    exchange_b.create_answer()
    with pytest.raises(SdpNegotiationError, match="remove m-lines"):
        exchange_b.receive_offer(
            parse_sdp("v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
        )
    with pytest.raises(ValueError, match="direction"):
        alice.set_direction("sideways")


def test_table_reaches_every_state() -> None:
    states = {s for s, _ in SdpNegotiator.TRANSITIONS} | set(SdpNegotiator.TRANSITIONS.values())
    assert states == set(NegotiatorState)


def test_ten_thousand_reoffers_do_not_grow_memory() -> None:
    """PJSIP issue #877: SDPs accumulated in the session pool on every re-INVITE."""
    alice, bob, factory = pair()
    exchange(alice, bob)
    exchange(alice, bob)  # the first re-offer settles the shape (the rejected video becomes port 0)
    settled = factory.statistics()
    blocks = sum(p.block_count for p in factory.pools)
    for i in range(10_000):
        alice.set_direction("sendonly" if i % 2 else "sendrecv")
        exchange(alice, bob)
    assert i == 9_999
    now = factory.statistics()
    assert sum(p.block_count for p in factory.pools) == blocks  # nothing accumulates
    assert len(factory.pools) == 2  # each side: the active pool (a provisional one only mid-offer)
    assert now.real_used_size == settled.real_used_size
    # The only growth allowed: the o= version numbers gained digits (100 -> 10100).
    assert 0 <= now.used_size - settled.used_size <= 64
    alice.release()
    bob.release()
    assert not factory.leak_report()
