"""A real call flow (RFC 3665 §3.1 shape: INVITE/100/180/200/ACK/BYE/200), for benchmarks."""

from __future__ import annotations

SDP_OFFER = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\n"
    "m=audio 49172 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)
SDP_ANSWER = SDP_OFFER.replace("alice", "bob").replace("192.0.2.101", "192.0.2.201").replace("49172", "3456")

_VIA = "Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport\r\n"
_VIA_ACK = "Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bfa;rport\r\n"
_VIA_BYE = "Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bfb;rport\r\n"
_FROM = "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
_TO = "To: Bob <sip:bob@biloxi.example.com>\r\n"
_TO_TAG = "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
_CALLID = "Call-ID: 3848276298220188511@atlanta.example.com\r\n"


def _msg(start: str, *headers: str, body: str = "", ctype: bool = True) -> bytes:
    extra = "Content-Type: application/sdp\r\n" if body and ctype else ""
    return (
        start + "\r\n" + "".join(headers) + extra + f"Content-Length: {len(body)}\r\n\r\n" + body
    ).encode()


CALL_FLOW: list[bytes] = [
    _msg(
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        _VIA,
        "Max-Forwards: 70\r\n",
        _FROM,
        _TO,
        _CALLID,
        "CSeq: 1 INVITE\r\n",
        "Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n",
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK\r\n",
        "Supported: timer, 100rel, replaces\r\n",
        "Session-Expires: 1800;refresher=uac\r\n",
        "User-Agent: invsess-benchmark\r\n",
        body=SDP_OFFER,
    ),
    _msg("SIP/2.0 100 Trying", _VIA, _FROM, _TO, _CALLID, "CSeq: 1 INVITE\r\n"),
    _msg(
        "SIP/2.0 180 Ringing",
        _VIA,
        _FROM,
        _TO_TAG,
        _CALLID,
        "Contact: <sip:bob@client.biloxi.example.com;transport=udp>\r\n",
        "CSeq: 1 INVITE\r\n",
    ),
    _msg(
        "SIP/2.0 200 OK",
        _VIA,
        _FROM,
        _TO_TAG,
        _CALLID,
        "CSeq: 1 INVITE\r\n",
        "Contact: <sip:bob@client.biloxi.example.com;transport=udp>\r\n",
        "Require: timer\r\n",
        "Session-Expires: 1800;refresher=uac\r\n",
        body=SDP_ANSWER,
    ),
    _msg(
        "ACK sip:bob@client.biloxi.example.com SIP/2.0",
        _VIA_ACK,
        "Max-Forwards: 70\r\n",
        _FROM,
        _TO_TAG,
        _CALLID,
        "CSeq: 1 ACK\r\n",
    ),
    _msg(
        "BYE sip:bob@client.biloxi.example.com SIP/2.0",
        _VIA_BYE,
        "Max-Forwards: 70\r\n",
        _FROM,
        _TO_TAG,
        _CALLID,
        "CSeq: 2 BYE\r\n",
    ),
    _msg("SIP/2.0 200 OK", _VIA_BYE, _FROM, _TO_TAG, _CALLID, "CSeq: 2 BYE\r\n"),
]
