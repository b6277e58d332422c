"""The fast paths agree with the full grammar.

Each hot parser first tries one compiled pattern for the shapes nearly every message uses and
falls back on the full grammar for anything else. The rule that makes that safe: whatever the
fast path accepts, the full grammar parses to an equal value; whatever it refuses, the fallback
decides. These tests feed both the same strings, generated around the boundaries the patterns
draw (parameters, display names, host labels, ports), plus hand-picked edge cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsess.sip import ParseError, scan
from invsess.sip import headers as h
from invsess.sip import uri as u
from invsess.sip.grammar import split_commas, split_flat_params


def outcome(parse: Callable[[str], Any], text: str) -> Any:
    """The value, or the fact of a ParseError (never any other exception)."""
    try:
        return parse(text)
    except ParseError:
        return ParseError


def slow_uri(text: str) -> Any:
    scheme, _, rest = text.partition(":")
    if scheme not in ("sip", "sips"):
        return u.parse_uri(text)
    return u._parse_sip(scheme, rest, text, None)


# Pieces that sit on the patterns' edges: empty labels and parameters, hyphens at label ends,
# doubled separators, spaces, quotes, overlarge ports.
HOSTS = st.sampled_from(
    ["example.com", "a.b.c", "a-b.c", "-a.com", "a-.com", "a..com", ".a", "a.", "a.-b", "1.2.3.4", "h", "x_y"]
)
PARAMS = st.lists(
    st.sampled_from(
        [
            ";lr",
            ";transport=udp",
            ";tag=a1b2",
            ";=x",
            ";a=",
            ";a==b",
            ";",
            ";;",
            ";a=b=c",
            ";maddr=[::1]",
            " ;x",
        ]
    ),
    max_size=4,
).map("".join)
PORTS = st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":99999", ":", ":12a"])
USERS = st.sampled_from(["", "alice@", "a.b-c@", "%41lice@", "al ice@", "@"])
DISPLAY = st.sampled_from(
    ["", "Alice ", "Alice", "Alice  Bob ", " Alice ", '"Alice" ', '"A \\"B\\"" ', '"" ', "A,B "]
)


@given(scheme=st.sampled_from(["sip", "sips"]), user=USERS, host=HOSTS, port=PORTS, params=PARAMS)
def test_sip_uri_fast_path_agrees_with_the_grammar(
    scheme: str, user: str, host: str, port: str, params: str
) -> None:
    text = f"{scheme}:{user}{host}{port}{params}"
    assert outcome(u.parse_uri, text) == outcome(slow_uri, text)


@given(display=DISPLAY, host=HOSTS, uri_params=PARAMS, params=PARAMS, angle=st.booleans())
def test_name_address_fast_path_agrees_with_the_grammar(
    display: str, host: str, uri_params: str, params: str, angle: bool
) -> None:
    text = f"{display}<sip:bob@{host}{uri_params}>{params}" if angle else f"sip:bob@{host}{params}"
    fast = outcome(lambda v: h.parse_name_address(v, "To"), text)
    assert fast == outcome(lambda v: h._parse_name_address_slow(v, "To"), text)


@given(
    transport=st.sampled_from(["UDP", "tcp", "TLS", "SCTP"]),
    host=HOSTS,
    port=PORTS,
    params=PARAMS,
    extra=st.sampled_from(
        ["", ";branch=z9hG4bK1", ";rport", ";rport=5060", ";received=192.0.2.1", ";ttl=300"]
    ),
)
def test_via_fast_path_agrees_with_the_grammar(
    transport: str, host: str, port: str, params: str, extra: str
) -> None:
    text = f"SIP/2.0/{transport} {host}{port}{extra}{params}"
    assert outcome(h.parse_via, text) == outcome(lambda v: h._parse_via_slow(v, "Via"), text)


@given(
    media=st.sampled_from(["application/sdp", "multipart/mixed", "text/plain", "a/", "/b", "a b/c"]),
    params=PARAMS,
)
def test_media_type_fast_path_agrees_with_the_grammar(media: str, params: str) -> None:
    text = media + params
    fast = outcome(h.parse_media_type, text)
    assert fast == outcome(lambda v: h._parse_media_type_slow(v, "Content-Type"), text)


@given(delta=st.sampled_from(["1800", "90", "0", "4294967296", "", "1 "]), params=PARAMS)
def test_delta_fast_path_agrees_with_the_grammar(delta: str, params: str) -> None:
    text = delta + params
    fast = outcome(lambda v: h._delta_params(v, "Min-SE", "Min-SE"), text)
    assert fast == outcome(lambda v: h._delta_params_slow(v, "Min-SE", "Min-SE"), text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (";lr", (("lr", None),)),
        (";a=b;c", (("a", "b"), ("c", None))),
        (";", None),
        (";a=", None),
        (";=b", None),
        (";a=b=c", None),
        (";a;;b", None),
    ],
)
def test_split_flat_params(text: str, expected: Any) -> None:
    assert split_flat_params(text) == expected


def reference_split_commas(value: str) -> list[str]:
    """The character-by-character reading the regex-driven split replaced."""
    if "," not in value:
        return [value.strip()]
    parts, start, angle, i = [], 0, False, 0
    while i < len(value):
        c = value[i]
        if c == '"':
            i += 1
            while i < len(value) and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
            if i >= len(value):
                raise ParseError("unterminated")
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    if "" in parts:
        raise ParseError("empty element")
    return parts


@given(
    st.lists(
        st.sampled_from(["a", " ", ",", "<", ">", '"', "\\", "b;c=d", "sip:x@y"]), min_size=1, max_size=12
    ).map("".join)
)
def test_split_commas_agrees_with_a_character_reading(value: str) -> None:
    assert outcome(split_commas, value) == outcome(reference_split_commas, value)


# The corpus: every RFC 4475 torture message, plus hand-made messages on the fast paths' edges
# (quoted strings holding escaped quotes and commas, folded lines, empty list elements, odd white
# space, bare LF and mixed line ends, a CRLFCRLF that only the body holds).
RFC4475_DIR = Path(__file__).parent / "data" / "rfc4475"
_HEAD = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
)
_EDGE_HEADERS = [
    'From: "Alice \\"Al\\", the first" <sip:alice@example.com>;tag=1928301774',
    'To: "a,b" <sip:bob@example.com>',
    "To: Bob  Smith <sip:bob@example.com>",
    "To: Bob\t<sip:bob@example.com>;tag=x",
    "To:   <sip:bob@example.com>  ;  tag = x",
    "To: sip:bob@example.com;tag=x",
    "To: <sip:bob@example.com;transport=udp>;tag=",
    "To: <sip:bob@example.com>;;tag=x",
    "To: <sip:bob@-example.com>",
    "To: <sip:bob@example..com>",
    "To: <sip:bob@[::1]:5060>",
    "To: <sip:bob@example.com:65536>",
    'Contact: "x,y" <sip:a@b>, <sip:c@d>;expires=10, sip:e@f',
    "Contact: <sip:a@b>,,<sip:c@d>",
    "Contact: <sip:a@b>, ",
    "Contact: *",
    "Via: SIP/2.0/UDP host-a.example.com;branch=z9hG4bK1, SIP/2.0/TCP 192.0.2.1:5061;rport",
    "Via: SIP / 2.0 / UDP host.example.com ; branch = z9hG4bK1",
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK1;received=192.0.2.1;rport=5060",
    "Via: SIP/2.0/UDP host.example.com:99999;branch=z9hG4bK1",
    "Via: SIP/2.0/UDP -host.example.com;branch=z9hG4bK1",
    'Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;x="a\\"b"',
    "Via: SIP/2.0/UDP h;branch=z9hG4bK1;=x",
    "Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
    "Record-Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>",
    "Subject: folded\r\n\tover\r\n   three lines",
    'Content-Type: application/sdp;charset="utf-8"',
    "Content-Type: multipart/mixed;boundary=unique-boundary-1",
    "Content-Type: application / sdp",
    "Session-Expires: 1800;refresher=uac",
    "Session-Expires: 1800 ; refresher = uas",
    "Session-Expires: 1800;refresher=",
    "Min-SE: 90;x=y=z",
    "Min-SE:90",
    "Supported: timer, 100rel,,replaces",
    "Allow: INVITE,ACK , BYE,",
]
EDGE_MESSAGES = [(_HEAD + line + "\r\nContent-Length: 0\r\n\r\n").encode() for line in _EDGE_HEADERS] + [
    (_HEAD + "Content-Length: 0\r\n\r\n").replace("\r\n", "\n").encode(),
    (_HEAD + "Content-Length: 0\n\r\n").encode(),
    (_HEAD + "Subject: a\rb\r\nContent-Length: 0\r\n\r\n").encode(),
    (_HEAD.replace("\r\n", "\n") + "Content-Length: 4\n\nx\r\n\r\n").encode(),
    ("\r\n\r\n" + _HEAD + "Content-Length: 0\r\n\r\n").encode(),
    (_HEAD + "Content-Length: 0\r\n").encode(),
]
CORPUS = [(p.name, p.read_bytes()) for p in sorted(RFC4475_DIR.glob("*.dat"))] + [
    (f"edge{i}", data) for i, data in enumerate(EDGE_MESSAGES)
]


def _start(data: bytes) -> int:
    start = 0
    while data.startswith((b"\r\n", b"\n"), start):
        start += 2 if data.startswith(b"\r\n", start) else 1
    return start


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
def test_crlf_fast_path_splits_lines_as_the_lenient_reading(name: str, data: bytes) -> None:
    start = _start(data)
    fast = scan._crlf_lines(data, start)
    if fast[0]:
        assert fast == scan._lenient_lines(data, start)
    else:  # refused only when the lenient reading is needed: no CRLFCRLF, or a bare CR or LF
        end = data.find(b"\r\n\r\n", start)
        bare = data[start:end].replace(b"\r\n", b"")
        assert end < 0 or b"\r" in bare or b"\n" in bare


#: Element parsers with a fast path -> the general parser it must agree with.
ELEMENT_PARSERS: dict[str, tuple[Callable[[str], Any], Callable[[str], Any]]] = {
    "Via": (h.parse_via, lambda v: h._parse_via_slow(v, "Via")),
    "From": (h.parse_name_address, lambda v: h._parse_name_address_slow(v, None)),
    "To": (h.parse_name_address, lambda v: h._parse_name_address_slow(v, None)),
    "Contact": (h.parse_name_address, lambda v: h._parse_name_address_slow(v, None)),
    "Route": (h.parse_name_address, lambda v: h._parse_name_address_slow(v, None)),
    "Record-Route": (h.parse_name_address, lambda v: h._parse_name_address_slow(v, None)),
    "Reply-To": (h.parse_name_address, lambda v: h._parse_name_address_slow(v, None)),
    "Content-Type": (h.parse_media_type, lambda v: h._parse_media_type_slow(v, "Content-Type")),
    "Session-Expires": (
        lambda v: h._delta_params(v, "Session-Expires", None),
        lambda v: h._delta_params_slow(v, "Session-Expires", None),
    ),
    "Min-SE": (
        lambda v: h._delta_params(v, "Min-SE", None),
        lambda v: h._delta_params_slow(v, "Min-SE", None),
    ),
}
_BRACKETED = re.compile(r"<([^<>]*)>")


def _fields(data: bytes) -> tuple[str, list[Any]]:
    first, fields, *_ = scan.scan_message(data, scan.DEFAULT_LIMITS)
    return first, fields


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
def test_fast_paths_agree_with_the_grammar_on_the_corpus(name: str, data: bytes) -> None:
    try:
        first, fields = _fields(data)
    except ParseError:
        return  # the framing refused it: no header value to compare
    checked = 0
    uris = [first.split()[1]] if len(first.split()) == 3 and not first.startswith("SIP/") else []
    for field in fields:
        value = field.value
        assert outcome(split_commas, value) == outcome(reference_split_commas, value), value
        parsers = ELEMENT_PARSERS.get(field.key)
        if parsers is None or value.strip() == "*":
            continue
        fast, slow = parsers
        elements = outcome(split_commas, value)
        for element in [value] if elements is ParseError else elements:
            assert outcome(fast, element) == outcome(slow, element), (field.key, element)
            checked += 1
            uris += _BRACKETED.findall(element)
    for text in uris:
        assert outcome(u.parse_uri, text) == outcome(slow_uri, text), text
    assert checked, "every message read has a header with a fast path (Via at least)"
