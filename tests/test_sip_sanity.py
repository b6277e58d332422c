"""Kamailio-style sanity checks: each bit, its answer, and no leak on any failure path."""

from __future__ import annotations

import pytest

from invsess.memory import PoolFactory
from invsess.sip import (
    DEFAULT_CHECKS,
    UAS_CHECKS,
    Check,
    Request,
    Response,
    check_request,
    parse_message,
    response_for,
    screen_datagram,
)

GOOD = (
    "OPTIONS sip:bob@b.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKgood\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@a.example.com>;tag=1\r\n"
    "To: <sip:bob@b.example.com>\r\n"
    "Call-ID: sanity@a\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def variant(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


#: (check, message, status code) - one message failing each check.
FAILURES = [
    (Check.RURI_SIP_VERSION, variant("b.example.com SIP/2.0", "b.example.com SIP/3.0"), 505),
    (Check.RURI_SCHEME, variant("OPTIONS sip:bob@b.example.com", "OPTIONS urn:service:sos"), 416),
    (Check.REQUIRED_HEADERS, variant("Call-ID: sanity@a\r\n", ""), 400),
    (
        Check.REQUIRED_HEADERS,
        variant("Call-ID: sanity@a\r\n", "Call-ID: sanity@a\r\nCall-ID: other@a\r\n"),
        400,
    ),
    (Check.VIA_SIP_VERSION, variant("SIP/2.0/UDP", "SIP/3.0/UDP"), 505),
    (Check.VIA_PROTOCOL, variant("SIP/2.0/UDP", "SIP/2.0/CARRIER-PIGEON"), 400),
    (Check.CSEQ_METHOD, variant("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), 400),
    (Check.CSEQ_VALUE, variant("CSeq: 1 OPTIONS", "CSeq: 99999999999 OPTIONS"), 400),
    (Check.CONTENT_LENGTH, None, 400),  # built below: parsed, then the body changed
    (Check.EXPIRES_VALUE, variant("CSeq:", "Expires: soon\r\nCSeq:"), 400),
    (Check.PROXY_REQUIRE, variant("CSeq:", "Proxy-Require: foo, bar\r\nCSeq:"), 420),
    (Check.PARSE_URIS, variant("To: <sip:bob@b.example.com>", "To: <sip:bob@>"), 400),
    (Check.DIGEST, variant("CSeq:", 'Authorization: Digest realm="r", nonce="n"\r\nCSeq:'), 400),
    (Check.DUPLICATE_TAGS, variant(";tag=1", ";tag=1;tag=2"), 400),
    (Check.AUTHORIZATION, variant("CSeq:", "Authorization: Digest =\r\nCSeq:"), 400),
    (Check.REQUIRE, variant("CSeq:", "Require: nothingSupportsThis\r\nCSeq:"), 420),
]


ALL = Check(0x1FFFF)


def make(text: str | None) -> Request:
    if text is None:
        req = parse_message(GOOD.encode())
        assert isinstance(req, Request)
        req.headers.set("Content-Length", "5")  # says 5 while the body is empty
        return req
    req = parse_message(text.encode())
    assert isinstance(req, Request)
    return req


def test_good_request_passes_everything() -> None:
    req = make(GOOD)
    assert check_request(req, ALL) is None


def test_default_mask_is_kamailios() -> None:
    assert int(DEFAULT_CHECKS) == 3047
    assert UAS_CHECKS == (DEFAULT_CHECKS & ~Check.PROXY_REQUIRE) | Check.REQUIRE


@pytest.mark.parametrize(
    ("check", "text", "code"), FAILURES, ids=[f"{c.name}-{i}" for i, (c, _, _) in enumerate(FAILURES)]
)
def test_each_check(check: Check, text: str | None, code: int) -> None:
    req = make(text)
    failure = check_request(req, check)
    assert failure is not None
    assert failure.check == check
    assert failure.status_code == code
    assert check_request(make(text), Check(0)) is None  # the mask selects: nothing selected, nothing fails


def test_420_carries_unsupported() -> None:
    req = make(variant("CSeq:", "Proxy-Require: foo, bar\r\nCSeq:"))
    failure = check_request(req, Check.PROXY_REQUIRE, proxy_require=["foo"])
    assert failure is not None
    resp = response_for(req, failure, to_tag="t1")
    assert resp.unsupported == ["bar"]
    assert resp.to is not None and resp.to.tag == "t1"
    assert check_request(req, Check.PROXY_REQUIRE, proxy_require=["FOO", "bar"]) is None


def test_require_is_ignored_for_ack_and_cancel() -> None:
    ack = GOOD.replace("OPTIONS", "ACK").replace("CSeq:", "Require: x\r\nCSeq:")
    assert check_request(make(ack), Check.REQUIRE) is None
    assert check_request(make(ack.replace("ACK", "BYE")), Check.REQUIRE) is not None


def test_supported_extensions_pass_require() -> None:
    req = make(variant("CSeq:", "Require: timer, 100rel\r\nCSeq:"))
    assert check_request(req, Check.REQUIRE, supported=["100rel", "timer"]) is None


def test_screen_answers_requests_and_never_acks() -> None:
    factory = PoolFactory(malloc_debug=True)
    bad = variant("CSeq: 1 OPTIONS", "CSeq: 1 INVITE").encode()
    screening = screen_datagram(bad, factory)
    assert screening.outcome == "reply"
    assert screening.reply is not None
    reply = parse_message(screening.reply)
    assert isinstance(reply, Response) and reply.status_code == 400
    ack = GOOD.replace("OPTIONS", "ACK").replace("CSeq: 1 ACK", "CSeq: 1 INVITE").encode()
    assert screen_datagram(ack, factory).outcome == "drop"
    assert screen_datagram(b"\x00\x01garbage", factory).outcome == "drop"
    assert screen_datagram(GOOD.encode(), factory).outcome == "ok"
    assert not factory.leak_report()


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_ten_thousand_failures_leak_nothing(debug: bool) -> None:
    """Kamailio GH #1990 leaked pkg memory on every failed Proxy-Require check; not here."""
    factory = PoolFactory(malloc_debug=debug)
    wire = [t.encode() for _, t, _ in FAILURES if t is not None]
    wire.append(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n")  # parser failure path
    wire.append(b'INVITE sip:a@b SIP/2.0\r\nTo: "unterminated\r\nl: 0\r\n\r\n')  # lazy header failure
    start = factory.statistics()
    answered = 0
    for i in range(10_000):
        screening = screen_datagram(wire[i % len(wire)], factory, checks=ALL)
        answered += screening.outcome == "reply"
    end = factory.statistics()
    assert answered == 10_000
    assert end.used_size == start.used_size
    assert end.real_used_size == start.real_used_size
    assert end.fragments == start.fragments
    assert not factory.leak_report()
