"""Stream framing: any chunking, keep-alives, errors that end the connection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invsess.sip import PING, FramingError, ParserLimits, StreamFramer, parse_message

A = b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 5\r\n\r\nhello"
B = b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n"
C = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length:  3\r\n\r\n\r\n\r"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(A + B + C)), max_size=20))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    stream = A + b"\r\n\r\n" + B + C
    framer = StreamFramer()
    out = []
    pos = 0
    for cut in [*sorted(cuts), len(stream)]:
        out += framer.feed(stream[pos:cut])
        pos = cut
    assert out == [A, PING, B, C]
    assert framer.buffered == 0


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out = []
    for b in A + B:
        out += framer.feed(bytes([b]))
    assert out == [A, B]
    assert isinstance(out[0], bytes)
    assert parse_message(out[0]).body == b"hello"


def test_pong_and_stray_crlf_are_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []  # could be the start of a ping
    assert framer.feed(B) == [B]
    assert framer.feed(b"\r\n\r\n\r\n") == [PING]
    assert framer.feed(B) == [B]


def test_missing_content_length_means_empty_body() -> None:
    framer = StreamFramer()
    assert framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n" + B) == [b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", B]


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999\r\n\r\n",
        b"garbage" * 20000,
        b"\rX",
    ],
)
def test_framing_errors_break_the_stream(data: bytes) -> None:
    framer = StreamFramer(ParserLimits(max_message_size=65535))
    with pytest.raises(FramingError):
        framer.feed(data)
    assert framer.broken
    with pytest.raises(FramingError, match="already failed"):
        framer.feed(B)


def test_folded_content_length_line_is_not_a_header() -> None:
    framer = StreamFramer()
    msg = b"OPTIONS sip:a@b SIP/2.0\r\nX: a\r\n l: 99\r\nl: 0\r\n\r\n"
    assert framer.feed(msg) == [msg]
