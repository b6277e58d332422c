"""SIP syntax: messages, headers, URIs; lazy parsing, serialisation, stream framing, sanity checks.

Sans-IO: bytes in, values out. See ``docs/syntax.md``.
"""

from invsess.sip.builder import make_request, make_response
from invsess.sip.errors import (
    FramingError,
    LocalProtocolError,
    ParseError,
    ProtocolError,
    RemoteProtocolError,
)
from invsess.sip.framing import PING, PONG, KeepAlivePing, StreamFramer
from invsess.sip.headers import (
    ContactStar,
    Credentials,
    CSeq,
    MediaType,
    MinSE,
    NameAddress,
    RAck,
    RetryAfter,
    SessionExpires,
    Via,
    Warning,
    canonical_name,
)
from invsess.sip.message import HeaderField, Headers, Message, Request, Response, reason_phrase
from invsess.sip.parser import DEFAULT_LIMITS, ParserLimits, parse_message, salvage_request
from invsess.sip.sanity import (
    DEFAULT_CHECKS,
    UAS_CHECKS,
    Check,
    SanityFailure,
    Screening,
    check_request,
    response_for,
    screen_datagram,
)
from invsess.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "DEFAULT_CHECKS",
    "DEFAULT_LIMITS",
    "PING",
    "PONG",
    "UAS_CHECKS",
    "AbsoluteUri",
    "CSeq",
    "Check",
    "ContactStar",
    "Credentials",
    "FramingError",
    "HeaderField",
    "Headers",
    "KeepAlivePing",
    "LocalProtocolError",
    "MediaType",
    "Message",
    "MinSE",
    "NameAddress",
    "ParseError",
    "ParserLimits",
    "ProtocolError",
    "RAck",
    "RemoteProtocolError",
    "Request",
    "Response",
    "RetryAfter",
    "SanityFailure",
    "Screening",
    "SessionExpires",
    "SipUri",
    "StreamFramer",
    "TelUri",
    "Uri",
    "Via",
    "Warning",
    "canonical_name",
    "check_request",
    "make_request",
    "make_response",
    "parse_message",
    "parse_uri",
    "reason_phrase",
    "response_for",
    "salvage_request",
    "screen_datagram",
]
