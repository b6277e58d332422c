"""Overload control in the sans-IO endpoint: classification, per-source rate, call and transaction
limits (503 before any transaction, dialog or session exists), shedding, Server/User-Agent."""

from __future__ import annotations

from typing import Any

import pytest

from invsess.endpoint import (
    Endpoint,
    EndpointConfig,
    Kind,
    LimitStats,
    RateLimit,
    Rejection,
    SourceRateLimiter,
    classify,
)
from invsess.endpoint.overload import call_id_of
from invsess.inv import IncomingCall, SessionLayer
from invsess.sdp import parse_sdp
from invsess.sip import FramingError, NameAddress, StreamFramer, make_request, parse_message, parse_uri
from invsess.sip.parser import ParserLimits
from invsess.transaction import RequestReceived, ServerInviteTransaction

UAS = ("127.0.0.1", 5062)
ALICE = ("127.0.0.2", 40000)
CAROL = ("127.0.0.3", 40000)
SDP = (
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def request(
    method: str = "INVITE",
    n: int = 0,
    *,
    to_tag: str | None = None,
    call_id: str | None = None,
    source: tuple[str, int] = ALICE,
    body: str = "",
) -> bytes:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    cseq_method = "INVITE" if method == "ACK" else method
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:bob@127.0.0.1:5062 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{method.lower()}{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@{source[0]}>;tag=f{n}\r\nTo: {to}\r\n"
        f"Call-ID: {call_id or f'c{n}'}@{source[0]}\r\nCSeq: 1 {cseq_method}\r\n"
        f"Contact: <sip:alice@{source[0]}:{source[1]}>\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def codes(ep: Endpoint) -> list[int]:
    return [parse_message(item.data).status_code for item in ep.datagrams_to_send()]  # type: ignore[union-attr]


def endpoint(**config: object) -> Endpoint:
    cfg = EndpointConfig(seed=1, malloc_debug=True, allow=("INVITE", "OPTIONS", "BYE"), **config)  # type: ignore[arg-type]
    ep = Endpoint(cfg)
    ep.add_listener("udp", UAS)
    return ep


def drain(ep: Endpoint) -> list[Any]:
    events: list[Any] = []
    while (event := ep.next_event()) is not None:
        events.append(event)
    return events


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", Kind.RESPONSE),
        (request("OPTIONS"), Kind.OPTIONS),
        (request("INVITE"), Kind.NEW),
        (request("MESSAGE"), Kind.NEW),
        (request("INVITE", to_tag="t1"), Kind.IN_DIALOG),
        (request("BYE", to_tag="t1"), Kind.IN_DIALOG),
        (request("ACK", to_tag="t1"), Kind.IN_DIALOG),
        (request("CANCEL"), Kind.IN_DIALOG),
        (b"\r\n" + request("INVITE", to_tag="x"), Kind.IN_DIALOG),
        (b"BYE sip:b@h SIP/2.0\r\nt: <sip:b@h> ; tag = 9\r\n\r\n", Kind.IN_DIALOG),  # compact form
        (b"INVITE sip:b@h SIP/2.0\r\nTo: <sip:b@h>\r\n\r\nTo: x;tag=in-the-body\r\n", Kind.NEW),
        (b"\x00\xff garbage", Kind.NEW),
        (b"", Kind.NEW),
    ],
)
def test_classify(data: bytes, kind: Kind) -> None:
    assert classify(data) is kind
    assert kind.served_first is (kind is not Kind.NEW)


def test_call_id_of() -> None:
    assert call_id_of(request(call_id="abc")) == "abc@127.0.0.2"
    assert call_id_of(b"BYE sip:b@h SIP/2.0\r\ni:  short \r\n\r\n") == "short"
    assert call_id_of(b"BYE sip:b@h SIP/2.0\r\nTo: x\r\n\r\nCall-ID: body\r\n") is None


# -- the per-source rate ------------------------------------------------------------------------


def test_rate_limiter_blocks_a_source_over_its_rate_and_renews_while_it_goes_on() -> None:
    limiter = SourceRateLimiter(RateLimit(requests=3, window=1.0, block=5.0))
    assert [limiter.allow("a", 0.1) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.2)  # another source keeps its service
    assert limiter.is_blocked("a", 0.5)
    assert not limiter.allow("a", 1.5)  # a new window, still blocked (until 5.1)
    assert limiter.blocked(1.5) == ["a"]
    for _ in range(3):
        limiter.allow("a", 2.0)
    assert not limiter.allow("a", 2.0)  # over again: renewed until 7.0
    assert limiter.is_blocked("a", 6.9)
    assert limiter.allow("a", 7.1)
    assert limiter.blocked(7.1) == []


