"""Typed header values: parsing, serialisation, errors."""

from __future__ import annotations

import pytest

from invsess.sip import (
    ContactStar,
    CSeq,
    ParseError,
    SipUri,
    Via,
    canonical_name,
    parse_message,
)
from invsess.sip.headers import (
    parse_contact,
    parse_credentials,
    parse_cseq,
    parse_media_type,
    parse_min_se,
    parse_name_address,
    parse_rack,
    parse_retry_after,
    parse_session_expires,
    parse_via,
    parse_warning,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("v", "Via"), ("I", "Call-ID"), ("call-id", "Call-ID"), ("CSEQ", "CSeq"), ("x-custom-thing", "X-Custom-Thing"),
     ("www-authenticate", "WWW-Authenticate"), ("l", "Content-Length"), ("k", "Supported"), ("rseq", "RSeq")],
)  # fmt: skip
def test_canonical_names(name: str, expected: str) -> None:
    assert canonical_name(name) == expected


def test_name_address_forms() -> None:
    a = parse_name_address('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert a.display_name == 'J Rosenberg \\"'
    assert a.tag == "98asjd8"
    assert isinstance(a.uri, SipUri)
    b = parse_name_address("caller<sip:caller@example.com>;tag=323")
    assert b.display_name == "caller"
    c = parse_name_address("sip:caller@example.net;tag=134161461246")
    assert c.display_name is None
    assert c.tag == "134161461246"
    assert str(c) == "<sip:caller@example.net>;tag=134161461246"
    d = parse_name_address("A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe")
    assert d.display_name == "A. Bell"
    e = parse_name_address(
        '"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33'
    )
    assert e.param("q") == "0.33"
    assert e.param("secondparam") == ""
    assert str(e.with_tag("x")).endswith(";tag=x")
    assert str(parse_name_address('"Bob Smith" <sip:b@c>')) == '"Bob Smith" <sip:b@c>'


@pytest.mark.parametrize(
    "value",
    [
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>",
        "< sip:t.watson@example.org >",
        "<sip:a@b",
        "<sip:a@b>;;",
        "<sip:a@b> junk",
        "",
        "sip:a@b c",
    ],
)
def test_name_address_errors(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_address(value, "To")


def test_via_with_lws_everywhere() -> None:
    via = parse_via("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw")
    assert (via.protocol, via.version, via.transport, via.host) == ("SIP", "2.0", "UDP", "192.0.2.2")
    assert via.branch == "390skdjuw"
    via = parse_via("SIP/2.0/TCP [2001:db8::1]:5061;received=2001:db8::9;rport=5062;ttl=1")
    assert via.host == "[2001:db8::1]"
    assert via.port == 5061
    assert via.rport == 5062
    assert parse_via("SIP/2.0/UDP h;rport").rport is True
    assert parse_via("SIP/2.0/UDP h").rport is None
    assert str(parse_via("SIP/2.0/udp h:1;branch=z9hG4bKx")) == "SIP/2.0/UDP h:1;branch=z9hG4bKx"
    assert Via("UDP", "h").with_params(branch="b", rport=None).params == (("branch", "b"), ("rport", None))


@pytest.mark.parametrize(
    "value",
    ["SIP/2.0 UDP h", "SIP/2.0/UDP", "SIP/2.0/UDP h;;", "SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h;received=nothost",
     "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h;ttl=300", "SIP/2.0/UDP h junk", "SIP/2.0/UDP [::1"],
)  # fmt: skip
def test_via_errors(value: str) -> None:
    with pytest.raises(ParseError):
        parse_via(value)


def test_scalars() -> None:
    assert parse_cseq("0009\t INVITE") == CSeq(9, "INVITE")
    for bad in ("36893488147419103232 REGISTER", "1", "x INVITE", "1 INVITE extra", "2147483648 INVITE"):
        with pytest.raises(ParseError):
            parse_cseq(bad)
    assert parse_cseq("2147483647 ACK").number == 2**31 - 1


def test_contact() -> None:
    assert isinstance(parse_contact("*"), ContactStar)
    with pytest.raises(ParseError):
        parse_contact("<sip:user@host129.example.com>;expires=280297596632815")
    assert parse_contact("<sip:a@b>;expires=3600").param("expires") == "3600"  # type: ignore[union-attr]


def test_media_type() -> None:
    mt = parse_media_type('multipart/mixed;boundary="7a9c"')
    assert mt.mime == "multipart/mixed"
    assert mt.param("boundary") == "7a9c"
    with pytest.raises(ParseError):
        parse_media_type("application")


def test_rfc4028_and_3262_values() -> None:
    se = parse_session_expires("1800;refresher=UAC;x=y")
    assert (se.delta, se.refresher, se.params) == (1800, "uac", (("x", "y"),))
    assert str(se) == "1800;refresher=uac;x=y"
    with pytest.raises(ParseError):
        parse_session_expires("1800;refresher=both")
    assert parse_min_se("90").delta == 90
    rack = parse_rack("776656 1 INVITE")
    assert (rack.rseq, rack.cseq, rack.method) == (776656, 1, "INVITE")
    with pytest.raises(ParseError):
        parse_rack("1 INVITE")


def test_retry_after_and_warning() -> None:
    ra = parse_retry_after("18000 (in a meeting);duration=3600")
    assert (ra.delta, ra.comment) == (18000, "in a meeting")
    with pytest.raises(ParseError):
        parse_retry_after("949302838503028349304023988")
    w = parse_warning("307 isi.edu \"Session parameter 'foo' not understood\"")
    assert w.code == 307
    with pytest.raises(ParseError):
        parse_warning('1812 overture "In Progress"')


def test_credentials() -> None:
    c = parse_credentials(
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b", uri="sip:bob@biloxi.com", response="6629fae4"'
    )
    assert c.scheme == "Digest"
    assert c.param("username") == "bob"
    assert c.param("URI") == "sip:bob@biloxi.com"
    unknown = parse_credentials("NoOneKnowsThisScheme opaque-data=here")
    assert unknown.param("opaque-data") == "here"


def test_message_level_typed_access() -> None:
    msg = parse_message(
        b"INVITE sip:bob@b SIP/2.0\r\n"
        b"v: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/UDP c;branch=z9hG4bK3\r\n"
        b"f: <sip:alice@a>;tag=1\r\nt: <sip:bob@b>\r\ni: abc@a\r\nCSeq: 1 INVITE\r\n"
        b"k: 100rel, timer\r\nRequire: timer\r\nAllow: INVITE, ACK, BYE\r\n"
        b"m: <sip:alice@a>, <sip:alice@c>;q=0.5\r\nx: 1800;refresher=uas\r\nMin-SE: 90\r\n"
        b'WWW-Authenticate: Digest realm="a", nonce="b"\r\nWWW-Authenticate: Digest realm="c", nonce="d"\r\n'
        b"l: 0\r\n\r\n"
    )
    assert [v.host for v in msg.via] == ["a", "b", "c"]
    assert msg.top_via is not None and msg.top_via.branch == "z9hG4bK1"
    assert msg.supported == ["100rel", "timer"]
    assert msg.require == ["timer"]
    assert msg.allow == ["INVITE", "ACK", "BYE"]
    assert len(msg.contact) == 2
    assert msg.session_expires is not None and msg.session_expires.refresher == "uas"
    assert msg.min_se is not None and msg.min_se.delta == 90
    assert [c.param("realm") for c in msg.www_authenticate] == ["a", "c"]
    assert msg.call_id == "abc@a"
    assert msg.expires is None
    assert msg.rack is None
