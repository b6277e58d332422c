"""URIs: sip/sips/tel/opaque, escaping kept, every malformed shape refused."""

from __future__ import annotations

import pytest

from invsess.sip import AbsoluteUri, ParseError, SipUri, TelUri, parse_uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.example.com",
        "sips:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:[2001:db8::10]:5070;maddr=239.255.255.1;ttl=15",
        "sip:192.0.2.4",
        "sip:user;par=u%40example.net@example.com",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        "sip:%75se%72@example.com",
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value",
        "tel:+358-555-1234567;postd=pp22",
        "isbn:2983792873",
        "http://www.example.com",
        "urn:service:sos",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_sip_parts() -> None:
    uri = parse_uri("SIP:alice:pw@Atlanta.example.com:5070;transport=TCP;lr?h=v")
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip",
        "alice",
        "pw",
        "Atlanta.example.com",
        5070,
    )
    assert uri.transport == "tcp"
    assert uri.lr
    assert uri.param("LR") == ""
    assert uri.param("nope") is None
    assert uri.headers == (("h", "v"),)
    assert uri.host_port == ("Atlanta.example.com", 5070)
    assert not uri.secure


def test_semicolon_in_user_part_goes_to_user() -> None:
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert isinstance(uri, SipUri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.unescaped_user == "user;par=u@example.net"
    assert uri.params == ()


def test_defaults_and_ipv6() -> None:
    uri = parse_uri("sips:[::1]")
    assert isinstance(uri, SipUri)
    assert uri.host_port == ("::1", 5061)
    assert uri.secure


def test_with_params() -> None:
    uri = parse_uri("sip:a@b;transport=udp")
    assert isinstance(uri, SipUri)
    assert str(uri.with_params(transport="tcp", lr=None)) == "sip:a@b;transport=tcp;lr"


def test_tel_and_opaque() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(tel, TelUri)
    assert tel.number == "+1-201-555-0123"
    other = parse_uri("nobodyKnowsThisScheme:totallyopaquecontent")
    assert isinstance(other, AbsoluteUri)
    assert other.scheme == "nobodyknowsthisscheme"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip",
        "<sip:a@b>",
        "sip:",
        "sip:@host",
        "sip:a@",
        "sip:a@b:port",
        "sip:a@b:70000",
        "sip:a@b;",
        "sip:a@b;=x",
        "sip:a@b?x",
        "sip:a@[::1",
        "sip:a@[nothex]",
        "sip:a@host_with_underscore",
        "sip:a b@c",
        "sip:a@b c",
        'sip:us"er@b',
        "1sip:a@b",
        "http:has space",
        "tel:not a number",
        "sip:a@b:1²",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)
