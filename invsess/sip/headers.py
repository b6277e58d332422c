"""Typed header values and the registry that maps header names to their parsers.

Each parser takes one header *element* (a comma-separated header is split first when its
grammar allows it) and returns a frozen value whose ``str()`` is its canonical serialisation.
Unknown headers are never parsed: they are kept verbatim, in order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import attrs

from invsess.sip.errors import ParseError
from invsess.sip.grammar import (
    Params,
    Scanner,
    format_params,
    has_param,
    is_digits,
    is_token,
    param,
    parse_uint,
    quote,
    set_params,
    split_flat_params,
    unquote_param,
)
from invsess.sip.uri import SipUri, Uri, parse_uri

MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5
MAX_DELTA = 2**32 - 1  # delta-seconds
MAX_FORWARDS = 255  # RFC 4475 §3.1.2.4

#: RFC 3261 §7.3.3 and the IANA registry: compact form -> canonical name.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Min-SE",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        *COMPACT_FORMS.values(),
    )
}


def canonical_name(name: str) -> str:
    """The full, conventionally capitalised name: ``v`` -> ``Via``, ``call-id`` -> ``Call-ID``."""
    if len(name) == 1:
        full = COMPACT_FORMS.get(name.lower())
        if full is not None:
            return full
    known = _CANONICAL.get(name.lower())
    if known is not None:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


# ---------------------------------------------------------------------------------------------
# Values


@attrs.frozen
class NameAddress:
    """``[display-name] <uri> *(;param)`` as in From, To, Contact, Route, Record-Route."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        display = ""
        if self.display_name is not None:
            display = (self.display_name if is_token(self.display_name) else quote(self.display_name)) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From/To); of several (``;tag=a;tag=b``, a broken peer), the
        last, as PJSIP's parser keeps it. A strict server turns such requests away with the
        ``Check.DUPLICATE_TAGS`` sanity check instead."""
        found = [v for k, v in self.params if k.lower() == "tag"]
        if not found:
            return None
        return unquote_param("" if found[-1] is None else found[-1])

    def param(self, name: str) -> str | None:
        """A header parameter's value, unquoted; '' for a flag; None when absent."""
        return unquote_param(param(self.params, name))

    def with_tag(self, tag: str) -> NameAddress:
        """A copy with ``tag`` set (replacing any)."""
        params = (*(p for p in self.params if p[0].lower() != "tag"), ("tag", tag))
        return attrs.evolve(self, params=params)


@attrs.frozen
class ContactStar:
    """``Contact: *`` (REGISTER removal of all bindings)."""

    def __str__(self) -> str:
        return "*"


@attrs.frozen
class Via:
    """One Via element: ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP"
    version: str = "2.0"

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return (
            f"{self.protocol}/{self.version}/{self.transport} {self.host}{port}{format_params(self.params)}"
        )

    def param(self, name: str) -> str | None:
        """A Via parameter's value ('' for a flag such as a bare ``rport``), None when absent."""
        return param(self.params, name)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter."""
        return self.param("received")

    @property
    def rport(self) -> int | bool | None:
        """None when absent, True when present without a value (RFC 3581), else the port."""
        value = self.param("rport")
        if value is None:
            return None
        if not value:
            # A return of its own: in a conditional expression mypy types True as int, and the
            # compiled build would then return 1.
            return True
        return int(value)

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter."""
        return self.param("maddr")

    def with_params(self, **changes: str | None) -> Via:
        """A copy with parameters set (None: a flag), order kept, new ones appended."""
        return attrs.evolve(self, params=set_params(self.params, changes))


@attrs.frozen
class CSeq:
    """``CSeq: number METHOD``."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@attrs.frozen
class MediaType:
    """``type/subtype;params`` (Content-Type, Accept elements)."""

    type: str
    subtype: str
    params: Params = ()

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{format_params(self.params)}"

    @property
    def mime(self) -> str:
        """``type/subtype`` lower-cased, without parameters."""
        return f"{self.type}/{self.subtype}".lower()

    def param(self, name: str) -> str | None:
        """A parameter's value, unquoted."""
        return unquote_param(param(self.params, name))


@attrs.frozen
class RAck:
    """``RAck: rseq cseq METHOD`` (RFC 3262)."""

    rseq: int
    cseq: int
    method: str

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


