"""The client side of digest authentication: answering a 401 or a 407 (RFC 3261 §22.2-22.3).

:class:`CredentialStore` holds usernames and passwords per realm (PJSIP's ``cred_info`` list; a
credential without a realm answers any realm). :class:`ClientAuth` is the state one user agent
keeps towards its peers: the nonce counts it used (RFC 7616 §3.4: ``nc`` counts up per nonce),
the challenges it answered, and how often a realm said ``stale=true`` in a row. Its one job is
:meth:`ClientAuth.authorize`: given a request and the 401/407 it got, the credentials to send
it again with — or :class:`AuthenticationFailedError` when there is nothing sensible to send.

The rules, as PJSIP's ``sip_auth_client.c`` applies them:

* Several challenges in one response (a forking proxy aggregates them, or a server offers
  SHA-256 and MD5): for each realm the strongest algorithm we implement is answered; challenges
  of realms we have no credentials for are left unanswered, and if that leaves none, we fail.
* At most one retry per challenge: a request that already carried credentials for a realm and is
  challenged again for it, without ``stale=true``, had the wrong password. ``stale=true`` means
  the nonce expired but the password was right: we retry with the new nonce without asking
  anyone, at most :data:`MAX_STALE_RETRIES` times in a row (a server that says stale for ever
  does not make us loop).
* Credentials for other realms that the request carried are kept, recomputed with the next nonce
  count (a 407 of the proxy then a 401 of the callee: the second retry carries both).

:func:`resubmit` builds the request to send again: same Call-ID, From, To and body, a new
branch and the next CSeq (RFC 3261 §22.2), the credentials replaced.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import attrs

from invsess.auth.digest import (
    Challenge,
    DigestResponse,
    UnsupportedChallengeError,
    answer_challenge,
    parse_challenge,
    parse_digest_response,
)
from invsess.errors import InvsessError, UsageError
from invsess.sip import Credentials, CSeq, ParseError, Request, Response, Via

#: How many ``stale=true`` challenges in a row a realm may send before we give up.
MAX_STALE_RETRIES = 3
#: How many nonces we keep a count for (the oldest is forgotten first).
MAX_NONCES = 64
#: How many realms one request may carry credentials for: a chain of challenges from ever new
#: realms (a broken or hostile peer) ends there instead of going on for ever.
MAX_REALMS = 4

AUTH_HEADERS = ("Authorization", "Proxy-Authorization")


class AuthenticationFailedError(InvsessError):
    """A 401/407 we cannot (or must not) answer again; ``status_code`` is the challenge's code."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@attrs.frozen
class Credential:
    """A username and password, for one realm (``realm=None``: for any realm)."""

    username: str
    password: str = attrs.field(repr=False)
    realm: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.username:
            raise UsageError("a credential needs a username")
        if any(c in self.username for c in '"\r\n\\'):
            raise UsageError(
                f"a username cannot contain quotes, backslashes or line breaks: {self.username!r}"
            )


class CredentialStore:
    """Credentials by realm; the one without a realm answers realms nobody else does."""

    def __init__(self, credentials: tuple[Credential, ...] | list[Credential] = ()) -> None:
        self._by_realm: dict[str | None, Credential] = {}
        for credential in credentials:
            self._by_realm[credential.realm] = credential

    def add(self, username: str, password: str, realm: str | None = None) -> Credential:
        """Add (or replace) the credential for ``realm`` (None: any realm)."""
        credential = Credential(username, password, realm)
        self._by_realm[realm] = credential
        return credential

    def remove(self, realm: str | None = None) -> None:
        """Forget the credential for ``realm`` (nothing if there is none)."""
        self._by_realm.pop(realm, None)

    def for_realm(self, realm: str) -> Credential | None:
        """The credential answering ``realm``: the realm's own, else the catch-all, else None."""
        return self._by_realm.get(realm) or self._by_realm.get(None)

    def __bool__(self) -> bool:
        return bool(self._by_realm)

    def __len__(self) -> int:
        return len(self._by_realm)

    def __iter__(self) -> Iterator[Credential]:
        return iter(self._by_realm.values())

    def __repr__(self) -> str:
        realms = ", ".join(repr(r) if r is not None else "*" for r in self._by_realm)
        return f"<CredentialStore {realms}>"


def _new_cnonce() -> str:
    return secrets.token_hex(8)


