"""The server side of digest authentication: challenging requests, checking credentials.

A :class:`DigestAuthenticator` is consulted by the endpoint for each *new* request outside a
dialog (:meth:`DigestAuthenticator.screen`), before any transaction, dialog, session or pool is
made for it: a request without valid credentials costs a parse and a stateless 401 (or 407),
nothing more. What it does (RFC 3261 §22.4, RFC 7616, RFC 8760):

* The challenge offers every configured algorithm, strongest first (SHA-256 before MD5 by
  default: RFC 8760 §2.4 asks for the preferred one first; old clients take the MD5 one),
  ``qop="auth"``, and a nonce that carries its own issue time and an HMAC over it, the realm
  and a random part, keyed by a secret of this process. Nonces therefore need no table to be
  checked: a forged one fails the HMAC, an old one is *stale*.
* Credentials are checked in constant time (:func:`hmac.compare_digest`), whether or not the user
  exists (an unknown user costs the same hash as a wrong password and gets the same answer, so
  a scanner cannot tell them apart).
* A correct answer with a nonce older than ``nonce_lifetime`` gets a new challenge with
  ``stale=true`` (the client retries without asking its user). A nonce count (``nc``) not above
  the highest one seen for that nonce is a replay: refused the same way. The table of counts
  holds only nonces that authenticated a request, so an attacker without the password cannot
  grow it; it is bounded and forgets the oldest first.
* Every failed attempt (wrong password, unknown user, forged nonce, wrong realm or algorithm, a
  replay) is counted per source address in :attr:`DigestAuthenticator.failures`, exposed with
  the rest in :meth:`DigestAuthenticator.statistics`, so that an operator can ban scanners.

Never touches a socket or a clock: ``now`` is the driver's time (a monotonic clock is fine:
nonces only live as long as the process).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping

import attrs

from invsess.address import Address
from invsess.auth.digest import (
    Algorithm,
    Challenge,
    DigestResponse,
    Qop,
    ha1,
    parse_digest_response,
    response_digest,
    user_realm_hash,
)
from invsess.errors import UsageError
from invsess.sip import Credentials, ParseError, Request

#: Requests outside a dialog that are challenged by default. ACK and CANCEL cannot be (RFC 3261
#: §22.1: they are answered by the transaction they belong to); OPTIONS is left open so that
#: monitoring and keep-alive probes work (add it to ``methods`` to close it too).
DEFAULT_METHODS = frozenset(
    {"INVITE", "REGISTER", "MESSAGE", "SUBSCRIBE", "PUBLISH", "REFER", "INFO", "NOTIFY"}
)
#: How long a nonce is good for before it is stale (Kamailio's ``nonce_expire`` default).
DEFAULT_NONCE_LIFETIME = 300.0
#: Nonces whose counts are remembered for replay protection (the oldest are forgotten first;
#: a forgotten nonce still authenticates, counted afresh, until it goes stale).
MAX_TRACKED_NONCES = 100_000
#: Sources whose failures are counted one by one; beyond, they are counted together.
MAX_SOURCES = 10_000
OTHER_SOURCES = "(other sources)"

_MAC_BYTES = 16
_RANDOM_BYTES = 8


@attrs.frozen
class Accepted:
    """The request's credentials checked out for ``username`` (None: the request was not
    subject to authentication)."""

    username: str | None


@attrs.frozen
class Refused:
    """Answer the request statelessly with ``status_code`` and ``headers`` (a challenge, or 400
    for credentials that cannot be read); ``why`` says what went wrong, for the log."""

    status_code: int
    headers: tuple[tuple[str, object], ...]
    why: str
    reason: str | None = None


Verdict = Accepted | Refused


@attrs.frozen
class AuthStatistics:
    """Counters of an authenticator (also in the endpoint's ``stats`` as ``auth ...``)."""

    challenges: int
    accepted: int
    failed: int
    stale: int
    replays: int
    malformed: int
    tracked_nonces: int
    failures_by_source: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        """Plain values, for JSON."""
        return attrs.asdict(self)


class DigestAuthenticator:
    """Challenges and checks requests for one realm; see the module docstring.

    ``users``: username -> password. ``proxy``: challenge with 407/Proxy-Authenticate (as a
    proxy does) instead of 401/WWW-Authenticate. ``algorithms``: offered in this order.
    ``secret``: the nonce key (random by default: nonces do not survive a restart).
    ``in_dialog``: challenge requests inside dialogs too.
    """

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        algorithms: Iterable[Algorithm] = (Algorithm.SHA256, Algorithm.MD5),
        qops: Iterable[Qop] = (Qop.AUTH,),
        methods: Iterable[str] = DEFAULT_METHODS,
        nonce_lifetime: float = DEFAULT_NONCE_LIFETIME,
        proxy: bool = False,
        secret: bytes | None = None,
        in_dialog: bool = False,
    ) -> None:
        if not realm or '"' in realm or "\\" in realm:
            raise UsageError(f"invalid realm {realm!r}")
        self.realm = realm
        self._users = dict(users)
        if not self._users:
            raise UsageError("an authenticator needs at least one user")
        self.algorithms = tuple(algorithms)
        if not self.algorithms or any(a.sess for a in self.algorithms):
            # -sess makes a server keep per-client state it cannot check statelessly; nobody
            # offers it in SIP (RFC 8760 does not list it for servers to prefer).
            raise UsageError("offer one or more of MD5, SHA-256, SHA-512-256 (no -sess variants)")
        self.qops = tuple(qops)
        if not self.qops:
            raise UsageError("offer qop auth and/or auth-int: without one, replays cannot be detected")
        self.methods = frozenset(m.upper() for m in methods) - {"ACK", "CANCEL"}
        if nonce_lifetime <= 0:
            raise UsageError("nonce_lifetime must be positive")
        self.nonce_lifetime = nonce_lifetime
        self.proxy = proxy
        #: Challenge requests inside a dialog too (as some proxies and SBCs do: BYE, re-INVITE,
        #: UPDATE, PRACK when listed in ``methods``); by default they ride on the dialog.
        self.in_dialog = in_dialog
        self._secret = secret if secret is not None else os.urandom(32)
        #: Failed attempts by source address (host), for bans and monitoring.
        self.failures: Counter[str] = Counter()
        self._counters: Counter[str] = Counter()
        self._nc: OrderedDict[str, int] = OrderedDict()
        # H(user:realm:password) per (algorithm, user): hashed once, not per request.
        self._secrets: dict[tuple[Algorithm, str], str] = {
            (a, user): user_realm_hash(a, user, realm, password)
            for a in self.algorithms
            for user, password in self._users.items()
        }

    @property
    def status_code(self) -> int:
        """401 for a user agent (registrar, callee), 407 for a proxy."""
        return 407 if self.proxy else 401

    @property
    def credentials_header(self) -> str:
        """Where requests carry their credentials for us."""
        return "Proxy-Authorization" if self.proxy else "Authorization"

    # -- nonces ------------------------------------------------------------------------------

    def new_nonce(self, now: float) -> str:
        """A nonce issued at ``now``: time, random part, and their HMAC (base64url)."""
        head = struct.pack(">d", now) + os.urandom(_RANDOM_BYTES)
        return base64.urlsafe_b64encode(head + self._mac(head)).decode().rstrip("=")

    def _mac(self, head: bytes) -> bytes:
        return hmac.new(self._secret, head + self.realm.encode(), hashlib.sha256).digest()[:_MAC_BYTES]

    def _issued(self, nonce: str) -> float | None:
        """When one of our nonces was issued; None for a nonce we did not make."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 8 + _RANDOM_BYTES + _MAC_BYTES:
            return None
        head, mac = raw[: 8 + _RANDOM_BYTES], raw[8 + _RANDOM_BYTES :]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        issued: float = struct.unpack(">d", head[:8])[0]
        return issued

    # -- the check ---------------------------------------------------------------------------

    def challenge(self, now: float, *, stale: bool = False) -> Refused:
        """A fresh challenge: one header per algorithm, in our order of preference."""
        nonce = self.new_nonce(now)
        self._counters["stale" if stale else "challenges"] += 1
        header = "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"
        values = tuple(
            (header, str(Challenge(self.realm, nonce, algorithm, self.qops, stale=stale, proxy=self.proxy)))
            for algorithm in self.algorithms
        )
        return Refused(self.status_code, values, "stale nonce" if stale else "credentials needed")

    def check(self, request: Request, source: Address, now: float) -> Verdict:
        """Accept ``request``, or say how to refuse it; see the module docstring."""
        in_dialog = request.to is not None and request.to.tag is not None
        if request.method not in self.methods or (in_dialog and not self.in_dialog):
            return Accepted(None)  # not ours to challenge (in-dialog requests ride on the dialog)
        mine = self._credentials_for_us(request)
        if mine is None:
            return self.challenge(now)
        try:
            digest = parse_digest_response(mine, self.credentials_header)
        except ParseError as exc:
            return self._fail(source, "malformed", f"unreadable credentials: {exc}", now, status=400)
        if digest.algorithm not in self.algorithms:
            return self._fail(source, "failed", f"algorithm {digest.algorithm.token} was not offered", now)
        if digest.qop is None or digest.qop not in self.qops:
            return self._fail(source, "failed", "credentials without an offered qop", now)
        if digest.uri != request.uri_text:
            return self._fail(source, "malformed", "digest uri is not the Request-URI", now, status=400)
        issued = self._issued(digest.nonce)
        if issued is None or issued > now:
            return self._fail(source, "failed", "a nonce we did not issue", now)
        username = self._username(digest)
        if not self._response_ok(digest, username, request):
            return self._fail(source, "failed", "wrong credentials", now)
        if now - issued > self.nonce_lifetime:
            return self.challenge(now, stale=True)  # the password was right: no failure
        nc = digest.nc or 0
        last = self._nc.get(digest.nonce)
        if last is not None and nc <= last:
            self._counters["replays"] += 1
            self.failures[self._source_key(source)] += 1
            return self.challenge(now, stale=True)
        self._remember(digest.nonce, nc)
        self._counters["accepted"] += 1
        return Accepted(username)

    def _credentials_for_us(self, request: Request) -> Credentials | None:
        try:
            values: list[Credentials] = request.headers.parsed(self.credentials_header)
        except ParseError:
            return None
        for value in values:
            if value.param("realm") == self.realm:
                return value
        return None

    def _username(self, digest: DigestResponse) -> str | None:
        """The user the credentials name (userhash undone); None for one we do not know."""
        if not digest.userhash:
            return digest.username if digest.username in self._users else None
        for user in self._users:
            if hmac.compare_digest(digest.algorithm.hash(f"{user}:{self.realm}"), digest.username):
                return user
        return None

    def _response_ok(self, digest: DigestResponse, username: str | None, request: Request) -> bool:
        algorithm = digest.algorithm
        # An unknown user costs the same work as a known one (a stand-in secret), and fails.
        secret = self._secrets.get((algorithm, username or ""), algorithm.hash(os.urandom(16)))
        key = ha1(algorithm, user_realm_hash=secret, nonce=digest.nonce, cnonce=digest.cnonce)
        expected = response_digest(
            algorithm,
            ha1=key,
            nonce=digest.nonce,
            method=request.method,
            uri=digest.uri,
            qop=digest.qop,
            nc=digest.nc or 1,
            cnonce=digest.cnonce,
            body=request.body,
        )
        return hmac.compare_digest(expected, digest.response) and username is not None

    def _remember(self, nonce: str, nc: int) -> None:
        self._nc[nonce] = nc
        self._nc.move_to_end(nonce)
        while len(self._nc) > MAX_TRACKED_NONCES:
            self._nc.popitem(last=False)

    @staticmethod
    def _source_key(source: Address) -> str:
        return source[0]

    def _fail(self, source: Address, counter: str, why: str, now: float, *, status: int = 0) -> Refused:
        self._counters[counter] += 1
        key = self._source_key(source)
        if key in self.failures or len(self.failures) < MAX_SOURCES:
            self.failures[key] += 1
        else:
            self.failures[OTHER_SOURCES] += 1
        if status:
            return Refused(status, (), why)
        refused = self.challenge(now)
        return attrs.evolve(refused, why=why)

    # -- what the endpoint asks --------------------------------------------------------------

    def screen(self, request: Request, source: Address, now: float) -> Refused | None:
        """The endpoint's question for a new request: None lets it through, a :class:`Refused`
        is answered statelessly (nothing allocated for the request)."""
        verdict = self.check(request, source, now)
        return verdict if isinstance(verdict, Refused) else None

    def statistics(self) -> AuthStatistics:
        """The counters, and failures by source (most first)."""
        c = self._counters
        return AuthStatistics(
            challenges=c["challenges"],
            accepted=c["accepted"],
            failed=c["failed"],
            stale=c["stale"],
            replays=c["replays"],
            malformed=c["malformed"],
            tracked_nonces=len(self._nc),
            failures_by_source=dict(self.failures.most_common()),
        )


__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_NONCE_LIFETIME",
    "Accepted",
    "AuthStatistics",
    "DigestAuthenticator",
    "Refused",
    "Verdict",
]