@attrs.frozen
class SessionExpires:
    """``Session-Expires: delta;refresher=uac|uas`` (RFC 4028)."""

    delta: int
    refresher: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        refresher = f";refresher={self.refresher}" if self.refresher else ""
        return f"{self.delta}{refresher}{format_params(self.params)}"


@attrs.frozen
class MinSE:
    """``Min-SE: delta`` (RFC 4028)."""

    delta: int
    params: Params = ()

    def __str__(self) -> str:
        return f"{self.delta}{format_params(self.params)}"


@attrs.frozen
class RetryAfter:
    """``Retry-After: delta [(comment)] ;params``."""

    delta: int
    comment: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        comment = f" ({self.comment})" if self.comment is not None else ""
        return f"{self.delta}{comment}{format_params(self.params)}"


@attrs.frozen
class Warning:  # the header's name; a value class, never raised (shadows the builtin on purpose)
    """One ``Warning`` element: ``code agent "text"``."""

    code: int
    agent: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.agent} {quote(self.text)}"


@attrs.frozen
class Credentials:
    """Authorization / Proxy-Authorization / WWW-Authenticate / Proxy-Authenticate values.

    ``params`` keep their quoting as received; :meth:`param` unquotes. Unknown schemes are kept
    with whatever parameters they carry (RFC 4475 regaut01).
    """

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.scheme} " + ", ".join(f"{k}={v}" for k, v in self.params)

    def param(self, name: str) -> str | None:
        """A parameter's value, unquoted; None when absent."""
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return unquote_param(v)
        return None


# ---------------------------------------------------------------------------------------------
# Parsers (one element each)


# Fast paths: one compiled match for the shapes nearly every message uses. Anything they do not
# match (quoted parameter values, escapes, IPv6, LWS in odd places) takes the full grammar, and so
# does anything split_flat_params refuses. Parameters are matched as one run of characters (see
# split_flat_params), display names as one run of token characters and spaces: the regex engine
# repeats a character class many times faster than a group.
#: RFC 3261 token characters, as a regex class body (what every fast pattern below builds on).
_TCHAR = r"A-Za-z0-9\-.!%*_+`'~"
_TOK = rf"[{_TCHAR}]+"
_FAST_PARAMS = rf"((?:;[{_TCHAR}=;]*)?)"
_FAST_VIA = re.compile(rf"SIP/2\.0/({_TOK}) ([A-Za-z0-9\-.]+)(?::([0-9]{{1,5}}))?{_FAST_PARAMS}\Z")
_FAST_NAME_ADDR = re.compile(rf'(?:"([^"\\]*)" ?|([{_TCHAR} ]*))<([^<>"\s]+)>{_FAST_PARAMS}\Z')
_FAST_ADDR_SPEC = re.compile(rf'([A-Za-z][A-Za-z0-9+\-.]*:[^;<>"\s,]+){_FAST_PARAMS}\Z')
_FAST_MEDIA_TYPE = re.compile(rf"({_TOK})/({_TOK}){_FAST_PARAMS}\Z")
_FAST_DELTA = re.compile(rf"([0-9]+){_FAST_PARAMS}\Z")


def parse_name_address(value: str, header: str | None = None) -> NameAddress:
    """``name-addr / addr-spec`` followed by header parameters."""
    m = _FAST_NAME_ADDR.match(value)
    if m is not None:
        quoted, words, uri_text, param_text = m.groups()
        params = split_flat_params(param_text)
        if params is not None:
            if quoted is None:
                # The slow path's rule: the words before '<', one space between each.
                display = " ".join(words.split()) or None
            else:
                display = quoted
            return NameAddress(parse_uri(uri_text, header), display, params)
    else:
        m = _FAST_ADDR_SPEC.match(value)
        if m is not None:
            params = split_flat_params(m.group(2))
            if params is not None:
                return NameAddress(parse_uri(m.group(1), header), None, params)
    return _parse_name_address_slow(value, header)


