"""Digest arithmetic (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760) and the values it works on.

This module owns the algorithms (MD5, SHA-256 and SHA-512/256, each with its ``-sess`` variant),
the computation of a ``response`` (with ``qop=auth``, ``qop=auth-int`` or, for RFC 2069 peers,
none), the parsing of a challenge (``WWW-Authenticate`` / ``Proxy-Authenticate``) and of the
credentials answering it (``Authorization`` / ``Proxy-Authorization``), and their serialisation.
It keeps no state and knows no transport or clock: the client (:mod:`invsess.auth.client`) and
the server (:mod:`invsess.auth.server`) keep theirs.
"""

from __future__ import annotations

import enum
import hashlib

import attrs

from invsess.sip import Credentials, ParseError
from invsess.sip.grammar import quote


class Algorithm(enum.Enum):
    """A digest algorithm as named in challenges (RFC 7616 §3.3, RFC 8760 for SIP).

    ``strength`` orders them when a response offers several (higher is preferred); a ``-sess``
    variant ranks just below its base algorithm: it costs a hash more and protects nothing the
    base does not, but a server that offers only it still gets an answer.
    """

    token: str
    hashlib_name: str
    sess: bool
    strength: int

    def __new__(cls, token: str, hashlib_name: str, sess: bool, strength: int) -> Algorithm:
        member = object.__new__(cls)
        member._value_ = token.upper()
        member.token = token
        member.hashlib_name = hashlib_name
        member.sess = sess
        member.strength = strength
        return member

    MD5 = ("MD5", "md5", False, 2)
    MD5_SESS = ("MD5-sess", "md5", True, 1)
    SHA256 = ("SHA-256", "sha256", False, 4)
    SHA256_SESS = ("SHA-256-sess", "sha256", True, 3)
    SHA512_256 = ("SHA-512-256", "sha512_256", False, 6)
    SHA512_256_SESS = ("SHA-512-256-sess", "sha512_256", True, 5)

    @classmethod
    def named(cls, token: str | None) -> Algorithm | None:
        """The algorithm a challenge names (absent means MD5, RFC 2617 §3.2.1); None when it is
        one we do not implement (that challenge is then skipped, not an error)."""
        if token is None:
            return cls.MD5
        return _BY_NAME.get(token.upper())

    def hash(self, text: str | bytes) -> str:
        """H(data): the lower-case hex digest (strings are UTF-8, RFC 7616 §3.4.4 charset)."""
        data = text.encode() if isinstance(text, str) else text
        return hashlib.new(self.hashlib_name, data).hexdigest()

    def kd(self, secret: str, data: str) -> str:
        """KD(secret, data) = H(secret ":" data)."""
        return self.hash(f"{secret}:{data}")


_BY_NAME: dict[str, Algorithm] = {a.value: a for a in Algorithm}


class Qop(enum.Enum):
    """Quality of protection (RFC 7616 §3.3): the request line only, or the body too."""

    AUTH = "auth"
    AUTH_INT = "auth-int"


def _check_nc(nc: int) -> None:
    if not 0 < nc <= 0xFFFFFFFF:
        raise ValueError(f"nonce count {nc} is not in 1..ffffffff")


