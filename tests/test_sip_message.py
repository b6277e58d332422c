"""Messages: lazy parsing, exact round trip, canonical serialisation, API, pools, limits."""

from __future__ import annotations

import pytest

from invsess.memory import PoolFactory, UseAfterFreeError
from invsess.sip import (
    CSeq,
    LocalProtocolError,
    NameAddress,
    ParseError,
    ParserLimits,
    Request,
    Response,
    SipUri,
    Via,
    make_request,
    make_response,
    parse_message,
    parse_uri,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"X-Unknown:   kept   as is  \r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_lazy_parse_caches_and_round_trips() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    fields = msg.headers.fields
    assert all(f.parsed is not None for f in fields)
    via_field = next(f for f in fields if f.key == "Via")
    from invsess.sip.fields import UNPARSED as _UNPARSED

    assert via_field.parsed is _UNPARSED  # nothing parsed yet
    assert msg.top_via is not None  # parses the first element only
    assert via_field.parsed is _UNPARSED
    assert msg.via[0] == msg.top_via
    assert via_field.parsed is not _UNPARSED
    assert msg.via[0] is msg.via[0]  # cached
    assert msg.serialize() == INVITE
    assert not msg.modified
    assert msg.headers.get("x-unknown") == "kept   as is"
    assert msg.body == b"v=0\n"


def test_modification_serialises_canonically() -> None:
    msg = parse_message(INVITE)
    msg.headers.prepend("Via", Via("TCP", "proxy.example.com", params=(("branch", "z9hG4bKp"),)))
    msg.headers.remove("X-Unknown")
    msg.body = b"v=0\r\n"
    out = msg.serialize()
    assert out.startswith(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp\r\n"
    )
    assert b"X-Unknown" not in out
    assert b"Content-Length: 5\r\n" in out
    again = parse_message(out)
    assert [v.host for v in again.via] == ["proxy.example.com", "pc33.atlanta.example.com"]
    assert again.body == b"v=0\r\n"


def test_compact_and_folded_headers() -> None:
    msg = parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:c@d>;\r\n tag=1\r\n"
        b"t: <sip:a@b>\r\ni: x\r\nCSeq: 1\r\n\tOPTIONS\r\nl: 0\r\n\r\n"
    )
    assert msg.from_ is not None and msg.from_.tag == "1"
    assert msg.cseq == CSeq(1, "OPTIONS")
    assert "Call-ID" in msg.headers
    assert "i" in msg.headers
    assert msg.headers.count("Via") == 1


def test_headers_api() -> None:
    msg = parse_message(INVITE)
    h = msg.headers
    h.add("Supported", "timer")
    h.add("Supported", "100rel")
    assert h.get_all("supported") == ["timer", "100rel"]
    h.set("Supported", "replaces")
    assert h.get_all("Supported") == ["replaces"]
    assert h.remove("Supported") == 1
    assert h.remove("Supported") == 0
    h.insert(0, "Route", "<sip:p@q;lr>")
    assert next(iter(h))[0] == "Route"
    with pytest.raises(LocalProtocolError):
        h.add("Bad Name", "x")
    with pytest.raises(LocalProtocolError):
        h.add("X-Inject", "a\r\nVia: evil")
    with pytest.raises(LocalProtocolError):
        h.parsed("X-Unknown")
    copy = h.copy()
    copy.remove("Route")
    assert "Route" in h


def test_remove_first_of_a_list_header() -> None:
    msg = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    )
    msg.headers.remove_first("Via")
    assert [v.host for v in msg.via] == ["b"]
    msg.headers.remove_first("Via")
    assert msg.via == []


