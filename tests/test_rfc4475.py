"""RFC 4475 torture messages: the parse column, and the response codes the sanity layer owns."""

from __future__ import annotations

import pytest

from invsess.memory import PoolFactory
from invsess.sip import ParseError, Response, StreamFramer, parse_message, screen_datagram

from .conftest import RFC4475, rfc4475_rows

ROWS = rfc4475_rows()
#: Outcomes decided by the syntax and sanity layers (the others - 501, 405, 415, 406, 200,
#: process - are the endpoint's, checked with the transaction layer).
SANITY_CODES = {"400": 400, "416": 416, "420-with-Unsupported": 420, "505": 505, "501-or-400": 400}


def test_corpus_is_complete() -> None:
    assert len(ROWS) == 49
    for row in ROWS:
        assert (RFC4475 / row["file"]).is_file(), row["file"]


def parse_fully(data: bytes):
    msg = parse_message(data)
    msg.parse_all()
    return msg


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_parse_column(row: dict[str, str]) -> None:
    data = (RFC4475 / row["file"]).read_bytes()
    if row["parse"] == "accept":
        parse_fully(data)
    elif row["parse"] == "reject":
        with pytest.raises(ParseError):
            parse_fully(data)
    else:  # either: whatever happens, it is a parse or a ParseError, never another exception
        try:
            parse_fully(data)
        except ParseError:
            pass


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_accepted_messages_round_trip_unchanged(row: dict[str, str]) -> None:
    data = (RFC4475 / row["file"]).read_bytes()
    try:
        msg = parse_message(data)
    except ParseError:
        return
    assert data.startswith(msg.serialize())  # dblreq: only the first message's bytes


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r["outcome"] in SANITY_CODES],
    ids=[r["file"] for r in ROWS if r["outcome"] in SANITY_CODES],
)
def test_sanity_outcome(row: dict[str, str]) -> None:
    factory = PoolFactory(malloc_debug=True)
    screening = screen_datagram((RFC4475 / row["file"]).read_bytes(), factory)
    assert screening.outcome == "reply"
    assert screening.status_code == SANITY_CODES[row["outcome"]]
    assert screening.reply is not None
    reply = parse_message(screening.reply)
    assert isinstance(reply, Response)
    assert reply.status_code == SANITY_CODES[row["outcome"]]
    if row["outcome"] == "420-with-Unsupported":  # a UAS checks Require (Proxy-Require is for proxies)
        assert reply.unsupported == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert not factory.leak_report()


@pytest.mark.parametrize("name", ["scalarlg.dat", "bigcode.dat"])
def test_bad_responses_are_dropped(name: str) -> None:
    factory = PoolFactory(malloc_debug=True)
    screening = screen_datagram((RFC4475 / name).read_bytes(), factory)
    assert screening.outcome == "drop"
    assert screening.reply is None


def test_every_file_screens_without_leaking() -> None:
    factory = PoolFactory(malloc_debug=True)
    start = factory.statistics()
    for row in ROWS:
        screen_datagram((RFC4475 / row["file"]).read_bytes(), factory)
    assert factory.statistics().used_size == start.used_size
    assert not factory.leak_report()


def test_dblreq_only_the_first_message_counts() -> None:
    msg = parse_message((RFC4475 / "dblreq.dat").read_bytes())
    assert msg.method == "REGISTER"  # type: ignore[union-attr]
    assert msg.body == b""


@pytest.mark.parametrize("row", [r for r in ROWS if r["parse"] == "accept"], ids=lambda r: r["file"])
def test_accepted_messages_frame_byte_by_byte(row: dict[str, str]) -> None:
    data = (RFC4475 / row["file"]).read_bytes()
    msg = parse_message(data)
    if msg.content_length is None:
        return  # stream framing needs Content-Length (inv2543 is a UDP-only message)
    wire = msg.serialize()
    framer = StreamFramer()
    frames = []
    for i in range(len(wire)):
        frames += framer.feed(wire[i : i + 1])
    assert frames == [wire]
