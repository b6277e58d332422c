"""The sans-IO endpoint: stateless answers, CANCEL, merging, routing, limits, memory."""

from __future__ import annotations

import pytest

from invsess.endpoint import CancelReceived, Endpoint, EndpointConfig, response_destination, stamp_via
from invsess.sip import LocalProtocolError, Request, make_response, parse_message
from invsess.transaction import RequestReceived

from .helpers import UAS_ADDR, EndpointPair

SOURCE = ("127.0.0.1", 40000)


def raw_request(
    method: str = "OPTIONS",
    *,
    extra: str = "",
    via: str = "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKraw1",
    to: str = "<sip:bob@127.0.0.1>",
    body: str = "",
    cseq_method: str | None = None,
) -> bytes:
    return (
        f"{method} sip:bob@127.0.0.1:5062 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=at\r\nTo: {to}\r\nCall-ID: raw@127.0.0.1\r\n"
        f"CSeq: 7 {cseq_method or method}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def answer(endpoint: Endpoint, data: bytes, source=SOURCE) -> list[tuple[int, tuple[str, int]]]:
    endpoint.receive(data, source, "udp", 0.0)
    out = []
    for item in endpoint.datagrams_to_send():
        msg = parse_message(item.data)
        out.append((msg.status_code, item.destination))  # type: ignore[union-attr]
    return out


@pytest.fixture
def uas() -> Endpoint:
    ep = Endpoint(EndpointConfig(seed=3, malloc_debug=True, allow=("INVITE", "OPTIONS", "BYE")))
    ep.add_listener("udp", UAS_ADDR)
    return ep


def test_options_answered_with_allow(uas: Endpoint) -> None:
    uas.receive(raw_request(), SOURCE, "udp", 0.0)
    (item,) = uas.datagrams_to_send()
    resp = parse_message(item.data)
    assert resp.status_code == 200  # type: ignore[union-attr]
    assert resp.allow == ["INVITE", "OPTIONS", "BYE", "ACK", "CANCEL"]
    assert resp.to is not None and resp.to.tag is not None
    assert item.destination == SOURCE
    assert uas.next_event() is None  # the endpoint answered it itself


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (raw_request("REGISTER"), 405),
        (raw_request("FOO"), 501),
        (raw_request("BYE", to="<sip:bob@127.0.0.1>;tag=nodialog"), 481),
        (raw_request("INVITE", body="hello", extra="Content-Type: text/plain\r\n"), 415),
        (raw_request("INVITE", extra="Accept: text/nobodyKnowsThis\r\n"), 406),
        (raw_request("OPTIONS", cseq_method="INVITE"), 400),
        (raw_request("OPTIONS", extra="Require: nothingSupportsThis\r\n"), 420),
        (
            b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKq\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (raw_request("CANCEL"), 481),
    ],
)
def test_stateless_answers(uas: Endpoint, data: bytes, code: int) -> None:
    assert answer(uas, data) == [(code, SOURCE)]
    assert not uas.leak_report()


def test_405_and_415_say_what_is_allowed(uas: Endpoint) -> None:
    uas.receive(raw_request("REGISTER"), SOURCE, "udp", 0.0)
    assert parse_message(uas.datagrams_to_send()[0].data).allow == [
        "INVITE",
        "OPTIONS",
        "BYE",
        "ACK",
        "CANCEL",
    ]
    uas.receive(raw_request("INVITE", body="x", extra="Content-Type: text/plain\r\n"), SOURCE, "udp", 0.0)
    assert parse_message(uas.datagrams_to_send()[0].data).headers.get("Accept") == "application/sdp"


def test_acks_and_responses_are_never_answered(uas: Endpoint) -> None:
    assert answer(uas, raw_request("ACK")) == []
    assert answer(uas, raw_request("ACK", cseq_method="INVITE")) == []
    assert uas.stats["stray ACKs"] == 1
    assert (
        answer(
            uas,
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKx\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
        )
        == []
    )
    assert uas.stats["stray responses"] == 1
    assert answer(uas, b"garbage\r\n\r\n") == []
    assert not uas.leak_report()


def test_received_and_rport(uas: Endpoint) -> None:
    data = raw_request(via="SIP/2.0/UDP client.example.com:5099;branch=z9hG4bKr;rport")
    uas.receive(data, ("127.0.0.7", 41234), "udp", 0.0)
    (item,) = uas.datagrams_to_send()
    assert item.destination == ("127.0.0.7", 41234)
    top = parse_message(item.data).top_via
    assert top is not None
    assert (top.received, top.rport) == ("127.0.0.7", 41234)