def user_realm_hash(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """H(username ":" realm ":" password): what a server may store instead of the password."""
    return algorithm.hash(f"{username}:{realm}:{password}")


def ha1(
    algorithm: Algorithm,
    *,
    user_realm_hash: str,
    nonce: str,
    cnonce: str | None,
) -> str:
    """H(A1) from H(username:realm:password); the ``-sess`` variants fold in the nonce and
    cnonce (RFC 7616 §3.4.2)."""
    if not algorithm.sess:
        return user_realm_hash
    if cnonce is None:
        raise ValueError(f"{algorithm.token} needs a cnonce")
    return algorithm.hash(f"{user_realm_hash}:{nonce}:{cnonce}")


def ha2(algorithm: Algorithm, method: str, uri: str, qop: Qop | None, body: bytes = b"") -> str:
    """H(A2): method and digest-uri, and for ``auth-int`` the hash of the body (§3.4.3)."""
    if qop is Qop.AUTH_INT:
        return algorithm.hash(f"{method}:{uri}:{algorithm.hash(body)}")
    return algorithm.hash(f"{method}:{uri}")


def response_digest(
    algorithm: Algorithm,
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: Qop | None,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; without qop, RFC 2069's form)."""
    h2 = ha2(algorithm, method, uri, qop, body)
    if qop is None:
        return algorithm.kd(ha1, f"{nonce}:{h2}")
    if cnonce is None:
        raise ValueError("a qop needs a cnonce")
    _check_nc(nc)
    return algorithm.kd(ha1, f"{nonce}:{nc:08x}:{cnonce}:{qop.value}:{h2}")


@attrs.frozen
class Challenge:
    """One ``Digest`` challenge of a 401 (``WWW-Authenticate``) or a 407 (``Proxy-Authenticate``)."""

    realm: str
    nonce: str
    algorithm: Algorithm
    qops: tuple[Qop, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    #: True for a ``Proxy-Authenticate`` challenge (answered in ``Proxy-Authorization``).
    proxy: bool = False

    def __str__(self) -> str:
        params = [
            f"realm={quote(self.realm)}",
            f"nonce={quote(self.nonce)}",
            f"algorithm={self.algorithm.token}",
        ]
        if self.qops:
            params.append(f"qop={quote(','.join(q.value for q in self.qops))}")
        if self.opaque is not None:
            params.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            params.append("stale=true")
        if self.userhash:
            params.append("userhash=true")
        return "Digest " + ", ".join(params)

    @property
    def header(self) -> str:
        """The header this challenge travels in."""
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def answer_header(self) -> str:
        """The header that answers it."""
        return "Proxy-Authorization" if self.proxy else "Authorization"

    def preferred_qop(self) -> Qop | None:
        """``auth`` when offered (it costs nothing and works through proxies that rewrite
        bodies), else ``auth-int``, else none (an RFC 2069 server)."""
        if Qop.AUTH in self.qops:
            return Qop.AUTH
        return Qop.AUTH_INT if Qop.AUTH_INT in self.qops else None


class UnsupportedChallengeError(ParseError):
    """A challenge we cannot answer: another scheme, or an algorithm or qop we do not do."""


def parse_challenge(value: Credentials, *, proxy: bool) -> Challenge:
    """A challenge from a parsed ``WWW-Authenticate``/``Proxy-Authenticate`` value.

    Raises :class:`UnsupportedChallengeError` for a scheme other than Digest or an algorithm or
    qop we do not implement, :class:`~invsess.sip.ParseError` when realm or nonce is missing.
    """
    header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    if value.scheme.lower() != "digest":
        raise UnsupportedChallengeError(f"scheme {value.scheme} is not Digest", header=header)
    algorithm = Algorithm.named(value.param("algorithm"))
    if algorithm is None:
        raise UnsupportedChallengeError(
            f"algorithm {value.param('algorithm')} is not supported", header=header
        )
    realm, nonce = value.param("realm"), value.param("nonce")
    if realm is None or nonce is None:
        raise ParseError("a Digest challenge needs realm and nonce", header=header)
    qops: list[Qop] = []
    offered = value.param("qop")
    if offered is not None:
        for item in offered.split(","):
            token = item.strip().lower()
            if token in ("auth", "auth-int"):
                qops.append(Qop(token))
        if not qops:
            raise UnsupportedChallengeError(f"qop {offered!r} offers nothing we do", header=header)
    if algorithm.sess and not qops:
        # RFC 2617 §3.2.2: a cnonce goes only with a qop, and -sess needs one.
        raise UnsupportedChallengeError(f"{algorithm.token} without a qop cannot be answered", header=header)
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qops=tuple(qops),
        opaque=value.param("opaque"),
        stale=(value.param("stale") or "").lower() == "true",
        userhash=(value.param("userhash") or "").lower() == "true",
        proxy=proxy,
    )


@attrs.frozen
class DigestResponse:
    """The credentials of one ``Authorization``/``Proxy-Authorization`` header (Digest)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm = Algorithm.MD5
    qop: Qop | None = None
    nc: int | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False

    def to_credentials(self) -> Credentials:
        """The header value, ready to be added to a request."""
        params: list[tuple[str, str]] = [
            ("username", quote(self.username)),
            ("realm", quote(self.realm)),
            ("nonce", quote(self.nonce)),
            ("uri", quote(self.uri)),
            ("response", quote(self.response)),
            ("algorithm", self.algorithm.token),
        ]
        if self.qop is not None and self.nc is not None and self.cnonce is not None:
            params += [("qop", self.qop.value), ("nc", f"{self.nc:08x}"), ("cnonce", quote(self.cnonce))]
        if self.opaque is not None:
            params.append(("opaque", quote(self.opaque)))
        if self.userhash:
            params.append(("userhash", "true"))
        return Credentials("Digest", tuple(params))


def parse_digest_response(value: Credentials, header: str = "Authorization") -> DigestResponse:
    """The Digest credentials of an ``Authorization``/``Proxy-Authorization`` value.

    Raises :class:`~invsess.sip.ParseError` for another scheme, a missing parameter, an
    unknown algorithm or qop, or a malformed nonce count.
    """
    if value.scheme.lower() != "digest":
        raise ParseError(f"scheme {value.scheme} is not Digest", header=header)
    fields = {name: value.param(name) for name in ("username", "realm", "nonce", "uri", "response")}
    missing = [name for name, v in fields.items() if v is None]
    if missing:
        raise ParseError(f"Digest credentials without {', '.join(missing)}", header=header)
    algorithm = Algorithm.named(value.param("algorithm"))
    if algorithm is None:
        raise ParseError(f"algorithm {value.param('algorithm')} is not supported", header=header)
    qop_text, nc_text, cnonce = value.param("qop"), value.param("nc"), value.param("cnonce")
    qop = nc = None
    if qop_text is not None:
        try:
            qop = Qop(qop_text.lower())
        except ValueError:
            raise ParseError(f"qop {qop_text!r} is not supported", header=header) from None
        if nc_text is None or cnonce is None:
            raise ParseError("a qop needs nc and cnonce", header=header)
        if len(nc_text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in nc_text):
            raise ParseError(f"nonce count {nc_text!r} is not 8 hex digits", header=header)
        nc = int(nc_text, 16)
    return DigestResponse(
        username=fields["username"] or "",
        realm=fields["realm"] or "",
        nonce=fields["nonce"] or "",
        uri=fields["uri"] or "",
        response=(fields["response"] or "").lower(),
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=value.param("opaque"),
        userhash=(value.param("userhash") or "").lower() == "true",
    )


def answer_challenge(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> DigestResponse:
    """Our credentials for ``challenge`` (the nonce count ``nc`` is the caller's to keep)."""
    algorithm = challenge.algorithm
    qop = challenge.preferred_qop()
    secret = user_realm_hash(algorithm, username, challenge.realm, password)
    key = ha1(algorithm, user_realm_hash=secret, nonce=challenge.nonce, cnonce=cnonce)
    digest = response_digest(
        algorithm,
        ha1=key,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc,
        cnonce=cnonce if qop is not None else None,
        body=body,
    )
    shown = algorithm.hash(f"{username}:{challenge.realm}") if challenge.userhash else username
    return DigestResponse(
        username=shown,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=digest,
        algorithm=algorithm,
        qop=qop,
        nc=nc if qop is not None else None,
        cnonce=cnonce if qop is not None else None,
        opaque=challenge.opaque,
        userhash=challenge.userhash,
    )


#: Preference order of algorithms, strongest first (what a client picks among several).
BY_STRENGTH: tuple[Algorithm, ...] = tuple(sorted(Algorithm, key=lambda a: -a.strength))

__all__ = [
    "BY_STRENGTH",
    "Algorithm",
    "Challenge",
    "DigestResponse",
    "Qop",
    "UnsupportedChallengeError",
    "answer_challenge",
    "ha1",
    "ha2",
    "parse_challenge",
    "parse_digest_response",
    "response_digest",
    "user_realm_hash",
]
