"""SDP model: parse, serialise, accessors, errors."""

from __future__ import annotations

import pytest

from invsess.sdp import Attribute, RtpMap, SdpParseError, parse_sdp

OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"i=A call\r\n"
    b"c=IN IP4 host.atlanta.example.com\r\n"
    b"b=AS:64\r\n"
    b"t=0 0\r\n"
    b"r=604800 3600 0 90000\r\n"
    b"z=2882844526 -1h\r\n"
    b"a=sendonly\r\n"
    b"m=audio 49170 RTP/AVP 0 8 97 101\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:97 opus/48000/2\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=recvonly\r\n"
    b"m=video 0 RTP/AVP 31\r\n"
    b"m=application 9/2 UDP/BFCP *\r\n"
    b"y=unknown line kept\r\n"
)


def test_round_trip_and_accessors() -> None:
    sdp = parse_sdp(OFFER)
    assert sdp.serialize() == OFFER.replace(b"z=2882844526 -1h\r\n", b"").replace(
        b"a=sendonly\r\n", b"z=2882844526 -1h\r\na=sendonly\r\n"
    )
    assert sdp.origin.session_version == 2890844526
    assert sdp.connection is not None and sdp.connection.address == "host.atlanta.example.com"
    assert sdp.timings[0].repeats == ("604800 3600 0 90000",)
    audio, video, app = sdp.media
    assert audio.formats == ("0", "8", "97", "101")
    assert audio.rtpmaps()["97"] == RtpMap("97", "opus", 48000, 2)
    assert audio.fmtp("101") == "0-15"
    assert audio.fmtp("0") is None
    assert audio.attribute("ptime") == ["20"]
    assert audio.direction == "recvonly"
    assert sdp.direction == "sendonly"
    assert sdp.media_direction(0) == "recvonly"
    assert sdp.media_direction(1) == "sendonly"
    assert video.rejected
    assert app.port_count == 2
    assert app.extra == (("y", "unknown line kept"),)


def test_edits() -> None:
    sdp = parse_sdp(OFFER)
    held = sdp.media[0].with_direction("sendonly")
    assert held.direction == "sendonly"
    assert held.attributes[-1] == Attribute("sendonly")
    assert sdp.with_version(7).origin.session_version == 7
    with pytest.raises(ValueError, match="direction"):
        sdp.media[0].with_direction("sideways")


def test_lf_only_and_trailing_blank_lines() -> None:
    sdp = parse_sdp("v=0\no=- 1 1 IN IP4 0.0.0.0\ns=\nt=0 0\nm=audio 4000 RTP/AVP 0\n\n")
    assert sdp.session_name == " "
    assert sdp.media[0].port == 4000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=- 1 1 IN IP4 x\r\n",
        "v=1\r\no=- 1 1 IN IP4 x\r\n",
        "v=0\r\n",
        "v=0\r\no=- 1 x IN IP4 x\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\no=- 1 1 IN IP4 x\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nt=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nm=audio 1/x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nnot a line\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\nA=upper\r\n",
        "v=0\r\no=- 1 1 IN IP4 x\r\na=\r\n",
    ],
)
def test_errors(text: str) -> None:
    with pytest.raises(SdpParseError):
        parse_sdp(text)


def test_non_utf8() -> None:
    with pytest.raises(SdpParseError, match="UTF-8"):
        parse_sdp(b"v=0\r\no=\xff 1 1 IN IP4 x\r\n")
