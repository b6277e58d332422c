"""Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

* :mod:`invsess.auth.digest` — algorithms (MD5, SHA-256, SHA-512-256 and their ``-sess``
  variants), ``qop`` auth/auth-int, challenges and credentials as values.
* :mod:`invsess.auth.client` — :class:`CredentialStore` and :class:`ClientAuth`: answering a
  401/407 (the strongest challenge per realm, at most one retry per challenge, ``stale=true``).
* :mod:`invsess.auth.server` — :class:`DigestAuthenticator`: stateless 401/407 challenges,
  self-checking nonces that go stale, replay protection by nonce count, constant-time checks,
  failed attempts counted per source.

See ``docs/authentication.md``.
"""

from invsess.auth.client import (
    AUTH_HEADERS,
    MAX_REALMS,
    MAX_STALE_RETRIES,
    AuthenticationFailedError,
    ClientAuth,
    Credential,
    CredentialStore,
    credentials_of,
    resubmit,
)
from invsess.auth.digest import (
    Algorithm,
    Challenge,
    DigestResponse,
    Qop,
    UnsupportedChallengeError,
    answer_challenge,
    parse_challenge,
    parse_digest_response,
)
from invsess.auth.server import (
    DEFAULT_METHODS,
    DEFAULT_NONCE_LIFETIME,
    Accepted,
    AuthStatistics,
    DigestAuthenticator,
    Refused,
    Verdict,
)

__all__ = [
    "AUTH_HEADERS",
    "DEFAULT_METHODS",
    "MAX_REALMS",
    "DEFAULT_NONCE_LIFETIME",
    "MAX_STALE_RETRIES",
    "Accepted",
    "Algorithm",
    "AuthStatistics",
    "AuthenticationFailedError",
    "Challenge",
    "ClientAuth",
    "Credential",
    "CredentialStore",
    "DigestAuthenticator",
    "DigestResponse",
    "Qop",
    "Refused",
    "UnsupportedChallengeError",
    "Verdict",
    "answer_challenge",
    "credentials_of",
    "parse_challenge",
    "parse_digest_response",
    "resubmit",
]