def test_rate_limiter_table_is_bounded() -> None:
    limiter = SourceRateLimiter(RateLimit(requests=1, window=1.0, max_sources=2))
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert all(limiter.allow("c", 0.0) for _ in range(5))  # not counted: the table is full
    assert not limiter.allow("a", 0.0)


@pytest.mark.parametrize("text", ["", "x/2", "10/0", "-1/1", "10/y"])
def test_rate_limit_parse_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit.parse(text)


def test_rate_limit_parse() -> None:
    assert RateLimit.parse("400/2") == RateLimit(requests=400, window=2.0)
    assert RateLimit.parse("50") == RateLimit(requests=50, window=1.0)


def test_a_flooding_source_is_ignored_before_parsing_and_others_keep_their_service() -> None:
    ep = endpoint(rate_limit=RateLimit(requests=5, window=2.0, block=10.0))
    created: list[str] = []
    original = ep.factory.create_pool

    def spy(name: str, *args: object, **kwargs: object) -> object:
        created.append(name)
        return original(name, *args, **kwargs)  # type: ignore[arg-type]

    setattr(ep.factory, "create_pool", spy)  # noqa: B010 - a spy in place of the method
    for n in range(50):
        ep.receive(request("OPTIONS", n), ALICE, "udp", 0.01 * n)
    assert codes(ep) == [200] * 5
    assert created.count("rx-msg") == 5  # the 45 others cost no pool and no parse
    assert ep.limit_stats.rejected[Rejection.RATE] == 45
    assert ep.limit_stats.current()["blocked_sources"] == 1
    ep.receive(request("OPTIONS", 99, source=CAROL), CAROL, "udp", 0.6)
    assert codes(ep) == [200]
    ep.receive(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKnone\r\n\r\n", ALICE, "udp", 0.7
    )
    assert ep.stats["stray responses"] == 1  # responses are never rate limited
    ep.receive(request("OPTIONS", 100), ALICE, "udp", 11.0)  # the block ran out
    assert codes(ep) == [200]
    ep.close()
    assert not ep.leak_report()


def test_a_blocked_source_keeps_its_live_calls_but_not_made_up_dialogs() -> None:
    ep = endpoint(rate_limit=RateLimit(requests=2, window=10.0, block=10.0))
    ep.register_dialog(("live@127.0.0.2", "ours", "f7"))
    for n in range(3):
        ep.receive(request("OPTIONS", n), ALICE, "udp", 0.0)
    assert codes(ep) == [200, 200]  # the third one blocked the source
    ep.receive(request("BYE", 7, to_tag="ours", call_id="live"), ALICE, "udp", 1.0)
    assert [type(e).__name__ for e in drain(ep)] == ["RequestReceived"]
    ep.receive(request("BYE", 8, to_tag="zz", call_id="made-up"), ALICE, "udp", 1.0)
    assert codes(ep) == []
    assert ep.limit_stats.rejected[Rejection.RATE] == 2
    ep.close()
    assert not ep.leak_report()


def test_requests_for_dialogs_that_do_not_exist_count_against_the_source() -> None:
    ep = endpoint(rate_limit=RateLimit(requests=3, window=10.0, block=10.0))
    for n in range(4):
        ep.receive(request("BYE", n, to_tag="nope", call_id=f"x{n}"), ALICE, "udp", 0.0)
    assert codes(ep) == [481] * 4  # in-dialog requests are let through, and each 481 counts...
    ep.receive(request("OPTIONS", 9), ALICE, "udp", 0.1)
    assert codes(ep) == []  # ... so the source is now over its rate
    ep.close()


# -- call and transaction limits ------------------------------------------------------------------


