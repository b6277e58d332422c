"""Request sanity checks, modelled on Kamailio's ``sanity`` module (same bits, same answers).

:func:`check_request` runs the checks selected by a bit mask and returns the first failure with
the response it deserves; :func:`screen_datagram` does the whole job for one received datagram
(parse into a pool of its own, validate, check, build the answer) and releases everything it
allocated on every path: Kamailio's Proxy-Require leak (GH #1990), where a failed check skipped
a free, is what its tests make sure never happens here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

import attrs

from invsess.memory import PoolFactory
from invsess.sip.builder import make_response
from invsess.sip.errors import ParseError
from invsess.sip.message import Request, Response
from invsess.sip.parser import DEFAULT_LIMITS, ParserLimits, parse_message, salvage_request


class Check(enum.IntFlag):
    """Kamailio's check bits; ``REQUIRE`` is invsess's own UAS check (RFC 3261 §8.2.2.3)."""

    RURI_SIP_VERSION = 1
    RURI_SCHEME = 2
    REQUIRED_HEADERS = 4
    VIA_SIP_VERSION = 8
    VIA_PROTOCOL = 16
    CSEQ_METHOD = 32
    CSEQ_VALUE = 64
    CONTENT_LENGTH = 128
    EXPIRES_VALUE = 256
    PROXY_REQUIRE = 512
    PARSE_URIS = 1024
    DIGEST = 2048
    DUPLICATE_TAGS = 4096
    AUTHORIZATION = 8192
    REQUIRE = 1 << 16


#: Kamailio's default (3047): every check but 8, 16, 1024, 4096 and 8192.
DEFAULT_CHECKS = Check(3047)
#: What a user agent server runs: Kamailio's default, with Require checked instead of
#: Proxy-Require (RFC 3261 §8.2.2.3: a UAS ignores Proxy-Require; that one is for proxies).
UAS_CHECKS = (DEFAULT_CHECKS & ~Check.PROXY_REQUIRE) | Check.REQUIRE

_SCHEMES = frozenset({"sip", "sips", "tel"})
_REQUIRED = ("From", "To", "Call-ID", "CSeq", "Via")


@attrs.frozen
class SanityFailure:
    """A failed check and the answer it deserves (``headers`` go into the response)."""

    check: Check
    status_code: int
    reason: str
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def check_request(
    request: Request,
    checks: Check = DEFAULT_CHECKS,
    *,
    proxy_require: Iterable[str] = (),
    supported: Iterable[str] = (),
) -> SanityFailure | None:
    """Run the selected checks in Kamailio's order; the first failure, or None."""
    for check, run in _CHECKS:
        if checks & check:
            try:
                failure = run(request, proxy_require, supported)
            except ParseError as exc:
                failure = SanityFailure(check, exc.status_code, _PARSE_REASONS[check], str(exc))
            if failure is not None:
                return failure
    return None