def test_request_uri_is_lazy_and_settable() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.uri_text == "sip:bob@biloxi.example.com"
    uri = msg.uri
    assert isinstance(uri, SipUri) and uri.user == "bob"
    msg.uri = parse_uri("sip:bob@192.0.2.4")
    assert msg.serialize().startswith(b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n")


def test_single_valued_header_twice() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n")
    with pytest.raises(ParseError, match="appears 2 times") as info:
        _ = msg.cseq
    assert info.value.header == "CSeq"
    same = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n")
    assert same.content_length == 0


def test_response_line() -> None:
    msg = parse_message(b"SIP/2.0 180 \r\nl: 0\r\n\r\n")
    assert isinstance(msg, Response)
    assert (msg.status_code, msg.reason, msg.provisional) == (180, "", True)
    assert parse_message(b"SIP/2.0 200\r\n\r\n").reason == ""  # type: ignore[union-attr]
    assert Response(486).reason == "Busy Here"
    assert Response(499).reason == "Bad Request"
    with pytest.raises(LocalProtocolError):
        Response(700)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "no empty line"),
        (b"INVITE sip:a@b SIP/2.0", "no empty line"),
        (b"INVITE sip:a@b\r\n\r\n", "request line"),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", "version"),
        (b"IN VITE sip:a@b SIP/2.0\r\n\r\n", "request line"),
        (b"INV\x01TE sip:a@b SIP/2.0\r\n\r\n", "method"),
        (b"SIP/2.0 1000 x\r\n\r\n", "status code"),
        (b"SIP/2.0 099 x\r\n\r\n", "status code"),
        (b"OPTIONS sip:a@b SIP/2.0\r\n continuation\r\n\r\n", "continuation"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n", "without ':'"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", "header name"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nabc", "larger than"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: x\r\n\r\n", "Content-Length"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", "bare CR"),
    ],
)
def test_parse_errors(data: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        parse_message(data)


def test_leading_crlf_and_lf_only() -> None:
    msg = parse_message(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nCSeq: 1 OPTIONS\n\n")
    assert msg.cseq == CSeq(1, "OPTIONS")


def test_limits() -> None:
    limits = ParserLimits(max_message_size=100, max_headers=3, max_line_length=40)
    with pytest.raises(ParseError) as info:
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 20 + b"\r\n", limits=limits)
    assert info.value.status_code == 513
    with pytest.raises(ParseError, match="more than 3 header lines"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 4 + b"\r\n", limits=limits)
    with pytest.raises(ParseError, match="longer than 40"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"y" * 50 + b"\r\n\r\n", limits=limits)
    with pytest.raises(ParseError, match="start line too long"):
        parse_message(b"OPTIONS sip:" + b"a" * 50 + b"@b SIP/2.0\r\n\r\n", limits=limits)


@pytest.mark.parametrize("debug", [False, True])
def test_message_lives_in_its_pool(debug: bool) -> None:
    factory = PoolFactory(malloc_debug=debug)
    pool = factory.create_pool("rx")
    msg = parse_message(INVITE, pool=pool)
    assert pool.block_count == 1
    size = msg.block_header.size
    assert size >= len(INVITE)
    assert parse_message(INVITE, pool=factory.create_pool("rx2")).block_header.size == size  # deterministic
    pool.release("message done")
    if debug:
        with pytest.raises(UseAfterFreeError):
            _ = msg.via


def test_make_request_and_response() -> None:
    alice = NameAddress(parse_uri("sip:alice@a.example.com"), "Alice", (("tag", "9fxced76sl"),))
    bob = NameAddress(parse_uri("sip:bob@b.example.com"))
    req = make_request(
        "INVITE",
        "sip:bob@b.example.com",
        via=Via("UDP", "a.example.com", 5060, (("branch", "z9hG4bK74bf9"),)),
        from_=alice,
        to=bob,
        call_id="3848276298220188511@a.example.com",
        cseq=1,
        contact=NameAddress(parse_uri("sip:alice@192.0.2.1")),
        headers=[("Supported", "timer")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    wire = req.serialize()
    back = parse_message(wire)
    assert isinstance(back, Request)
    assert back.method == "INVITE"
    assert back.cseq == CSeq(1, "INVITE")
    assert back.max_forwards == 70
    assert back.from_ is not None and back.from_.tag == "9fxced76sl"
    assert back.content_length == 5
    resp = make_response(back, 180, to_tag="a6c85cf")
    assert resp.to is not None and resp.to.tag == "a6c85cf"
    assert resp.via == back.via
    trying = make_response(back, 100, to_tag="x")
    assert trying.to is not None and trying.to.tag is None
    assert parse_message(resp.serialize()).cseq == CSeq(1, "INVITE")
    with pytest.raises(LocalProtocolError):
        make_request("INVITE", "sip:b@c", via=[], from_=alice, to=bob, call_id="x", cseq=CSeq(1, "BYE"))
    with pytest.raises(LocalProtocolError):
        make_response(back, 200, body=b"x")


def test_response_to_a_request_without_from_or_to() -> None:
    req = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\nl: 0\r\n\r\n")
    assert isinstance(req, Request)
    resp = parse_message(make_response(req, 400, "Missing Required Header in Request").serialize())
    assert isinstance(resp, Response)
    assert resp.status_code == 400
    assert resp.to is None
    assert resp.top_via is not None