def test_calls_over_max_calls_get_503_before_any_transaction_dialog_or_session() -> None:
    ep = endpoint(max_calls=2, retry_after=7)
    layer = SessionLayer(ep, parse_sdp(SDP.encode()))
    created: list[str] = []
    original = ep.factory.create_pool

    def spy(name: str, *args: object, **kwargs: object) -> object:
        created.append(name)
        return original(name, *args, **kwargs)  # type: ignore[arg-type]

    setattr(ep.factory, "create_pool", spy)  # noqa: B010 - a spy in place of the method
    for n in range(2):
        layer.receive(request("INVITE", n, body=SDP), ALICE, "udp", 0.0)
    assert [type(e) for e in drain_layer(layer)].count(IncomingCall) == 2
    assert ep.calls == 2
    ep.datagrams_to_send()
    created.clear()
    layer.receive(request("INVITE", 2, body=SDP), ALICE, "udp", 0.1)
    (out,) = ep.datagrams_to_send()
    rejected = parse_message(out.data)
    assert rejected.status_code == 503  # type: ignore[union-attr]
    assert rejected.retry_after is not None and rejected.retry_after.delta == 7
    assert rejected.to is not None and rejected.to.tag  # a stateless final response has a To tag
    assert created == ["rx-msg"]  # no transaction, dialog, session or SDP pool
    assert len(layer.sessions) == 2
    assert ep.limit_stats.rejected[Rejection.CALLS] == 1
    layer.receive(request("INVITE", 0, body=SDP), ALICE, "udp", 0.2)  # a retransmission: absorbed
    assert ep.stats["absorbed requests"] == 1
    layer.receive(request("OPTIONS", 5), ALICE, "udp", 0.3)
    assert codes(ep)[-1] == 200  # pings are served at the call limit
    for session in layer.sessions:
        layer.hangup(session, 0.4)
    drain_layer(layer)
    layer.close(0.5)
    assert ep.calls == 0
    assert not ep.leak_report()


def drain_layer(layer: SessionLayer) -> list[Any]:
    events: list[Any] = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def test_a_bare_endpoint_counts_initial_invites_as_calls_until_their_final_answer() -> None:
    ep = endpoint(max_calls=1)
    ep.receive(request("INVITE", 1), ALICE, "udp", 0.0)
    (event,) = drain(ep)
    assert isinstance(event, RequestReceived)
    assert ep.calls == 1
    ep.receive(request("INVITE", 2), ALICE, "udp", 0.0)
    assert codes(ep) == [503]
    ep.respond(event.transaction, parse_message(_response(event.request, 180)), 0.1)  # type: ignore[arg-type]
    assert ep.calls == 1  # a provisional answer does not end the call
    ep.respond(event.transaction, parse_message(_response(event.request, 486)), 0.1)  # type: ignore[arg-type]
    assert ep.calls == 0  # the transaction lingers (Timer G/H), the call does not
    ep.receive(request("INVITE", 1), ALICE, "udp", 0.2)  # the first INVITE again: absorbed
    assert ep.stats["absorbed requests"] == 1
    ep.receive(request("INVITE", 3), ALICE, "udp", 0.3)
    assert [type(e) for e in drain(ep)] == [RequestReceived]
    ep.close()
    assert not ep.leak_report()


def test_an_answered_and_ended_call_frees_its_place_while_its_invite_transaction_lingers() -> None:
    # RFC 6026: the INVITE server transaction stays Accepted for Timer L (32 s) after its 2xx.
    # A call that has ended must not hold max_calls that long (a steady 63 calls/s would fill
    # 2,000 places with calls long gone).
    ep = endpoint(max_calls=1)
    layer = SessionLayer(ep, parse_sdp(SDP.encode()))
    layer.receive(request("INVITE", 0, body=SDP), ALICE, "udp", 0.0)
    (incoming,) = [e for e in drain_layer(layer) if isinstance(e, IncomingCall)]
    layer.answer(incoming.session, 200, 0.0)
    assert ep.calls == 1  # the dialog
    (session,) = layer.sessions
    tag = session.dialog.local_tag
    layer.receive(request("ACK", 0, to_tag=tag), ALICE, "udp", 0.05)
    bye = request("BYE", 0, to_tag=tag).replace(b"CSeq: 1 BYE", b"CSeq: 2 BYE")
    layer.receive(bye, ALICE, "udp", 0.1)
    drain_layer(layer)
    assert not layer.sessions
    assert any(isinstance(tx, ServerInviteTransaction) for tx in ep.transactions())  # Accepted
    assert ep.calls == 0
    layer.receive(request("INVITE", 1, body=SDP), ALICE, "udp", 0.2)
    assert [type(e) for e in drain_layer(layer)].count(IncomingCall) == 1
    for session in layer.sessions:
        layer.hangup(session, 0.3)
    drain_layer(layer)
    layer.close(0.4)
    assert not ep.leak_report()


def _response(req: object, code: int) -> bytes:
    from invsess.sip import make_response

    return make_response(req, code, to_tag="t").serialize()  # type: ignore[arg-type]


