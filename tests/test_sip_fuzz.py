"""The fuzz invariant (h11's): for any bytes, whole or chunked, the parser parses or raises
invsess's own ParseError - never any other exception - and screening never leaks."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsess.memory import PoolFactory
from invsess.sdp import parse_sdp
from invsess.sip import ParseError, StreamFramer, parse_message, screen_datagram

from .conftest import RFC4475, rfc4475_rows

CORPUS = [(RFC4475 / r["file"]).read_bytes() for r in rfc4475_rows()]
FACTORY = PoolFactory(malloc_debug=True)

SIP_ALPHABET = st.sampled_from(
    [
        *(
            b"\r\n",
            b" ",
            b":",
            b";",
            b",",
            b"<",
            b">",
            b'"',
            b"\\",
            b"=",
            b"@",
            b"/",
            b"%",
            b"\t",
            b"\x00",
            b"\xff",
        ),
        *(
            b"INVITE",
            b"SIP/2.0",
            b"Via",
            b"Content-Length",
            b"l",
            b"0",
            b"9999",
            b"-1",
            b"sip:",
            b"tag",
            b"branch",
        ),
    ]
)


def check_invariant(data: bytes) -> None:
    try:
        msg = parse_message(data)
        msg.parse_all()
        _ = msg.top_via, msg.from_, msg.to, msg.cseq, msg.call_id, msg.content_type
        msg.serialize()
    except ParseError:
        pass
    before = FACTORY.statistics().used_size
    screen_datagram(data, FACTORY)
    assert FACTORY.statistics().used_size == before


def frame_in_chunks(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    pos = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            for frame in framer.feed(data[pos:cut]):
                if isinstance(frame, bytes):
                    check_invariant(frame)
            pos = cut
    except ParseError:
        assert framer.broken


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check_invariant(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(SIP_ALPHABET, max_size=80).map(b"".join))
def test_sip_shaped_bytes(data: bytes) -> None:
    check_invariant(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    check_invariant(b"SIP/2.0 200 OK\r\n" + data)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(CORPUS))),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_mutated_corpus_whole_and_chunked(index: int, flips: list[tuple[int, int]], cuts: list[int]) -> None:
    data = bytearray(CORPUS[index])
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    check_invariant(bytes(data))
    frame_in_chunks(bytes(data), [c % (len(data) + 1) for c in cuts])


def test_corpus_mutations_deterministic_sweep() -> None:
    """A fixed-seed sweep that deletes, duplicates and truncates lines of every message."""
    rng = random.Random(4475)
    for data in CORPUS:
        lines = data.split(b"\r\n")
        for _ in range(40):
            mutated = list(lines)
            op = rng.randrange(3)
            i = rng.randrange(len(mutated))
            if op == 0:
                del mutated[i]
            elif op == 1:
                mutated.insert(i, mutated[i])
            else:
                mutated[i] = mutated[i][: rng.randrange(len(mutated[i]) + 1)]
            check_invariant(b"\r\n".join(mutated))
    assert not FACTORY.leak_report()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_sdp_parses_or_raises_its_error(data: bytes) -> None:
    try:
        parse_sdp(b"v=0\r\n" + data)
    except ParseError:
        pass


UNICODE_DIGITS = ["²", "١", "٣٢", "𝟗"]


def test_unicode_digits_are_not_numbers() -> None:
    """str.isdigit() accepts these and int() refuses some: every parser must say ParseError."""
    for d in UNICODE_DIGITS:
        for text in (
            f"v=0\r\no=a b {d} IN IP4 x\r\ns=-\r\n",
            f"v=0\r\no=a b 1 IN IP4 x\r\ns=-\r\nt={d} 0\r\n",
            f"v=0\r\no=a b 1 IN IP4 x\r\ns=-\r\nm=audio {d} RTP/AVP 0\r\n",
            f"v=0\r\no=a b 1 IN IP4 x\r\ns=-\r\nm=audio 1/{d} RTP/AVP 0\r\n",
        ):
            try:
                parse_sdp(text)
            except ParseError:
                pass
        for header in (
            f'Warning: {d}{d}{d} host "x"',
            f"Content-Length: {d}",
            f"Max-Forwards: {d}",
            f"CSeq: {d} INVITE",
            f"Via: SIP/2.0/UDP h:{d}",
            f"Contact: <sip:a@b:{d}>",
        ):
            check_invariant(f"OPTIONS sip:a@b SIP/2.0\r\n{header}\r\n\r\n".encode())
