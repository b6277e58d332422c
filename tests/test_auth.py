"""Digest authentication, sans-IO: the arithmetic, the client's choices, the server's checks."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from invsess.auth import (
    MAX_REALMS,
    MAX_STALE_RETRIES,
    Accepted,
    Algorithm,
    AuthenticationFailedError,
    Challenge,
    ClientAuth,
    CredentialStore,
    DigestAuthenticator,
    Qop,
    Refused,
    UnsupportedChallengeError,
    answer_challenge,
    parse_challenge,
    parse_digest_response,
    resubmit,
)
from invsess.auth.digest import ha1, response_digest, user_realm_hash
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.errors import UsageError
from invsess.sip import (
    Credentials,
    NameAddress,
    ParseError,
    Request,
    Response,
    Via,
    make_request,
    make_response,
    parse_message,
    parse_uri,
)
from invsess.sip.headers import parse_credentials

SOURCE = ("127.0.0.9", 5060)


def register(
    cseq: int = 1, *, to_tag: str | None = None, method: str = "REGISTER", body: bytes = b""
) -> Request:
    to = NameAddress(parse_uri("sip:alice@example.org"))
    if to_tag:
        to = to.with_tag(to_tag)
    return make_request(
        method,
        "sip:example.org",
        via=Via("UDP", "127.0.0.9", 5060, (("branch", f"z9hG4bK{cseq}x"),)),
        from_=NameAddress(parse_uri("sip:alice@example.org"), None, (("tag", "a1"),)),
        to=to,
        call_id="call-1",
        cseq=cseq,
        body=body,
        content_type="text/plain" if body else None,
    )


def wire(message: Request) -> Request:
    """Through the wire and back: what the other side parses."""
    parsed = parse_message(message.serialize())
    assert isinstance(parsed, Request)
    return parsed


def user_of(verdict: object) -> str | None:
    assert isinstance(verdict, Accepted), verdict
    return verdict.username


def via(n: int) -> Via:
    return Via("UDP", "127.0.0.9", 5060, (("branch", f"z9hG4bKre{n}"),))


def again(request: Request, credentials: list[tuple[str, Credentials]]) -> Request:
    """``request`` sent again with ``credentials`` (next CSeq, new branch), as parsed there."""
    assert request.cseq is not None
    n = request.cseq.number + 1
    return wire(resubmit(request, via=via(n), cseq=n, credentials=credentials))


def challenge_response(request: Request, *values: str, proxy: bool = False, code: int = 401) -> Response:
    header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    response = make_response(request, code, headers=[(header, v) for v in values])
    parsed = parse_message(response.serialize())
    assert isinstance(parsed, Response)
    return parsed


# -- the arithmetic -------------------------------------------------------------------------------


def test_rfc_vectors() -> None:
    # RFC 7616 §3.9.1 (MD5 and SHA-256) and RFC 2617 §3.5 (MD5): responses published there.
    for algorithm, expected in (
        (Algorithm.MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (Algorithm.SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ):
        secret = user_realm_hash(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
        assert (
            response_digest(
                algorithm,
                ha1=secret,
                nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                method="GET",
                uri="/dir/index.html",
                qop=Qop.AUTH,
                nc=1,
                cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )
            == expected
        )
    secret = user_realm_hash(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    assert (
        response_digest(
            Algorithm.MD5,
            ha1=secret,
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method="GET",
            uri="/dir/index.html",
            qop=Qop.AUTH,
            nc=1,
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )
    # SHA-512/256 (FIPS 180-4's truncated SHA-512, not SHA-512 cut short): the NIST "abc" vector.
    assert (
        Algorithm.SHA512_256.hash("abc") == "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )


def test_sess_auth_int_and_rfc2069_forms() -> None:
    md5 = Algorithm.MD5_SESS
    base = user_realm_hash(md5, "u", "r", "p")
    h1 = ha1(md5, user_realm_hash=base, nonce="n", cnonce="c")
    assert h1 == hashlib.md5(f"{base}:n:c".encode()).hexdigest()
    with pytest.raises(ValueError, match="cnonce"):
        ha1(md5, user_realm_hash=base, nonce="n", cnonce=None)
    body = b"v=0\r\n"
    h2 = hashlib.md5(b"INVITE:sip:x:" + hashlib.md5(body).hexdigest().encode()).hexdigest()
    expected = hashlib.md5(f"{h1}:n:00000002:c:auth-int:{h2}".encode()).hexdigest()
    got = response_digest(
        md5, ha1=h1, nonce="n", method="INVITE", uri="sip:x", qop=Qop.AUTH_INT, nc=2, cnonce="c", body=body
    )
    assert got == expected
    # RFC 2069 (no qop): KD(HA1, nonce:HA2).
    plain = Algorithm.MD5
    h2 = hashlib.md5(b"REGISTER:sip:x").hexdigest()
    assert (
        response_digest(plain, ha1=base, nonce="n", method="REGISTER", uri="sip:x", qop=None)
        == hashlib.md5(f"{base}:n:{h2}".encode()).hexdigest()
    )
    with pytest.raises(ValueError, match="nonce count"):
        response_digest(plain, ha1=base, nonce="n", method="X", uri="y", qop=Qop.AUTH, nc=0, cnonce="c")
    with pytest.raises(ValueError, match="cnonce"):
        response_digest(plain, ha1=base, nonce="n", method="X", uri="y", qop=Qop.AUTH, nc=1, cnonce=None)


def test_algorithm_names_and_strength() -> None:
    assert Algorithm.named(None) is Algorithm.MD5  # absent means MD5 (RFC 2617)
    assert Algorithm.named("sha-256") is Algorithm.SHA256
    assert Algorithm.named("SHA-512-256-SESS") is Algorithm.SHA512_256_SESS
    assert Algorithm.named("SHA-1") is None
    order = sorted(Algorithm, key=lambda a: -a.strength)
    assert order[0] is Algorithm.SHA512_256 and order[-1] is Algorithm.MD5_SESS
    assert Algorithm.SHA256.strength > Algorithm.MD5.strength


def test_parse_challenge() -> None:
    value = parse_credentials(
        'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth,auth-int", opaque="o", stale=TRUE'
    )
    challenge = parse_challenge(value, proxy=True)
    assert challenge == Challenge(
        "r", "n", Algorithm.SHA256, (Qop.AUTH, Qop.AUTH_INT), "o", True, False, True
    )
    assert challenge.header == "Proxy-Authenticate" and challenge.answer_header == "Proxy-Authorization"
    assert challenge.preferred_qop() is Qop.AUTH
    assert parse_challenge(parse_credentials(str(challenge)), proxy=True) == challenge  # round trip
    with pytest.raises(UnsupportedChallengeError, match="scheme"):
        parse_challenge(parse_credentials('Basic realm="r"'), proxy=False)
    with pytest.raises(UnsupportedChallengeError, match="algorithm"):
        parse_challenge(parse_credentials('Digest realm="r", nonce="n", algorithm=SHA-1'), proxy=False)
    with pytest.raises(UnsupportedChallengeError, match="qop"):
        parse_challenge(parse_credentials('Digest realm="r", nonce="n", qop="auth-conf"'), proxy=False)
    with pytest.raises(UnsupportedChallengeError, match="without a qop"):
        parse_challenge(parse_credentials('Digest realm="r", nonce="n", algorithm=MD5-sess'), proxy=False)
    with pytest.raises(ParseError, match="realm and nonce"):
        parse_challenge(parse_credentials('Digest nonce="n"'), proxy=False)


def test_parse_digest_response_errors() -> None:
    good = 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="AB", qop=auth, nc=0000000a, cnonce="c"'
    parsed = parse_digest_response(parse_credentials(good))
    assert parsed.nc == 10 and parsed.response == "ab" and parsed.qop is Qop.AUTH
    for bad, why in (
        ('Basic realm="x"', "scheme"),
        ('Digest username="u", realm="r", nonce="n", uri="x"', "without response"),
        ('Digest username="u", realm="r", nonce="n", uri="x", response="1", algorithm=XX', "algorithm"),
        ('Digest username="u", realm="r", nonce="n", uri="x", response="1", qop=auth', "needs nc"),
        (
            'Digest username="u", realm="r", nonce="n", uri="x", response="1", qop=auth, nc=12, cnonce="c"',
            "8 hex",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="x", response="1", qop=auth, nc=0000000g, cnonce="c"',
            "8 hex",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="x", response="1", qop=bogus, nc=00000001, cnonce="c"',
            "qop",
        ),
    ):
        with pytest.raises(ParseError, match=why):
            parse_digest_response(parse_credentials(bad))


@pytest.mark.parametrize("algorithm", [a for a in Algorithm if not a.sess] + [a for a in Algorithm if a.sess])
@pytest.mark.parametrize("qop", [Qop.AUTH, Qop.AUTH_INT])
def test_every_algorithm_and_qop_round_trip(algorithm: Algorithm, qop: Qop) -> None:
    """What the client computes, an independent computation from the definitions accepts."""
    challenge = Challenge("realm", "nonce-1", algorithm, (qop,), opaque="op")
    body = b"some body"
    answer = answer_challenge(
        challenge,
        username="bob",
        password="pw",
        method="MESSAGE",
        uri="sip:x@y",
        nc=3,
        cnonce="cn",
        body=body,
    )
    H = algorithm.hash
    a1 = H("bob:realm:pw")
    if algorithm.sess:
        a1 = H(f"{a1}:nonce-1:cn")
    a2 = H(f"MESSAGE:sip:x@y:{H(body)}") if qop is Qop.AUTH_INT else H("MESSAGE:sip:x@y")
    assert answer.response == H(f"{a1}:nonce-1:00000003:cn:{qop.value}:{a2}")
    value = str(answer.to_credentials())
    for part in (
        f"algorithm={algorithm.token}",
        f"qop={qop.value}",
        "nc=00000003",
        'cnonce="cn"',
        'opaque="op"',
    ):
        assert part in value
    assert parse_digest_response(parse_credentials(value)) == answer


def test_userhash() -> None:
    challenge = Challenge("r", "n", Algorithm.SHA256, (Qop.AUTH,), userhash=True)
    answer = answer_challenge(
        challenge, username="alice", password="p", method="REGISTER", uri="sip:r", nc=1, cnonce="c"
    )
    assert answer.username == Algorithm.SHA256.hash("alice:r") and answer.userhash
    assert "userhash=true" in str(answer.to_credentials())


# -- the client -------------------------------------------------------------------------------


def store(*entries: tuple[str, str, str | None]) -> CredentialStore:
    credentials = CredentialStore()
    for user, password, realm in entries:
        credentials.add(user, password, realm)
    return credentials


def test_credential_store() -> None:
    credentials = store(("any", "x", None), ("alice", "a", "example.org"))
    assert [
        c.username if c else None
        for c in (credentials.for_realm("example.org"), credentials.for_realm("other"))
    ] == ["alice", "any"]
    assert len(credentials) == 2 and bool(credentials) and "password" not in repr(list(credentials))
    credentials.remove(None)
    assert credentials.for_realm("other") is None
    credentials.remove("nowhere")  # nothing happens
    with pytest.raises(UsageError):
        credentials.add("", "x")
    with pytest.raises(UsageError):
        credentials.add('al"ice', "x")


def test_client_picks_the_strongest_challenge_of_each_realm() -> None:
    auth = ClientAuth(store(("alice", "pw", None)), cnonce=lambda: "c0ffee")
    request = register()
    response = challenge_response(
        request,
        'Digest realm="example.org", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="example.org", nonce="n2", algorithm=SHA-256, qop="auth"',
        'Digest realm="example.org", nonce="n3", algorithm=SHA-1, qop="auth"',  # unknown: skipped
        'Basic realm="example.org"',  # another scheme: skipped
    )
    ((name, value),) = auth.authorize(request, response)
    digest = parse_digest_response(value)
    assert name == "Authorization" and digest.algorithm is Algorithm.SHA256 and digest.nonce == "n2"
    assert digest.nc == 1 and digest.cnonce == "c0ffee" and digest.uri == "sip:example.org"
    assert auth.next_nc("n2") == 2  # the count goes on for that nonce


def test_client_answers_a_proxy_and_a_server_keeping_both() -> None:
    auth = ClientAuth(store(("alice", "pa", "proxy.org"), ("alice", "pu", "uas.org")))
    first = register()
    step1 = auth.authorize(
        first,
        challenge_response(first, 'Digest realm="proxy.org", nonce="p1", qop="auth"', proxy=True, code=407),
    )
    second = resubmit(
        first, via=Via("UDP", "127.0.0.9", 5060, (("branch", "z9hG4bK2x"),)), cseq=2, credentials=step1
    )
    assert [n for n, _ in step1] == ["Proxy-Authorization"]
    step2 = auth.authorize(
        wire(second), challenge_response(second, 'Digest realm="uas.org", nonce="u1", qop="auth"')
    )
    names = sorted(n for n, _ in step2)
    assert names == ["Authorization", "Proxy-Authorization"]
    proxy = parse_digest_response(dict(step2)["Proxy-Authorization"])
    assert proxy.nonce == "p1" and proxy.nc == 2  # recomputed with the next count, not repeated


def test_client_retries_once_then_gives_up_on_wrong_credentials() -> None:
    auth = ClientAuth(store(("alice", "wrong", None)))
    first = register()
    retry = resubmit(
        first,
        via=via(0),
        cseq=2,
        credentials=auth.authorize(
            first, challenge_response(first, 'Digest realm="r", nonce="a", qop="auth"')
        ),
    )
    # The server says no again with a fresh nonce but without stale: the password is wrong.
    with pytest.raises(AuthenticationFailedError, match="refused") as failed:
        auth.authorize(wire(retry), challenge_response(retry, 'Digest realm="r", nonce="b", qop="auth"'))
    assert failed.value.status_code == 401


def test_client_follows_stale_but_not_for_ever() -> None:
    auth = ClientAuth(store(("alice", "pw", None)))
    request = register()
    request = resubmit(
        request,
        via=via(0),
        cseq=2,
        credentials=auth.authorize(
            request, challenge_response(request, 'Digest realm="r", nonce="n0", qop="auth"')
        ),
    )
    for n in range(1, MAX_STALE_RETRIES + 1):
        stale = challenge_response(request, f'Digest realm="r", nonce="n{n}", qop="auth", stale=true')
        credentials = auth.authorize(wire(request), stale)
        assert parse_digest_response(credentials[0][1]).nonce == f"n{n}"
        request = resubmit(request, via=via(0), cseq=2 + n, credentials=credentials)
    with pytest.raises(AuthenticationFailedError, match="stale"):
        auth.authorize(
            wire(request), challenge_response(request, 'Digest realm="r", nonce="nx", qop="auth", stale=true')
        )


def test_client_failures() -> None:
    request = register()
    nobody = ClientAuth(store(("alice", "pw", "elsewhere")))
    with pytest.raises(AuthenticationFailedError, match="no credentials for realm 'r'"):
        nobody.authorize(request, challenge_response(request, 'Digest realm="r", nonce="n"'))
    with pytest.raises(AuthenticationFailedError, match="no Digest challenge"):
        nobody.authorize(request, challenge_response(request, 'Basic realm="r"'))
    with pytest.raises(AuthenticationFailedError, match="no Digest challenge"):
        nobody.authorize(request, challenge_response(request))
    with pytest.raises(UsageError):
        nobody.authorize(request, challenge_response(request, code=403))
    # A chain of ever new realms ends.
    auth = ClientAuth(store(("alice", "pw", None)))
    for n in range(MAX_REALMS):
        credentials = auth.authorize(
            wire(request), challenge_response(request, f'Digest realm="r{n}", nonce="n", qop="auth"')
        )
        request = resubmit(request, via=via(0), cseq=n + 2, credentials=credentials)
    with pytest.raises(AuthenticationFailedError, match="realms"):
        auth.authorize(wire(request), challenge_response(request, 'Digest realm="more", nonce="n"'))


def test_rfc2069_server_and_renew() -> None:
    auth = ClientAuth(store(("alice", "pw", None)), cnonce=lambda: "cn")
    request = register()
    credentials = auth.authorize(request, challenge_response(request, 'Digest realm="r", nonce="n"'))
    digest = parse_digest_response(credentials[0][1])
    assert digest.qop is None and digest.nc is None and digest.cnonce is None
    value = str(credentials[0][1])
    assert "nc=" not in value and "cnonce" not in value
    # renew: the same nonce for another request (a REGISTER again after a 423), next count.
    auth2 = ClientAuth(store(("alice", "pw", None)))
    first = register()
    sent = resubmit(
        first,
        via=via(0),
        cseq=2,
        credentials=auth2.authorize(
            first, challenge_response(first, 'Digest realm="r", nonce="k", qop="auth"')
        ),
    )
    again = register(3)
    ((name, renewed),) = auth2.renew(wire(sent), again)
    assert name == "Authorization" and parse_digest_response(renewed).nc == 2
    assert auth2.renew(first, again) == []  # nothing carried, nothing renewed


def test_resubmit_keeps_the_request_but_via_cseq_and_credentials() -> None:
    request = register(body=b"hello")
    request.headers.add("Authorization", 'Digest username="old", realm="x", nonce="n", uri="u", response="r"')
    new_via = Via("UDP", "127.0.0.9", 5060, (("branch", "z9hG4bKnew"),))
    again = wire(
        resubmit(
            request,
            via=new_via,
            cseq=7,
            credentials=[("Proxy-Authorization", Credentials("Digest", (("realm", '"p"'),)))],
        )
    )
    assert again.top_via is not None and again.cseq is not None and again.from_ is not None
    assert again.top_via.branch == "z9hG4bKnew" and again.cseq.number == 7
    assert again.call_id == "call-1" and again.body == b"hello" and again.from_.tag == "a1"
    assert "Authorization" not in again.headers and "Proxy-Authorization" in again.headers
    names = [name for name, _ in again.headers]
    assert names[-2:] == ["Content-Type", "Content-Length"]


# -- the server -------------------------------------------------------------------------------


def authenticator(**options: Any) -> DigestAuthenticator:
    return DigestAuthenticator("example.org", {"alice": "pw", "bob": "bpw"}, secret=b"k" * 32, **options)


def answered(
    server: DigestAuthenticator,
    request: Request,
    now: float,
    *,
    password: str = "pw",
    user: str = "alice",
    client: ClientAuth | None = None,
) -> Request:
    """The request again, with credentials answering a fresh challenge of ``server``."""
    refused = server.check(request, SOURCE, now)
    assert isinstance(refused, Refused)
    response = parse_message(make_response(request, refused.status_code, headers=refused.headers).serialize())
    assert isinstance(response, Response)
    client = client or ClientAuth(store((user, password, None)))
    return again(request, client.authorize(request, response))


def test_server_challenges_sha256_first_and_accepts() -> None:
    server = authenticator()
    refused = server.check(register(), SOURCE, 0.0)
    assert isinstance(refused, Refused) and refused.status_code == 401
    challenges = [parse_challenge(parse_credentials(str(v)), proxy=False) for _, v in refused.headers]
    assert [c.algorithm for c in challenges] == [Algorithm.SHA256, Algorithm.MD5]
    assert all(c.qops == (Qop.AUTH,) and c.realm == "example.org" for c in challenges)
    good = answered(server, register(), 1.0)
    assert "algorithm=SHA-256" in (good.headers.get("Authorization") or "")
    assert user_of(server.check(good, SOURCE, 2.0)) == "alice"
    stats = server.statistics()
    assert (stats.challenges, stats.accepted, stats.failed) == (2, 1, 0)


def test_server_refuses_wrong_and_unknown_users_alike_and_counts_per_source() -> None:
    server = authenticator()
    wrong = server.check(answered(server, register(), 0.0, password="nope"), SOURCE, 0.0)
    unknown = server.check(answered(server, register(), 0.0, user="mallory"), ("127.0.0.10", 5060), 0.0)
    assert isinstance(wrong, Refused) and isinstance(unknown, Refused)
    assert wrong.status_code == unknown.status_code == 401  # a scanner cannot tell them apart
    assert [n for n, _ in wrong.headers] == [n for n, _ in unknown.headers]
    assert server.failures == {"127.0.0.9": 1, "127.0.0.10": 1}
    assert server.statistics().failures_by_source == {"127.0.0.9": 1, "127.0.0.10": 1}
    assert server.statistics().failed == 2


def test_server_nonces_go_stale_and_counts_stop_replays() -> None:
    server = authenticator(nonce_lifetime=30)
    good = answered(server, register(), 0.0)
    late = server.check(good, SOURCE, 31.0)  # right password, old nonce
    assert isinstance(late, Refused) and "stale=true" in str(late.headers[0][1])
    assert server.statistics().stale == 1 and server.failures == {}
    fresh = answered(server, register(), 40.0)
    assert user_of(server.check(fresh, SOURCE, 41.0)) == "alice"
    replay = server.check(fresh, SOURCE, 42.0)  # the same nc again
    assert isinstance(replay, Refused) and "stale=true" in str(replay.headers[0][1])
    assert server.statistics().replays == 1 and server.failures == {"127.0.0.9": 1}
    # The next count of the same nonce is fine.
    client = ClientAuth(store(("alice", "pw", None)))
    nonce = parse_digest_response(parse_credentials(fresh.headers.get("Authorization") or "")).nonce
    for _ in range(5):
        client.next_nc(nonce)  # counts 1..5 used elsewhere: the next is 6, above the server's 1
    challenge = Challenge("example.org", nonce, Algorithm.SHA256, (Qop.AUTH,))
    request = register(5)
    digest = answer_challenge(
        challenge,
        username="alice",
        password="pw",
        method="REGISTER",
        uri=request.uri_text,
        nc=client.next_nc(nonce),
        cnonce="x",
    )
    request.headers.add("Authorization", digest.to_credentials())
    assert user_of(server.check(wire(request), SOURCE, 43.0)) == "alice"


def test_server_refusals() -> None:
    server = authenticator(algorithms=(Algorithm.SHA256,))
    good = answered(server, register(), 0.0)
    value = good.headers.get("Authorization") or ""

    def check(text: str, request: Request | None = None) -> Refused:
        request = request or register(2)
        request.headers.set("Authorization", text)
        verdict = server.check(wire(request), SOURCE, 1.0)
        assert isinstance(verdict, Refused)
        return verdict

    assert check(value.replace("algorithm=SHA-256", "algorithm=MD5")).why == "algorithm MD5 was not offered"
    no_qop = value.split(", qop=")[0] + ", algorithm=SHA-256"
    assert (
        check(no_qop.replace(", algorithm=SHA-256, algorithm=SHA-256", ", algorithm=SHA-256")).why
        == "credentials without an offered qop"
    )
    assert check(value.replace('uri="sip:example.org"', 'uri="sip:other.org"')).status_code == 400
    assert check('Digest realm="example.org", nonce="x"').status_code == 400  # unreadable
    forged = check(value.replace('nonce="', 'nonce="AAAA'))
    assert forged.why == "a nonce we did not issue" and forged.status_code == 401
    assert check(value.replace('response="', 'response="0')).why == "wrong credentials"
    # Credentials for another realm are no credentials for us: a plain challenge, no failure.
    before = server.statistics().failed
    assert check(value.replace('realm="example.org"', 'realm="elsewhere"')).why == "credentials needed"
    assert server.statistics().failed == before
    stats = server.statistics()
    assert stats.malformed == 2 and stats.failed == 4


def test_server_scope_proxy_mode_and_usage() -> None:
    server = authenticator()
    assert user_of(server.check(register(method="OPTIONS"), SOURCE, 0.0)) is None
    assert user_of(server.check(register(to_tag="t"), SOURCE, 0.0)) is None  # in a dialog
    strict = authenticator(in_dialog=True)
    assert isinstance(strict.check(register(to_tag="t"), SOURCE, 0.0), Refused)
    proxy = authenticator(proxy=True)
    refused = proxy.check(register(method="INVITE"), SOURCE, 0.0)
    assert isinstance(refused, Refused) and refused.status_code == 407
    assert {n for n, _ in refused.headers} == {"Proxy-Authenticate"}
    assert proxy.credentials_header == "Proxy-Authorization"
    good = answered(proxy, register(method="INVITE"), 0.0)
    assert user_of(proxy.check(good, SOURCE, 0.0)) == "alice"
    userhash = authenticator()
    request = register()
    challenge = Challenge(
        "example.org", userhash.new_nonce(0.0), Algorithm.SHA256, (Qop.AUTH,), userhash=True
    )
    request.headers.add(
        "Authorization",
        answer_challenge(
            challenge,
            username="bob",
            password="bpw",
            method="REGISTER",
            uri=request.uri_text,
            nc=1,
            cnonce="c",
        ).to_credentials(),
    )
    assert user_of(userhash.check(wire(request), SOURCE, 0.0)) == "bob"
    bad: dict[str, Any]
    for bad in (
        {"realm": 'a"b'},
        {"users": {}},
        {"algorithms": ()},
        {"algorithms": (Algorithm.MD5_SESS,)},
        {"qops": ()},
        {"nonce_lifetime": 0},
    ):
        options: dict[str, Any] = {"realm": "r", "users": {"u": "p"}, **bad}
        with pytest.raises(UsageError):
            DigestAuthenticator(**options)


def test_endpoint_answers_unauthenticated_requests_statelessly_allocating_nothing() -> None:
    endpoint = Endpoint(EndpointConfig(allow=("INVITE", "REGISTER", "OPTIONS"), malloc_debug=True, seed=1))
    endpoint.add_listener("udp", ("127.0.0.1", 5060))
    endpoint.authenticator = authenticator()
    used_before = endpoint.factory.statistics().used_size
    for n in range(50):
        endpoint.receive(register(n + 1, method="INVITE").serialize(), SOURCE, "udp", float(n))
    assert endpoint.transactions() == [] and endpoint.next_event() is None
    assert not endpoint.leak_report()
    assert endpoint.factory.statistics().used_size == used_before  # every rx pool went back
    out = endpoint.datagrams_to_send()
    assert len(out) == 50 and all(o.data.startswith(b"SIP/2.0 401 ") for o in out)
    first = parse_message(out[0].data)
    assert first.to is not None and first.to.tag  # a stateless answer with a To tag of ours
    assert endpoint.stats["auth refused"] == 50
    # With credentials, the request reaches the transaction layer.
    good = answered(endpoint.authenticator, register(99, method="INVITE"), 60.0)
    endpoint.receive(good.serialize(), SOURCE, "udp", 61.0)
    assert len(endpoint.transactions()) == 1
    assert not endpoint.close()
