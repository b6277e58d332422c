"""URIs: ``sip:``/``sips:`` (RFC 3261 §19.1), ``tel:`` (RFC 3966), anything else kept opaque.

Values are frozen attrs classes holding the text as it came (escaped), so a URI serialises back
to the same characters; :meth:`SipUri.unescaped_user` and friends decode on demand.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

import attrs

from invsess.sip.errors import ParseError
from invsess.sip.grammar import (
    Params,
    format_params,
    has_param,
    is_digits,
    param,
    set_params,
    split_flat_params,
)

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_ESCAPE = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPE})+\Z")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPE})*\Z")
_PARAM_CHARS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPE})+\Z")
_HEADER_CHARS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPE})*\Z")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?\Z"
)
_OPAQUE_BAD = frozenset(' \t\r\n<>"')
_TEL_RE = re.compile(r"[0-9A-Za-z+\-.()*#%]+\Z")

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


@attrs.frozen
class SipUri:
    """A ``sip:`` or ``sips:`` URI. ``user``, ``password``, params and headers are as on the wire."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    @property
    def secure(self) -> bool:
        """True for ``sips:``."""
        return self.scheme == "sips"

    @property
    def unescaped_user(self) -> str | None:
        """The user part with %-escapes decoded."""
        return None if self.user is None else unquote(self.user, errors="surrogateescape")

    def param(self, name: str) -> str | None:
        """A URI parameter's value ('' for a flag such as ``lr``), None when absent."""
        return param(self.params, name)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased."""
        value = self.param("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True if the URI carries ``lr`` (loose routing)."""
        return has_param(self.params, "lr")

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter."""
        return self.param("maddr")

    @property
    def host_port(self) -> tuple[str, int]:
        """Host (brackets removed) and port (scheme default when absent)."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    def with_params(self, **changes: str | None) -> SipUri:
        """A copy with parameters set (value None means a flag); order kept, new ones appended."""
        return attrs.evolve(self, params=set_params(self.params, changes))


@attrs.frozen
class TelUri:
    """A ``tel:`` URI: the number and its parameters."""

    number: str
    params: Params = ()
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"


@attrs.frozen
class AbsoluteUri:
    """Any other URI (``http:``, ``urn:``, ``isbn:``...), kept verbatim after the scheme."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | TelUri | AbsoluteUri


#: The common shape in one match: lower-case scheme, plain user, host name or IPv4, port, params.
#: Host and parameters are each matched as one run of characters (the regex engine walks a
#: class many times faster than it repeats a group); _plain_host and split_flat_params then
#: check their structure, and anything they refuse takes the full grammar.
_PARAM_CHARS = r"A-Za-z0-9\-_.!~*'()\[\]/:&+$"
_FAST_SIP = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    rf"((?:;[{_PARAM_CHARS}=;]*)?)\Z"
)


def _plain_host(host: str) -> bool:
    """Labels of letters, digits and inner hyphens, dot-separated, one trailing dot allowed (the
    rule of ``_HOSTNAME_RE``, for a string already made of those characters only)."""
    return not (
        host.startswith((".", "-")) or host.endswith("-") or ".." in host or ".-" in host or "-." in host
    )


def parse_uri(text: str, header: str | None = None) -> Uri:
    """Parse a URI; raises :class:`ParseError` for anything the grammar does not allow."""
    m = _FAST_SIP.match(text)
    if m is not None:
        scheme, user, host, port, param_text = m.groups()
        params = split_flat_params(param_text)
        if params is not None and _plain_host(host):
            port_number = None
            if port is not None:
                port_number = int(port)
                if port_number > 65535:
                    raise ParseError(f"invalid port in {text!r}", header=header)
            return SipUri(scheme, host, user, None, port_number, params)
    scheme, colon, rest = text.partition(":")
    if not colon or _SCHEME_RE.match(scheme) is None:
        raise ParseError(f"not a URI: {text!r}", header=header)
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip(lscheme, rest, text, header)
    if any(c in _OPAQUE_BAD for c in rest) or not rest:
        raise ParseError(f"invalid characters in URI {text!r}", header=header)
    if lscheme == "tel":
        number, semi, tail = rest.partition(";")
        if _TEL_RE.match(number) is None:
            raise ParseError(f"invalid tel URI {text!r}", header=header)
        return TelUri(number, _uri_params(tail, text, header) if semi else ())
    return AbsoluteUri(lscheme, rest)


def _parse_sip(scheme: str, rest: str, text: str, header: str | None) -> SipUri:
    user = password = None
    at = rest.rfind("@")  # params and headers cannot hold a raw '@'; the user part can hold ';?'
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if _USER_RE.match(user) is None:
            raise ParseError(f"invalid user part in URI {text!r}", header=header)
        if colon:
            if _PASSWORD_RE.match(pw) is None:
                raise ParseError(f"invalid password in URI {text!r}", header=header)
            password = pw
    rest, qmark, hdrs = rest.partition("?")
    hostport, semi, tail = rest.partition(";")
    host, port = _parse_hostport(hostport, text, header)
    params = _uri_params(tail, text, header) if semi else ()
    headers: tuple[tuple[str, str], ...] = ()
    if qmark:
        pairs = []
        for item in hdrs.split("&"):
            name, eq, value = item.partition("=")
            if (
                not eq
                or not name
                or _HEADER_CHARS_RE.match(name) is None
                or _HEADER_CHARS_RE.match(value) is None
            ):
                raise ParseError(f"invalid header in URI {text!r}", header=header)
            pairs.append((name, value))
        headers = tuple(pairs)
    return SipUri(scheme, host, user, password, port, params, headers)


def _parse_hostport(hostport: str, text: str, header: str | None) -> tuple[str, int | None]:
    port: int | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference in {text!r}", header=header)
        host, tail = hostport[: end + 1], hostport[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ParseError(f"invalid IPv6 address in {text!r}", header=header) from None
        if tail:
            if not tail.startswith(":"):
                raise ParseError(f"invalid host in {text!r}", header=header)
            port = _port(tail[1:], text, header)
        return host, port
    host, colon, port_text = hostport.partition(":")
    if colon:
        port = _port(port_text, text, header)
    if not host or _HOSTNAME_RE.match(host) is None:
        raise ParseError(f"invalid host {host!r} in {text!r}", header=header)
    return host, port


def _port(text: str, uri: str, header: str | None) -> int:
    if not is_digits(text) or int(text) > 65535:
        raise ParseError(f"invalid port in {uri!r}", header=header)
    return int(text)


def _uri_params(tail: str, text: str, header: str | None) -> Params:
    out: list[tuple[str, str | None]] = []
    for item in tail.split(";"):
        name, eq, value = item.partition("=")
        if _PARAM_CHARS_RE.match(name) is None or (eq and _PARAM_CHARS_RE.match(value) is None):
            raise ParseError(f"invalid URI parameter {item!r} in {text!r}", header=header)
        out.append((name, value if eq else None))
    return tuple(out)