def _parse_name_address_slow(value: str, header: str | None) -> NameAddress:
    s = Scanner(value, header)
    s.skip_lws()
    display: str | None = None
    if s.peek() == '"':
        display = s.quoted_string()
        s.skip_lws()
        if s.peek() != "<":
            raise s.error("expected '<' after display name")
    else:
        lt = value.find("<", s.pos)
        if lt >= 0:
            words = value[s.pos : lt].split()
            if any(not is_token(w) for w in words):
                raise ParseError(f"display name must be tokens or a quoted string: {value!r}", header=header)
            display = " ".join(words) or None
            s.pos = lt
    if s.peek() == "<":
        s.pos += 1
        end = value.find(">", s.pos)
        if end < 0:
            raise s.error("expected '>'")
        uri_text = value[s.pos : end]
        if uri_text != uri_text.strip():
            raise ParseError(f"white space inside <> in {value!r}", header=header)
        uri = parse_uri(uri_text, header)
        s.pos = end + 1
    else:
        # addr-spec: the URI runs to the first ';' (those parameters belong to the header).
        start = s.pos
        uri_text = s.until(";").strip()
        if not uri_text or any(c in uri_text for c in " \t,"):
            raise ParseError(f"invalid address {value[start:]!r}", header=header)
        uri = parse_uri(uri_text, header)
    params = s.params()
    if not s.at_end():
        raise s.error("unexpected text after address")
    return NameAddress(uri, display, params)


def parse_contact(value: str, header: str | None = "Contact") -> NameAddress | ContactStar:
    """A Contact element, or ``*``."""
    if value.strip() == "*":
        return ContactStar()
    addr = parse_name_address(value, header)
    expires = addr.param("expires")
    if expires is not None:
        parse_uint(expires, "Contact expires", maximum=MAX_DELTA, header=header)
    return addr


def parse_via(value: str, header: str | None = "Via") -> Via:
    """``sent-protocol LWS sent-by *( SEMI via-params )`` with LWS allowed around the slashes."""
    m = _FAST_VIA.match(value)
    if m is not None:
        transport, host, port_text, param_text = m.groups()
        params = split_flat_params(param_text)
        if params is not None:
            port_number = int(port_text) if port_text else None
            if port_number is not None and port_number > 65535:
                raise ParseError(f"Via port {port_number} is larger than 65535", header=header)
            via = Via(transport.upper(), host, port_number, params)
            _check_via_params(via, header)
            return via
    return _parse_via_slow(value, header)


def _parse_via_slow(value: str, header: str | None) -> Via:
    s = Scanner(value, header)
    protocol = s.token("protocol name")
    s.expect("/")
    version = s.token("protocol version")
    s.expect("/")
    transport = s.token("transport")
    s.skip_lws()
    if s.peek() == "[":
        end = value.find("]", s.pos)
        if end < 0:
            raise s.error("unterminated IPv6 reference")
        host = value[s.pos : end + 1]
        s.pos = end + 1
    else:
        host = s.token("host")
        if ":" in host:  # the token regex does not take ':', but be explicit
            raise s.error("invalid host")
    port: int | None = None
    if s.accept(":"):
        port = parse_uint(s.token("port"), "Via port", maximum=65535, header=header)
    params = s.params()
    if not s.at_end():
        raise s.error("unexpected text in Via")
    via = Via(transport.upper(), host, port, params, protocol.upper(), version)
    _check_via_params(via, header)
    return via


def _check_via_params(via: Via, header: str | None) -> None:
    for name, value in via.params:
        lname = name.lower()
        if lname == "branch" and not value:
            raise ParseError("empty Via branch", header=header)
        if lname == "received" and value is not None:
            try:
                ipaddress.ip_address(value.strip("[]"))
            except ValueError:
                raise ParseError(f"Via received is not an IP address: {value!r}", header=header) from None
        if lname == "rport" and value:
            parse_uint(value, "Via rport", maximum=65535, header=header)
        if lname == "ttl":
            parse_uint(value or "", "Via ttl", maximum=255, header=header)


def parse_cseq(value: str, header: str | None = "CSeq") -> CSeq:
    """``1*DIGIT LWS Method`` with the number below 2**31."""
    parts = value.split()
    if len(parts) != 2 or not is_token(parts[1]):
        raise ParseError(f"invalid CSeq {value!r}", header=header)
    return CSeq(parse_uint(parts[0], "CSeq number", maximum=MAX_CSEQ, header=header), parts[1])


_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")


def parse_call_id(value: str, header: str | None = "Call-ID") -> str:
    """``word [ "@" word ]``."""
    value = value.strip()
    if _CALL_ID_RE.match(value) is None:
        raise ParseError(f"invalid Call-ID {value!r}", header=header)
    return value