def _ruri_version(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    if req.version != "SIP/2.0":
        return SanityFailure(Check.RURI_SIP_VERSION, 505, "Version Not Supported", req.version)
    return None


def _ruri_scheme(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    uri = req.uri
    if uri.scheme not in _SCHEMES:
        return SanityFailure(Check.RURI_SCHEME, 416, "Unsupported URI Scheme in Request URI", uri.scheme)
    return None


def _required_headers(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    for name in _REQUIRED:
        n = req.headers.count(name)
        if n == 0:
            return SanityFailure(Check.REQUIRED_HEADERS, 400, "Missing Required Header in Request", name)
        if n > 1 and name != "Via":
            return SanityFailure(Check.REQUIRED_HEADERS, 400, f"Duplicate {name} header", name)
    return None


def _via_version(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    for via in req.via:
        if f"{via.protocol}/{via.version}" != "SIP/2.0":
            return SanityFailure(Check.VIA_SIP_VERSION, 505, "Version Not Supported (Via)", str(via))
    return None


def _via_protocol(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    top = req.top_via
    if top is not None and top.transport not in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS"):
        return SanityFailure(Check.VIA_PROTOCOL, 400, "Unsupported Transport in Topmost Via", top.transport)
    return None


def _cseq_method(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    cseq = req.cseq
    if cseq is not None and cseq.method != req.method:
        return SanityFailure(Check.CSEQ_METHOD, 400, "CSeq method does not match request method", str(cseq))
    return None


def _cseq_value(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    req.headers.parsed("CSeq")  # the parser enforces 1*DIGIT below 2**31
    return None


def _content_length(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    length = req.content_length
    if length is not None and length != len(req.body):
        return SanityFailure(
            Check.CONTENT_LENGTH, 400, "Content-Length mis-match", f"{length} != {len(req.body)}"
        )
    return None


def _expires(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    req.headers.parsed("Expires")
    return None


def _unsupported(
    check: Check, wanted: list[str], known: Iterable[str], code_reason: str
) -> SanityFailure | None:
    have = {k.lower() for k in known}
    missing = [tag for tag in wanted if tag.lower() not in have]
    if missing:
        return SanityFailure(
            check, 420, code_reason, ", ".join(missing), (("Unsupported", ", ".join(missing)),)
        )
    return None


def _proxy_require(req: Request, proxy_require: Iterable[str], _s: Iterable[str]) -> SanityFailure | None:
    return _unsupported(Check.PROXY_REQUIRE, req.proxy_require, proxy_require, "Bad Proxy Require Extension")


def _parse_uris(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    readers: tuple[tuple[str, Callable[[], object]], ...] = (
        ("Bad Request URI", lambda: req.uri),
        ("Invalid From Header", lambda: req.from_),
        ("Invalid To Header", lambda: req.to),
        ("Bad Contact Header", lambda: req.contact),
    )
    for reason, read in readers:
        try:
            read()  # reading parses: the check is that it does not raise
        except ParseError as exc:
            return SanityFailure(Check.PARSE_URIS, 400, reason, str(exc))
    return None


def _digest(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    for name in ("Authorization", "Proxy-Authorization"):
        for cred in req.headers.parsed(name):
            if cred.scheme.lower() == "digest" and not cred.param("username"):
                return SanityFailure(Check.DIGEST, 400, "Bad Credentials", f"{name} without username")
    return None


def _duplicate_tags(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    for name in ("From", "To"):
        addr = req.headers.parsed(name)
        if addr is not None and sum(1 for k, _ in addr.params if k.lower() == "tag") > 1:
            return SanityFailure(Check.DUPLICATE_TAGS, 400, f"Duplicate tag in {name}", str(addr))
    return None


def _authorization(req: Request, *_: Iterable[str]) -> SanityFailure | None:
    req.headers.parsed("Authorization")
    req.headers.parsed("Proxy-Authorization")
    return None


def _require(req: Request, _p: Iterable[str], supported: Iterable[str]) -> SanityFailure | None:
    if req.method in ("ACK", "CANCEL"):  # RFC 3261 §8.2.2.3: their Require is ignored
        return None
    return _unsupported(Check.REQUIRE, req.require, supported, "Bad Extension")


_CHECKS = (
    (Check.RURI_SIP_VERSION, _ruri_version),
    (Check.RURI_SCHEME, _ruri_scheme),
    (Check.REQUIRED_HEADERS, _required_headers),
    (Check.VIA_SIP_VERSION, _via_version),
    (Check.VIA_PROTOCOL, _via_protocol),
    (Check.CSEQ_METHOD, _cseq_method),
    (Check.CSEQ_VALUE, _cseq_value),
    (Check.CONTENT_LENGTH, _content_length),
    (Check.EXPIRES_VALUE, _expires),
    (Check.PROXY_REQUIRE, _proxy_require),
    (Check.PARSE_URIS, _parse_uris),
    (Check.DIGEST, _digest),
    (Check.DUPLICATE_TAGS, _duplicate_tags),
    (Check.AUTHORIZATION, _authorization),
    (Check.REQUIRE, _require),
)

#: Kamailio's answer when a check cannot even parse what it checks.
_PARSE_REASONS = {
    Check.RURI_SIP_VERSION: "Bad Request URI",
    Check.RURI_SCHEME: "Bad Request URI",
    Check.REQUIRED_HEADERS: "Bad Headers",
    Check.VIA_SIP_VERSION: "Bad Via Header",
    Check.VIA_PROTOCOL: "Bad Via Header",
    Check.CSEQ_METHOD: "Bad CSeq Header",
    Check.CSEQ_VALUE: "CSeq number is illegal",
    Check.CONTENT_LENGTH: "Content-Length Failure",
    Check.EXPIRES_VALUE: "Expires value is illegal",
    Check.PROXY_REQUIRE: "Bad Proxy Require Header",
    Check.PARSE_URIS: "Bad Request URI",
    Check.DIGEST: "Bad Credentials",
    Check.DUPLICATE_TAGS: "Bad From/To Header",
    Check.AUTHORIZATION: "Bad Authorization Header",
    Check.REQUIRE: "Bad Require Header",
}


def response_for(request: Request, failure: SanityFailure, *, to_tag: str | None = None) -> Response:
    """The answer to a failed check (None is never returned: ACKs are filtered by the caller)."""
    return make_response(request, failure.status_code, failure.reason, to_tag=to_tag, headers=failure.headers)


@attrs.frozen
class Screening:
    """What :func:`screen_datagram` decided: ``reply`` bytes to send back, or ``drop``, or ``ok``."""

    outcome: str  # "ok", "reply", "drop"
    status_code: int | None = None
    reason: str = ""
    reply: bytes | None = None
    is_request: bool = True


def screen_datagram(
    data: bytes,
    factory: PoolFactory,
    *,
    checks: Check = UAS_CHECKS,
    limits: ParserLimits = DEFAULT_LIMITS,
    proxy_require: Iterable[str] = (),
    supported: Iterable[str] = (),
    to_tag: str = "invsess-sanity",
) -> Screening:
    """Parse, validate and sanity-check one datagram in a pool of its own, then free it all.

    A request that fails is answered (never an ACK); a response that fails is dropped, as is
    anything without a readable request line.
    """
    pool = factory.create_pool("rx-msg", 4096, 4096)
    try:
        try:
            msg = parse_message(data, limits=limits, pool=pool)
            msg.parse_all()
        except ParseError as exc:
            salvaged = salvage_request(data, limits=limits)
            if salvaged is None or salvaged.method == "ACK":
                return Screening("drop", exc.status_code, exc.reason, is_request=salvaged is not None)
            answer = make_response(salvaged, exc.status_code, exc.reason, to_tag=to_tag)
            return Screening("reply", exc.status_code, exc.reason, answer.serialize())
        if isinstance(msg, Response):
            return Screening("ok", is_request=False)
        failure = check_request(msg, checks, proxy_require=proxy_require, supported=supported)
        if failure is None:
            return Screening("ok")
        if msg.method == "ACK":
            return Screening("drop", failure.status_code, failure.reason)
        reply = response_for(msg, failure, to_tag=to_tag).serialize()
        return Screening("reply", failure.status_code, failure.reason, reply)
    finally:
        pool.release("message screened")
