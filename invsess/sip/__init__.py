"""SIP syntax: messages, headers, URIs; lazy parsing, serialisation, stream framing, sanity checks.

Sans-IO: bytes in, values out. See ``docs/syntax.md``.

The hot modules of this package may be compiled (mypyc, from this same source: see
``docs/performance-parsing.md``); :data:`COMPILED` says whether they are. Setting the environment
variable ``INVSESS_PURE_PYTHON=1`` before the first import runs the pure-Python modules even where
compiled ones are installed: the way to rule the compiled build out when chasing a bug, and how the
benchmarks and CI run both builds from one checkout.
"""

import os as _os
import warnings as _warnings
from pathlib import Path as _Path

from invsess.sip._build import compiled_modules as _compiled_modules
from invsess.sip._build import prefer_source as _prefer_source
from invsess.sip._build import stale_modules as _stale_modules

if _os.environ.get("INVSESS_PURE_PYTHON", "") not in ("", "0"):
    _prefer_source(__path__)
elif _stale := _stale_modules(_Path(__path__[0])):
    # Compiled in place by an editable install, then edited: the old code must not run unseen.
    _prefer_source(__path__)
    _warnings.warn(
        f"compiled modules older than their source: {', '.join(_stale)}; running pure Python. "
        "Rebuild with INVSESS_COMPILE=1 pip install -e . (or plain pip install -e . to drop them)",
        RuntimeWarning,
        stacklevel=2,
    )

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

#: True when the compiled build of the hot modules is the one running (see the module docstring).
COMPILED: bool = bool(_compiled_modules())

__all__ = [
    "COMPILED",
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