def test_the_last_tenth_of_transactions_is_kept_for_pings_and_dialogs() -> None:
    ep = endpoint(max_transactions=10)
    assert ep.config.invite_transactions == 9
    for n in range(9):
        ep.receive(request("INVITE", n), ALICE, "udp", 0.0)
    ep.receive(request("INVITE", 9), ALICE, "udp", 0.0)
    assert codes(ep) == [503]
    assert ep.limit_stats.rejected[Rejection.TRANSACTIONS] == 1
    ep.register_dialog(("d@127.0.0.2", "ours", "f20"))
    ep.receive(request("BYE", 20, to_tag="ours", call_id="d"), ALICE, "udp", 0.0)
    assert len(ep.transactions()) == 10  # the in-dialog BYE got the reserved place
    ep.receive(request("OPTIONS", 21), ALICE, "udp", 0.0)
    assert codes(ep) == [503]  # and now everything is refused
    assert ep.limit_stats.statistics()["limits:transactions"] == 10
    ep.close()
    assert not ep.leak_report()


def test_transactions_that_have_answered_do_not_count_against_max_transactions() -> None:
    # They only absorb retransmissions until Timer I/J/L (up to 32 s over UDP): counted, the
    # default 10,000 would refuse a steady ~140 calls/s (an INVITE and a BYE each) with nothing
    # in progress.
    ep = endpoint(max_transactions=3)  # new calls may use 3 - 3 // 10 = 3
    ep.receive(request("OPTIONS", 1), ALICE, "udp", 0.0)  # answered by the endpoint at once
    ep.receive(request("INVITE", 2), ALICE, "udp", 0.0)
    ep.receive(request("INVITE", 3), ALICE, "udp", 0.0)
    _first, second = drain(ep)
    assert ep.limit_stats.statistics()["limits:transactions"] == 2
    ep.receive(request("INVITE", 4), ALICE, "udp", 0.0)
    ep.receive(request("INVITE", 5), ALICE, "udp", 0.0)
    drain(ep)
    assert codes(ep)[-1] == 503  # three waiting for their answer: the limit
    ep.respond(second.transaction, parse_message(_response(second.request, 486)), 0.1)  # type: ignore[arg-type]
    assert len(ep.transactions()) == 4  # the OPTIONS and the 486 still absorb retransmissions
    assert ep.limit_stats.statistics()["limits:transactions"] == 2
    ep.receive(request("INVITE", 6), ALICE, "udp", 0.2)
    assert [type(e) for e in drain(ep)] == [RequestReceived]
    ep.close()
    assert ep.limit_stats.statistics()["limits:transactions"] == 0
    assert not ep.leak_report()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        EndpointConfig(max_calls=-1)
    with pytest.raises(ValueError, match="server"):
        EndpointConfig(server="a\r\nInjected: yes")
    with pytest.raises(ValueError, match="user_agent"):
        EndpointConfig(user_agent="  ")


# -- shedding and unframeable messages ---------------------------------------------------------------


def test_shed_answers_503_cheaply_and_counts() -> None:
    ep = endpoint(retry_after=3)
    ep.shed(request("INVITE", 1), ALICE, "udp", 0.0)
    (out,) = ep.datagrams_to_send()
    response = parse_message(out.data)
    assert response.status_code == 503  # type: ignore[union-attr]
    assert response.retry_after is not None and response.retry_after.delta == 3
    assert out.destination == ALICE
    assert ep.transactions() == []
    ep.shed(request("ACK", 2, to_tag="t"), ALICE, "udp", 0.0)  # never answered
    ep.shed(b"\x00garbage", ALICE, "udp", 0.0)
    assert ep.datagrams_to_send() == []
    assert ep.limit_stats.rejected[Rejection.SHED] == 3
    assert not ep.leak_report()


def test_shed_ignores_a_blocked_source() -> None:
    ep = endpoint(rate_limit=RateLimit(requests=1, window=10.0))
    ep.receive(request("OPTIONS", 1), ALICE, "udp", 0.0)
    ep.datagrams_to_send()
    ep.shed(request("INVITE", 2), ALICE, "udp", 0.0)
    assert ep.datagrams_to_send() == []
    assert ep.limit_stats.rejected == {Rejection.RATE: 1}
    ep.close()


def test_a_streamed_message_too_large_gets_513_from_its_head() -> None:
    framer = StreamFramer(ParserLimits(max_message_size=4096))
    data = request("MESSAGE", 1).replace(b"Content-Length: 0", b"Content-Length: 10000000")
    with pytest.raises(FramingError) as info:
        framer.feed(data)
    assert info.value.status_code == 513
    assert info.value.head.endswith(b"\r\n\r\n")
    ep = endpoint()
    ep.answer_unparsable(info.value.head, info.value, ALICE, "TCP")
    (out,) = ep.datagrams_to_send()
    assert out.transport == "tcp" and out.destination == ALICE
    assert parse_message(out.data).status_code == 513  # type: ignore[union-attr]
    headless = StreamFramer(ParserLimits(max_message_size=1024))
    with pytest.raises(FramingError) as info:
        headless.feed(b"INVITE sip:b@h SIP/2.0\r\nX: " + b"y" * 2000)
    assert info.value.status_code == 513 and len(info.value.head) == 1024
    ep.answer_unparsable(info.value.head, info.value, ALICE, "tcp")
    assert ep.datagrams_to_send() == []  # no Via to answer along
    assert not ep.leak_report()