def parse_media_type(value: str, header: str | None = "Content-Type") -> MediaType:
    """``type "/" subtype *( SEMI m-parameter )``."""
    m = _FAST_MEDIA_TYPE.match(value)
    if m is not None:
        params = split_flat_params(m.group(3))
        if params is not None:
            return MediaType(m.group(1), m.group(2), params)
    return _parse_media_type_slow(value, header)


def _parse_media_type_slow(value: str, header: str | None) -> MediaType:
    s = Scanner(value, header)
    mtype = s.token("media type")
    s.expect("/")
    subtype = s.token("media subtype")
    params = s.params()
    if not s.at_end():
        raise s.error("unexpected text in media type")
    return MediaType(mtype, subtype, params)


def parse_accept(value: str, header: str | None = "Accept") -> MediaType:
    """An Accept element: a media range (``*/*``, ``application/*`` allowed)."""
    return parse_media_type(value, header)


def parse_token(value: str, header: str | None = None) -> str:
    """One option tag or method (Require, Supported, Allow, ...)."""
    value = value.strip()
    if not is_token(value):
        raise ParseError(f"not a token: {value!r}", header=header)
    return value


def bounded_uint(maximum: int) -> Callable[[str, str | None], int]:
    """A parser for ``1*DIGIT`` headers with an upper bound."""

    def parse(value: str, header: str | None = None) -> int:
        return parse_uint(value, header or "value", maximum=maximum, header=header)

    return parse


def parse_rack(value: str, header: str | None = "RAck") -> RAck:
    """``response-num LWS CSeq-num LWS Method``."""
    parts = value.split()
    if len(parts) != 3 or not is_token(parts[2]):
        raise ParseError(f"invalid RAck {value!r}", header=header)
    return RAck(
        parse_uint(parts[0], "RAck rseq", maximum=MAX_DELTA, header=header),
        parse_uint(parts[1], "RAck cseq", maximum=MAX_CSEQ, header=header),
        parts[2],
    )


def parse_session_expires(value: str, header: str | None = "Session-Expires") -> SessionExpires:
    """``delta-seconds *( SEMI se-params )``."""
    delta, params = _delta_params(value, "Session-Expires", header)
    refresher = param(params, "refresher")
    if refresher is not None and refresher.lower() not in ("uac", "uas"):
        raise ParseError(f"invalid refresher {refresher!r}", header=header)
    others = tuple(p for p in params if p[0].lower() != "refresher")
    return SessionExpires(delta, refresher.lower() if refresher else None, others)


def parse_min_se(value: str, header: str | None = "Min-SE") -> MinSE:
    """``delta-seconds *( SEMI generic-param )``."""
    delta, params = _delta_params(value, "Min-SE", header)
    return MinSE(delta, params)


def _delta_params(value: str, what: str, header: str | None) -> tuple[int, Params]:
    """``delta-seconds *( SEMI generic-param )``, the shape Session-Expires and Min-SE share."""
    m = _FAST_DELTA.match(value)
    if m is not None:
        params = split_flat_params(m.group(2))
        if params is not None:
            return parse_uint(m.group(1), what, maximum=MAX_DELTA, header=header), params
    return _delta_params_slow(value, what, header)


def _delta_params_slow(value: str, what: str, header: str | None) -> tuple[int, Params]:
    s = Scanner(value, header)
    delta = parse_uint(s.until(";"), what, maximum=MAX_DELTA, header=header)
    params = s.params()
    if not s.at_end():
        raise s.error("unexpected text")
    return delta, params


def parse_retry_after(value: str, header: str | None = "Retry-After") -> RetryAfter:
    """``delta-seconds [ comment ] *( SEMI retry-param )``."""
    s = Scanner(value, header)
    delta = parse_uint(s.until("(;"), "Retry-After", maximum=MAX_DELTA, header=header)
    comment = None
    if s.accept("("):
        comment = s.until(")")
        s.expect(")")
    params = s.params()
    if not s.at_end():
        raise s.error("unexpected text")
    return RetryAfter(delta, comment, params)


def parse_warning(value: str, header: str | None = "Warning") -> Warning:
    """``warn-code SP warn-agent SP warn-text`` with a three-digit code."""
    s = Scanner(value, header)
    code_text = s.token("warn-code")
    if len(code_text) != 3 or not is_digits(code_text):
        raise ParseError(f"warn-code must be 3 digits: {code_text!r}", header=header)
    s.skip_lws()
    agent = s.until(" \t")
    if not agent:
        raise s.error("expected warn-agent")
    text = s.quoted_string()
    if not s.at_end():
        raise s.error("unexpected text")
    return Warning(int(code_text), agent, text)