class ClientAuth:
    """One user agent's digest state; see the module docstring."""

    def __init__(self, credentials: CredentialStore, *, cnonce: Callable[[], str] = _new_cnonce) -> None:
        self.credentials = credentials
        self._cnonce = cnonce
        self._nc: dict[str, int] = {}
        self._stale: dict[tuple[bool, str], int] = {}
        self._challenges: dict[tuple[bool, str], Challenge] = {}

    def next_nc(self, nonce: str) -> int:
        """The next nonce count for ``nonce`` (1 for a new one)."""
        nc = self._nc.pop(nonce, 0) + 1
        self._nc[nonce] = nc  # re-inserted: the dict's order is the least recently used first
        while len(self._nc) > MAX_NONCES:
            del self._nc[next(iter(self._nc))]
        return nc

    def authorize(self, request: Request, response: Response) -> list[tuple[str, Credentials]]:
        """The ``Authorization``/``Proxy-Authorization`` headers to send ``request`` again with,
        after the 401/407 ``response`` (raises :class:`AuthenticationFailedError`)."""
        code = response.status_code
        if code not in (401, 407):
            raise UsageError(f"a {code} is not a challenge")
        offered = self._challenges_of(response)
        if not offered:
            raise AuthenticationFailedError(f"{code} with no Digest challenge we can answer", code)
        previous = _carried(request)
        if len(previous) >= MAX_REALMS:
            raise AuthenticationFailedError(
                f"{code}: credentials for {len(previous)} realms were not enough", code
            )
        answers: dict[tuple[bool, str], DigestResponse] = {}
        refusals: list[str] = []
        for key, challenge in offered.items():
            credential = self.credentials.for_realm(challenge.realm)
            if credential is None:
                refusals.append(f"no credentials for realm {challenge.realm!r}")
                continue
            if key in previous:
                if not challenge.stale:
                    refusals.append(f"credentials for realm {challenge.realm!r} were refused")
                    continue
                self._stale[key] = self._stale.get(key, 0) + 1
                if self._stale[key] > MAX_STALE_RETRIES:
                    refusals.append(
                        f"realm {challenge.realm!r} said stale {MAX_STALE_RETRIES + 1} times in a row"
                    )
                    continue
            else:
                self._stale[key] = 0
            self._challenges[key] = challenge
            answers[key] = self._answer(challenge, credential, request)
        if not answers:
            raise AuthenticationFailedError(f"{code}: " + "; ".join(refusals), code)
        # Credentials the request carried for other realms go again, with the next nonce count.
        for key, old in previous.items():
            if key in answers:
                continue
            cached = self._challenges.get(key)
            credential = self.credentials.for_realm(key[1])
            if cached is not None and credential is not None and cached.nonce == old.nonce:
                answers[key] = self._answer(cached, credential, request)
            else:
                answers[key] = old
        return [
            ("Proxy-Authorization" if proxy else "Authorization", answer.to_credentials())
            for (proxy, _), answer in answers.items()
        ]

    def renew(self, old: Request, new: Request) -> list[tuple[str, Credentials]]:
        """The credentials ``old`` carried, computed again for ``new`` with the next nonce
        count (a REGISTER sent again after a 423 reuses the nonce; repeating the old
        ``nc`` would be a replay). Credentials whose challenge we no longer know are dropped:
        the server challenges again and :meth:`authorize` answers."""
        out: list[tuple[str, Credentials]] = []
        for (proxy, realm), carried in _carried(old).items():
            cached = self._challenges.get((proxy, realm))
            credential = self.credentials.for_realm(realm)
            if cached is None or credential is None or cached.nonce != carried.nonce:
                continue
            answer = self._answer(cached, credential, new)
            out.append(("Proxy-Authorization" if proxy else "Authorization", answer.to_credentials()))
        return out

    def _answer(self, challenge: Challenge, credential: Credential, request: Request) -> DigestResponse:
        return answer_challenge(
            challenge,
            username=credential.username,
            password=credential.password,
            method=request.method,
            uri=request.uri_text,
            nc=self.next_nc(challenge.nonce),
            cnonce=self._cnonce(),
            body=request.body,
        )

    @staticmethod
    def _challenges_of(response: Response) -> dict[tuple[bool, str], Challenge]:
        """The strongest challenge we can answer per (proxy?, realm)."""
        best: dict[tuple[bool, str], Challenge] = {}
        for header, proxy in (("WWW-Authenticate", False), ("Proxy-Authenticate", True)):
            try:
                values: list[Credentials] = response.headers.parsed(header)
            except ParseError:
                continue  # an unreadable challenge header: as if it were absent
            for value in values:
                try:
                    challenge = parse_challenge(value, proxy=proxy)
                except (UnsupportedChallengeError, ParseError):
                    continue
                key = (proxy, challenge.realm)
                if key not in best or challenge.algorithm.strength > best[key].algorithm.strength:
                    best[key] = challenge
        return best


def _carried(request: Request) -> dict[tuple[bool, str], DigestResponse]:
    """The Digest credentials ``request`` carries, by (proxy?, realm)."""
    out: dict[tuple[bool, str], DigestResponse] = {}
    for header in AUTH_HEADERS:
        try:
            values: list[Credentials] = request.headers.parsed(header)
        except ParseError:
            continue
        for value in values:
            try:
                digest = parse_digest_response(value, header)
            except ParseError:
                continue
            out[(header == "Proxy-Authorization", digest.realm)] = digest
    return out


def resubmit(request: Request, *, via: Via, cseq: int, credentials: list[tuple[str, Credentials]]) -> Request:
    """``request`` again with its credentials: a new top Via (branch), CSeq ``cseq``, the old
    credentials replaced by ``credentials``; everything else (Call-ID, tags, Route, body) kept."""
    if request.cseq is None:
        raise UsageError("the request to send again has no CSeq")
    headers = request.headers.copy()
    headers.remove_first("Via")
    headers.prepend("Via", via)
    headers.set("CSeq", CSeq(cseq, request.cseq.method))
    for name in AUTH_HEADERS:
        headers.remove(name)
    # The credentials go before the body's headers, where people look for them.
    content_type = headers.get("Content-Type")
    headers.remove("Content-Type")
    headers.remove("Content-Length")
    for name, value in credentials:
        headers.add(name, value)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    headers.add("Content-Length", str(len(request.body)))
    return Request(request.method, request.uri, headers, request.body)


def credentials_of(request: Request) -> list[tuple[str, str]]:
    """The ``Authorization``/``Proxy-Authorization`` lines of ``request``, raw: what an ACK for
    a 2xx repeats (RFC 3261 §13.2.2.4: the same credentials as the INVITE)."""
    return [(name, value) for name in AUTH_HEADERS for value in request.headers.get_all(name)]


__all__ = [
    "AUTH_HEADERS",
    "MAX_REALMS",
    "MAX_STALE_RETRIES",
    "AuthenticationFailedError",
    "ClientAuth",
    "Credential",
    "CredentialStore",
    "credentials_of",
    "resubmit",
]