def test_routing_rules() -> None:
    req = parse_message(raw_request(via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa"))
    assert isinstance(req, Request)
    via = stamp_via(req, ("127.0.0.1", 5999))
    assert via is not None and via.received == "127.0.0.1"
    assert response_destination(via, ("127.0.0.1", 5999), "udp") == ("127.0.0.1", 5060)
    assert response_destination(via, ("127.0.0.1", 5999), "tcp") == ("127.0.0.1", 5999)
    same = parse_message(raw_request(via="SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa"))
    assert isinstance(same, Request)
    assert stamp_via(same, ("127.0.0.1", 5070)).received is None  # type: ignore[union-attr]


def test_retransmitted_request_is_absorbed_and_answered_again(uas: Endpoint) -> None:
    data = raw_request("BYE")
    uas.receive(data, SOURCE, "udp", 0.0)
    (event,) = [uas.next_event()]
    assert isinstance(event, RequestReceived)
    uas.respond(event.transaction, make_response(event.request, 200, to_tag="x"), 0.1)
    assert len(uas.datagrams_to_send()) == 1
    uas.receive(data, SOURCE, "udp", 0.2)
    assert [parse_message(o.data).status_code for o in uas.datagrams_to_send()] == [200]  # type: ignore[union-attr]
    assert uas.next_event() is None
    assert uas.stats["absorbed requests"] == 1


def test_merged_request_gets_482(uas: Endpoint) -> None:
    uas.receive(raw_request("BYE"), SOURCE, "udp", 0.0)
    other_branch = raw_request("BYE", via="SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKother")
    assert answer(uas, other_branch, ("127.0.0.1", 40001)) == [(482, ("127.0.0.1", 40001))]


def test_a_request_we_sent_that_comes_back_is_a_loop() -> None:
    pair = EndpointPair()
    req = pair.request("MESSAGE")
    pair.uac.send_request(req, UAS_ADDR, "udp", 0.0)
    (sent,) = pair.uac.datagrams_to_send()
    looped = sent.data.replace(b"Via: ", b"Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKproxy\r\nVia: ", 1)
    pair.uac.receive(looped.replace(b"MESSAGE sip", b"MESSAGE sip", 1), ("127.0.0.9", 5060), "udp", 0.0)
    (answer_out,) = [o for o in pair.uac.datagrams_to_send() if o.data.startswith(b"SIP/2.0")]
    assert answer_out.data.startswith(b"SIP/2.0 405") or answer_out.data.startswith(b"SIP/2.0 482")
    allowed = Endpoint(EndpointConfig(malloc_debug=True, allow=("MESSAGE",)))
    allowed.add_listener("udp", ("127.0.0.1", 5061))
    req2 = pair.request("MESSAGE", call_id="loop-2")
    req2.headers.set("Via", allowed.via("udp"))
    allowed.send_request(req2, UAS_ADDR, "udp", 0.0)
    (sent2,) = allowed.datagrams_to_send()
    looped2 = sent2.data.replace(b"Via: ", b"Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKproxy\r\nVia: ", 1)
    allowed.receive(looped2, ("127.0.0.9", 5060), "udp", 0.0)
    (out,) = allowed.datagrams_to_send()
    assert out.data.startswith(b"SIP/2.0 482 Loop Detected")
    allowed.close()


def test_rfc2543_requests_without_branch_are_matched(uas: Endpoint) -> None:
    data = raw_request("INVITE", via="SIP/2.0/UDP 127.0.0.1:40000")
    uas.receive(data, SOURCE, "udp", 0.0)
    event = uas.next_event()
    assert isinstance(event, RequestReceived)
    uas.receive(data, SOURCE, "udp", 0.1)  # retransmission, matched without a branch
    assert uas.next_event() is None
    uas.respond(event.transaction, make_response(event.request, 480, to_tag="t"), 0.2)
    uas.receive(
        raw_request(
            "ACK", via="SIP/2.0/UDP 127.0.0.1:40000", to="<sip:bob@127.0.0.1>;tag=t", cseq_method="ACK"
        ).replace(b"ACK sip", b"ACK sip"),
        SOURCE,
        "udp",
        0.3,
    )
    assert event.transaction.state.name == "CONFIRMED"


def test_cancel_matches_the_invite() -> None:
    pair = EndpointPair()
    invite = pair.request()
    pair.uac.send_request(invite, UAS_ADDR, "udp", 0.0)
    pair.pump()
    (req_event,) = pair.events(pair.uas)
    cancel = pair.request("CANCEL")
    cancel.headers.set("Via", str(invite.top_via))
    pair.uac.send_request(cancel, UAS_ADDR, "udp", 0.1)
    pair.now = 0.1
    pair.pump()
    events = pair.events(pair.uas)
    assert [type(e) for e in events] == [CancelReceived]
    pair.uas.respond(events[0].invite, make_response(req_event.request, 487, to_tag="t"), 0.1)  # type: ignore[attr-defined]
    pair.pump()
    assert [d for t, d in pair.summary(pair.uac) if t == "ResponseReceived"] == [200, 487]
    pair.advance(100.0)
    assert not pair.uac.leak_report()
    assert not pair.uas.leak_report()


def test_transaction_limit_answers_503_with_retry_after() -> None:
    ep = Endpoint(
        EndpointConfig(malloc_debug=True, allow=("BYE", "OPTIONS"), max_transactions=2, retry_after=9)
    )
    ep.add_listener("udp", UAS_ADDR)
    for i in range(2):
        ep.receive(
            raw_request("BYE", via=f"SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK{i}").replace(
                b"CSeq: 7", f"CSeq: {i}".encode()
            ),
            SOURCE,
            "udp",
            0.0,
        )
    ep.receive(
        raw_request("BYE", via="SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKz").replace(
            b"CSeq: 7", b"CSeq: 99"
        ),
        SOURCE,
        "udp",
        0.0,
    )
    last = parse_message(ep.datagrams_to_send()[-1].data)
    assert last.status_code == 503  # type: ignore[union-attr]
    assert last.retry_after is not None and last.retry_after.delta == 9
    assert len(ep.transactions()) == 2
    ep.close()
    assert not ep.leak_report()


def test_out_of_memory_drops_without_crashing() -> None:
    ep = Endpoint(EndpointConfig(malloc_debug=True, total_memory=8192, allow=("BYE",)))
    ep.add_listener("udp", UAS_ADDR)
    for i in range(20):
        data = raw_request("BYE", via=f"SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKm{i}")
        ep.receive(data.replace(b"CSeq: 7", f"CSeq: {i}".encode()), SOURCE, "udp", 0.0)
    assert ep.stats["dropped: out of memory"] + ep.stats["dropped: pool exhausted"] > 0
    ep.close()
    assert not ep.leak_report()


def test_oversized_udp_request_moves_to_tcp() -> None:
    ep = Endpoint(EndpointConfig(malloc_debug=True))
    ep.add_listener("udp", ("127.0.0.1", 5061))
    ep.add_listener("tcp", ("127.0.0.1", 5061))
    pair = EndpointPair()
    big = pair.request("MESSAGE", headers=[("X-Padding", "x" * 1400)])
    big.headers.set("Via", ep.via("udp"))
    tx = ep.send_request(big, UAS_ADDR, "udp", 0.0)
    assert tx.transport == "tcp"
    (item,) = ep.datagrams_to_send()
    assert item.transport == "tcp"
    assert b"Via: SIP/2.0/TCP 127.0.0.1:5061" in item.data
    ep.close()


def test_api_misuse_is_typed() -> None:
    ep = Endpoint(EndpointConfig(malloc_debug=True))
    pair = EndpointPair()
    with pytest.raises(LocalProtocolError, match="listener"):
        ep.via("udp")
    with pytest.raises(LocalProtocolError, match="not a transaction"):
        ep.send_request(pair.request("ACK"), UAS_ADDR, "udp", 0.0)
    req = pair.request()
    req.headers.set("Via", "SIP/2.0/UDP 127.0.0.1;branch=nocookie")
    with pytest.raises(LocalProtocolError, match="branch"):
        ep.send_request(req, UAS_ADDR, "udp", 0.0)
    with pytest.raises(ValueError, match="unknown methods"):
        EndpointConfig(allow=("FROB",))


def test_an_internal_error_after_hand_over_neither_leaks_nor_double_frees(
    uas: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: Request) -> None:
        raise RuntimeError("bug in the answer")

    monkeypatch.setattr(uas, "_options_answer", broken)
    with pytest.raises(RuntimeError, match="bug in the answer"):
        uas.receive(raw_request(), SOURCE, "udp", 0.0)  # the transaction had adopted the pool
    assert len(uas.transactions()) == 1
    assert not uas.close()  # no DoubleFreeError, nothing left behind


def test_awaiting_answers_lists_requests_still_unanswered() -> None:
    ep = Endpoint(EndpointConfig(malloc_debug=True))
    ep.add_listener("tcp", UAS_ADDR)
    pair = EndpointPair()
    req = pair.request("OPTIONS")
    req.headers.set("Via", ep.via("tcp"))
    tx = ep.send_request(req, SOURCE, "tcp", 0.0)
    assert ep.awaiting_answers() == [tx]
    ep.transport_error(SOURCE, "TCP", 0.0)
    assert ep.awaiting_answers() == []
    ep.close()
    assert not ep.leak_report()