# -- Server / User-Agent ---------------------------------------------------------------------------


def test_server_and_user_agent_are_omitted_by_default() -> None:
    ep = endpoint()
    ep.receive(request("OPTIONS"), ALICE, "udp", 0.0)
    ep.receive(request("REGISTER"), ALICE, "udp", 0.0)
    for item in ep.datagrams_to_send():
        assert b"\r\nServer:" not in item.data
    ep.close()


def test_server_and_user_agent_when_configured() -> None:
    ep = endpoint(server="acme-sbc", user_agent="acme-phone")
    ep.receive(request("OPTIONS"), ALICE, "udp", 0.0)  # a transaction's answer
    ep.receive(request("REGISTER"), ALICE, "udp", 0.0)  # a stateless answer
    ep.shed(request("INVITE", 3), ALICE, "udp", 0.0)
    answers = [parse_message(item.data) for item in ep.datagrams_to_send()]
    assert [a.headers.get("Server") for a in answers] == ["acme-sbc"] * 3
    req = make_request(
        "OPTIONS",
        "sip:carol@127.0.0.3",
        via=ep.via("udp"),
        from_=NameAddress(parse_uri("sip:bob@127.0.0.1"), None, (("tag", "b1"),)),
        to=NameAddress(parse_uri("sip:carol@127.0.0.3")),
        call_id="ua-1",
        cseq=1,
    )
    ep.send_request(req, CAROL, "udp", 0.0)
    (sent,) = ep.datagrams_to_send()
    assert parse_message(sent.data).headers.get("User-Agent") == "acme-phone"
    ep.close()
    assert not ep.leak_report()


def test_limit_statistics_names() -> None:
    ep = endpoint(max_calls=5)
    stats = ep.limit_stats.statistics()
    assert stats["limits:calls"] == 0 and stats["limits:calls_max"] == 5
    assert stats["limits:transactions_max"] == 10_000
    assert "limits:blocked_sources_max" not in stats  # unbounded gauges have no _max
    assert {f"limits:rejected_{r.value}" for r in Rejection} <= set(stats)
    standalone = LimitStats()
    standalone.gauge("x", lambda: 3, 4)
    standalone.gauge("x", lambda: 3)  # re-registered unbounded: the maximum goes
    assert standalone.statistics()["limits:x"] == 3 and "limits:x_max" not in standalone.statistics()
    ep.close()


def test_a_driver_that_admits_as_it_reads_is_not_counted_twice() -> None:
    ep = endpoint(rate_limit=RateLimit(requests=2, window=10.0, block=5.0))
    ep.driver_admits("UDP")
    for n in range(2):
        assert ep.admit(request("OPTIONS", n), ALICE, 0.0)
        ep.receive(request("OPTIONS", n), ALICE, "udp", 0.0)
    assert codes(ep) == [200, 200]
    assert ep.limit_stats.rejected[Rejection.RATE] == 0  # receive() did not count them again
    assert not ep.admit(request("OPTIONS", 2), ALICE, 0.1)  # the third one: over the rate
    ep.register_dialog(("live@127.0.0.2", "ours", "f9"))
    assert ep.admit(request("BYE", 6, to_tag="ours", call_id="live"), ALICE, 1.0)
    assert not ep.admit(request("BYE", 5, to_tag="zz", call_id="dead"), ALICE, 1.0)
    assert ep.admit(b"SIP/2.0 200 OK\r\n\r\n", ALICE, 1.0)
    assert ep.admit(request("INVITE", 7, source=CAROL), CAROL, 1.0)
    ep.shed(request("INVITE", 8), ALICE, "udp", 1.0)  # queued before the block: ignored now
    assert ep.datagrams_to_send() == []
    assert ep.limit_stats.rejected[Rejection.RATE] == 3
    assert ep.limit_stats.rejected[Rejection.SHED] == 0
    for n in range(3):  # TCP is still counted by receive()
        ep.receive(request("OPTIONS", 20 + n, source=CAROL), CAROL, "tcp", 2.0)
    assert codes(ep) == [200]  # Carol's INVITE above was her first: these are her 2nd to 4th
    ep.close()
