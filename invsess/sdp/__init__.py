"""SDP (RFC 8866): the model, parsing and serialisation. The offer/answer negotiator builds on it."""

from invsess.sdp.model import (
    DIRECTIONS,
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)
from invsess.sdp.negotiator import (
    NegotiatorInput,
    NegotiatorState,
    SdpNegotiationError,
    SdpNegotiator,
    locked_offer,
)
from invsess.sdp.parser import SdpParseError, parse_sdp

__all__ = [
    "DIRECTIONS",
    "Attribute",
    "Connection",
    "MediaDescription",
    "NegotiatorInput",
    "NegotiatorState",
    "Origin",
    "RtpMap",
    "SdpNegotiationError",
    "SdpNegotiator",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "locked_offer",
    "parse_sdp",
]