def parse_credentials(value: str, header: str | None = "Authorization") -> Credentials:
    """``scheme LWS param *(COMMA param)``; values may be tokens or quoted strings."""
    s = Scanner(value, header)
    scheme = s.token("auth scheme")
    params: list[tuple[str, str]] = []
    s.skip_lws()
    while not s.at_end():
        name = s.token("auth parameter")
        s.expect("=")
        s.skip_lws()
        if s.peek() == '"':
            start = s.pos
            s.quoted_string()
            params.append((name, value[start : s.pos]))
        else:
            params.append((name, s.token("auth parameter value")))
        if not s.accept(","):
            break
    if not s.at_end():
        raise s.error("unexpected text in credentials")
    return Credentials(scheme, tuple(params))


def parse_route(value: str, header: str | None = "Route") -> NameAddress:
    """Route / Record-Route element: always a name-addr with a SIP URI."""
    addr = parse_name_address(value, header)
    if not isinstance(addr.uri, SipUri):
        raise ParseError(f"{header} needs a sip: or sips: URI: {value!r}", header=header)
    return addr


@attrs.frozen
class HeaderSpec:
    """How to parse one header: its parser and whether it holds a comma-separated list."""

    parse: Callable[[str, str | None], Any]
    multi: bool


#: Canonical name -> spec. Headers missing here are kept verbatim and never parsed.
HEADER_SPECS: dict[str, HeaderSpec] = {
    "Via": HeaderSpec(parse_via, True),
    "From": HeaderSpec(parse_name_address, False),
    "To": HeaderSpec(parse_name_address, False),
    "Call-ID": HeaderSpec(parse_call_id, False),
    "CSeq": HeaderSpec(parse_cseq, False),
    "Contact": HeaderSpec(parse_contact, True),
    "Route": HeaderSpec(parse_route, True),
    "Record-Route": HeaderSpec(parse_route, True),
    "Reply-To": HeaderSpec(parse_name_address, False),
    "Max-Forwards": HeaderSpec(bounded_uint(MAX_FORWARDS), False),
    "Content-Length": HeaderSpec(bounded_uint(MAX_DELTA), False),
    "Content-Type": HeaderSpec(parse_media_type, False),
    "Accept": HeaderSpec(parse_accept, True),
    "Expires": HeaderSpec(bounded_uint(MAX_DELTA), False),
    "Min-Expires": HeaderSpec(bounded_uint(MAX_DELTA), False),
    "Require": HeaderSpec(parse_token, True),
    "Proxy-Require": HeaderSpec(parse_token, True),
    "Supported": HeaderSpec(parse_token, True),
    "Unsupported": HeaderSpec(parse_token, True),
    "Allow": HeaderSpec(parse_token, True),
    "RSeq": HeaderSpec(bounded_uint(MAX_DELTA), False),
    "RAck": HeaderSpec(parse_rack, False),
    "Session-Expires": HeaderSpec(parse_session_expires, False),
    "Min-SE": HeaderSpec(parse_min_se, False),
    "Retry-After": HeaderSpec(parse_retry_after, False),
    "Warning": HeaderSpec(parse_warning, True),
    "Authorization": HeaderSpec(parse_credentials, False),
    "Proxy-Authorization": HeaderSpec(parse_credentials, False),
    "WWW-Authenticate": HeaderSpec(parse_credentials, False),
    "Proxy-Authenticate": HeaderSpec(parse_credentials, False),
}

#: Headers whose values may appear in several lines and are each one element (auth headers
#: hold commas inside a single value, so they are never split).
REPEATABLE_UNSPLIT = frozenset(
    {"Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate"}
)

__all__ = [
    "COMPACT_FORMS",
    "HEADER_SPECS",
    "REPEATABLE_UNSPLIT",
    "CSeq",
    "ContactStar",
    "Credentials",
    "HeaderSpec",
    "MediaType",
    "MinSE",
    "NameAddress",
    "RAck",
    "RetryAfter",
    "SessionExpires",
    "Via",
    "Warning",
    "canonical_name",
    "has_param",
    "parse_name_address",
    "parse_via",
]
