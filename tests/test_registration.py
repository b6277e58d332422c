"""Registration, sans-IO, in virtual time: the client against invsess's registrar (and scripted
registrars for what ours never does), every transition of the client's table taken."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from invsess.auth import DigestAuthenticator
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import SessionLayer
from invsess.registration import (
    Registered,
    Registrar,
    Registration,
    RegistrationFailed,
    RegState,
    Unregistered,
    same_binding,
)
from invsess.registration.client import TRANSITIONS, RegInput
from invsess.sip import LocalProtocolError, Request, make_request, parse_message, parse_uri
from invsess.sip.headers import NameAddress, Via
from invsess.testing import ScriptedPeer, SimNetwork
from invsess.transaction import RequestReceived

from .sessions import ALICE_SDP

CLIENT, SERVER = ("127.0.0.1", 5060), ("127.0.0.2", 5060)
REGISTRAR = "sip:127.0.0.2:5060"


def state(reg: Registration) -> RegState:
    """The registration's state, read afresh (mypy would narrow ``reg.state`` across calls)."""
    return reg.state


class Bed:
    """A client layer and a registrar layer (digest-protected when ``users``) on one network."""

    def __init__(
        self, *, users: dict[str, str] | None = None, transports: tuple[str, ...] = ("udp",), **registrar: Any
    ) -> None:
        self.net = SimNetwork(seed=7)
        self.client = SessionLayer(
            Endpoint(EndpointConfig(seed=1, malloc_debug=True, allow=("INVITE", "BYE"))),
            ALICE_SDP,
            user="alice",
        )
        self.net.attach(self.client, CLIENT, transports)
        self.server = SessionLayer(
            Endpoint(EndpointConfig(seed=2, malloc_debug=True, allow=("INVITE", "BYE", "REGISTER"))),
            ALICE_SDP,
            user="registrar",
        )
        self.net.attach(self.server, SERVER, transports)
        self.registrar = Registrar(self.server.endpoint, **registrar)
        self.server.attach(self.registrar)
        if users:
            self.server.endpoint.authenticator = DigestAuthenticator("test", users, secret=b"s" * 32)

    def registration(self, **options: Any) -> Registration:
        options.setdefault("expires", 600)
        reg = Registration(
            self.client.endpoint, REGISTRAR, "alice", credentials=self.client.credentials, **options
        )
        self.client.attach(reg)
        return reg

    def run(self, seconds: float) -> None:
        self.net.run_until(self.net.now + seconds)

    def events(self, reg: Registration) -> list[Any]:
        out = []
        while (event := reg.next_event()) is not None:
            out.append(event)
        return out

    def registers(self) -> list[Request]:
        out = []
        for entry in self.net.trace:
            if entry.data.startswith(b"REGISTER ") and entry.fate in ("delivered", "duplicated"):
                message = parse_message(entry.data)
                assert isinstance(message, Request)
                out.append(message)
        return out

    def close(self) -> None:
        self.net.run_until_idle(limit=100)
        for layer in (self.client, self.server):
            while layer.next_event() is not None:
                pass
            assert not layer.close(self.net.now), layer.endpoint.leak_report().format()


def test_register_refresh_and_unregister() -> None:
    bed = Bed(min_expires=10, max_expires=60)
    reg = bed.registration(expires=120)  # the registrar grants at most 60
    reg.start(bed.net.now)
    bed.run(0.1)
    (event,) = bed.events(reg)
    assert isinstance(event, Registered) and event.expires == 60 and not event.refreshed
    assert state(reg) is RegState.REGISTERED
    # Refreshed at the granted interval less min(interval / 2, 32 s): 30 s after.
    assert reg.expires_at is not None and reg.refresh_at == pytest.approx(reg.expires_at - 30)
    bed.run(6)  # the REGISTER transaction's Timer K (T4) is over
    assert bed.client.next_deadline() == pytest.approx(reg.refresh_at)  # the layer drives it
    bed.run(23.8)
    assert bed.events(reg) == []
    bed.run(0.3)
    (refresh,) = bed.events(reg)
    assert isinstance(refresh, Registered) and refresh.refreshed
    first, second = bed.registers()
    assert first.call_id == second.call_id and second.cseq.number == first.cseq.number + 1  # type: ignore[union-attr]
    assert first.from_.tag == second.from_.tag  # type: ignore[union-attr]
    assert str(first.uri) == REGISTRAR and str(first.to.uri) == "sip:alice@127.0.0.2"  # type: ignore[union-attr]
    assert first.headers.get("Expires") == "120" and first.contact[0].uri == reg.contact.uri  # type: ignore[union-attr]
    assert [b.uri for b in bed.registrar.lookup("alice", bed.net.now)] == [str(reg.contact.uri)]
    reg.stop(bed.net.now)
    reg.stop(bed.net.now)  # twice: nothing more
    bed.run(0.1)
    (done,) = bed.events(reg)
    assert isinstance(done, Unregistered) and done.status_code == 200
    assert state(reg) is RegState.UNREGISTERED and reg.next_deadline() is None
    assert bed.registers()[-1].headers.get("Expires") == "0"
    assert bed.registrar.lookup("alice", bed.net.now) == []
    bed.client.detach(reg)
    bed.close()


def test_digest_423_and_wrong_password() -> None:
    bed = Bed(users={"alice": "pw"}, min_expires=300)
    bed.client.credentials.add("alice", "pw")
    reg = bed.registration(expires=60)
    reg.start(bed.net.now)
    bed.run(0.5)
    (event,) = bed.events(reg)
    assert isinstance(event, Registered) and event.expires == 300  # after 401, then 423
    sent = bed.registers()
    assert [r.headers.get("Expires") for r in sent] == ["60", "60", "300"]
    assert ["Authorization" in r.headers for r in sent] == [False, True, True]
    nc = [r.headers.get("Authorization").split("nc=")[1][:8] for r in sent[1:]]  # type: ignore[union-attr]
    assert nc == ["00000001", "00000002"]  # the 423 retry reuses the nonce with the next count
    reg.stop(bed.net.now)
    bed.run(0.5)
    assert isinstance(bed.events(reg)[-1], Unregistered)

    bed.client.credentials.add("alice", "wrong")
    bad = bed.registration(expires=600, retry_base=30)
    bad.start(bed.net.now)
    bed.run(0.5)
    (failed,) = bed.events(bad)
    assert isinstance(failed, RegistrationFailed) and failed.status_code == 401
    assert state(bad) is RegState.FAILED
    assert failed.retry_at is not None and bed.net.now + 14 <= failed.retry_at <= bed.net.now + 30
    bad.stop(bed.net.now)  # never bound: nothing to send
    assert isinstance(bed.events(bad)[-1], Unregistered) and state(bad) is RegState.UNREGISTERED
    assert bed.server.endpoint.authenticator.failures == {"127.0.0.1": 1}  # type: ignore[union-attr]
    bed.close()


def test_failures_retry_with_back_off_and_recover() -> None:
    bed = Bed(max_expires=60)
    reg = bed.registration(expires=60, retry_base=30)
    reg.start(bed.net.now)
    bed.run(0.1)
    assert state(reg) is RegState.REGISTERED
    bed.net.partition(CLIENT, SERVER)
    bed.run(31)  # the refresh at 30 s goes unanswered
    bed.run(33)  # Timer F: 64*T1
    (failed,) = [e for e in bed.events(reg) if isinstance(e, RegistrationFailed)]
    assert failed.status_code == 408 and state(reg) is RegState.FAILED
    first_wait = failed.retry_at - bed.net.now  # type: ignore[operator]
    assert 0 < first_wait <= 30
    bed.run(first_wait + 33)  # the retry goes, unanswered again: the back-off doubles
    (again,) = [e for e in bed.events(reg) if isinstance(e, RegistrationFailed)]
    assert again.retry_at is not None and reg.failures == 2
    bed.net.heal()
    bed.run(again.retry_at - bed.net.now + 0.5)
    assert state(reg) is RegState.REGISTERED and reg.failures == 0
    assert isinstance(bed.events(reg)[-1], Registered)
    reg.stop(bed.net.now)
    bed.run(1)
    bed.close()


def test_stop_before_start_and_misuse() -> None:
    bed = Bed()
    reg = bed.registration()
    reg.stop(bed.net.now)
    assert [type(e) for e in bed.events(reg)] == [Unregistered] and bed.registers() == []
    with pytest.raises(LocalProtocolError, match="cannot start"):
        reg.start(bed.net.now)
    with pytest.raises(LocalProtocolError, match="registrar"):
        Registration(bed.client.endpoint, "sip:alice@127.0.0.2", "alice")
    with pytest.raises(LocalProtocolError, match="negative"):
        Registration(bed.client.endpoint, REGISTRAR, "alice", expires=-1)
    bed.close()


def scripted(bed_net: SimNetwork) -> tuple[SessionLayer, ScriptedPeer]:
    client = SessionLayer(
        Endpoint(EndpointConfig(seed=1, malloc_debug=True, allow=("INVITE", "BYE"))), ALICE_SDP, user="alice"
    )
    bed_net.attach(client, CLIENT, ("udp", "tcp"))
    return client, ScriptedPeer(bed_net, SERVER, name="registrar")


OK = (
    "SIP/2.0 {code} {reason}\n{vias}From: {from_}\nTo: {to};tag=r1\nCall-ID: {call_id}\nCSeq: {cseq}\n{extra}"
    "Content-Length: 0\n\n"
)


def answer(
    peer: ScriptedPeer,
    request: Request,
    code: int = 200,
    reason: str = "OK",
    extra: str = "",
    transport: str = "udp",
) -> None:
    h = request.headers
    peer.send(
        OK.replace("{extra}", extra),
        CLIENT,
        transport=transport,
        code=code,
        reason=reason,
        vias="".join(f"Via: {v}\n" for v in h.get_all("Via")),
        from_=h.get("From"),
        to=h.get("To"),
        call_id=h.get("Call-ID"),
        cseq=h.get("CSeq"),
    )


def test_the_binding_check_and_responses_our_registrar_never_sends() -> None:
    net = SimNetwork(seed=3)
    client, peer = scripted(net)
    reg = Registration(client.endpoint, REGISTRAR, "alice", expires=300, retry=False)
    client.attach(reg)
    reg.start(net.now)
    request = peer.expect(method="REGISTER")
    assert isinstance(request, Request)
    answer(peer, request, extra="Contact: <sip:somebody-else@10.0.0.1>;expires=300\n")
    net.run_until(net.now + 0.1)
    (failed,) = list(iter(reg.next_event, None))
    assert isinstance(failed, RegistrationFailed) and failed.status_code == 200
    assert "binding" in failed.reason and failed.retry_at is None
    # A 423 that asks for nothing more than we asked: a failure, not a loop.
    reg2 = Registration(client.endpoint, REGISTRAR, "alice", expires=300, retry=False)
    client.attach(reg2)
    reg2.start(net.now)
    request = peer.expect(method="REGISTER")
    assert isinstance(request, Request)
    answer(peer, request, 423, "Interval Too Brief", "Min-Expires: 200\n")
    net.run_until(net.now + 0.1)
    assert [getattr(e, "status_code", None) for e in iter(reg2.next_event, None)] == [423]
    # Our contact with the registrar's parameters added, and the Expires header granting.
    reg3 = Registration(client.endpoint, REGISTRAR, "alice", expires=300)
    client.attach(reg3)
    reg3.start(net.now)
    request = peer.expect(method="REGISTER")
    assert isinstance(request, Request)
    contact = str(reg3.contact.uri)
    answer(peer, request, extra=f'Contact: <{contact};ob>;received="sip:1.2.3.4"\nExpires: 120\n')
    net.run_until(net.now + 0.1)
    (ok,) = list(iter(reg3.next_event, None))
    assert isinstance(ok, Registered) and ok.expires == 120
    # A 2xx to the unregistration that still lists us: Unregistered all the same (logged).
    reg3.stop(net.now)
    request = peer.expect(method="REGISTER")
    assert isinstance(request, Request)
    answer(peer, request, extra=f"Contact: <{contact}>;expires=60\n")
    net.run_until(net.now + 0.1)
    assert [type(e) for e in iter(reg3.next_event, None)] == [Unregistered]
    for r in (reg, reg2, reg3):
        client.detach(r)
    net.run_until_idle(limit=60)
    assert not client.close(net.now)


def test_outbound_instance_flow_timer_and_keepalives_over_tcp() -> None:
    net = SimNetwork(seed=5)
    client, peer = scripted(net)
    instance = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    reg = Registration(
        client.endpoint,
        REGISTRAR + ";transport=tcp",
        "alice",
        expires=600,
        transport="tcp",
        instance_id=instance,
    )
    client.attach(reg)
    reg.start(net.now)
    request = peer.expect(method="REGISTER")
    assert isinstance(request, Request)
    (contact,) = request.contact
    assert isinstance(contact, NameAddress)
    assert contact.param("+sip.instance") == f"<urn:uuid:{instance}>" and contact.param("reg-id") == "1"
    assert contact.uri.transport == "tcp"  # type: ignore[union-attr]
    assert "outbound" in request.supported
    # The registrar rewrote the URI (a NAT) but kept the instance: still our binding.
    answer(
        peer,
        request,
        extra=f'Contact: <sip:alice@192.0.2.1:9999;transport=tcp>;+sip.instance="<urn:uuid:{instance}>";reg-id=1;expires=600\nFlow-Timer: 20\n',
        transport="tcp",
    )
    net.run_until(net.now + 0.1)
    assert isinstance(reg.next_event(), Registered)
    net.run_until(net.now + 100)
    pings = [e for e in net.trace if e.data == b"\r\n\r\n" and e.source == CLIENT]
    assert len(pings) >= 5 and all(e.transport == "tcp" for e in pings)
    gaps = [b.time - a.time for a, b in itertools.pairwise(pings)]
    assert all(16 - 1e-6 <= g <= 20 + 1e-6 for g in gaps), gaps  # 80-100 % of the Flow-Timer
    reg.stop(net.now)
    assert reg.keepalive_at is None
    client.detach(reg)
    net.run_until_idle(limit=60)
    assert not client.close(net.now)


def test_every_transition_of_the_client_table_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: set[tuple[RegState, RegInput]] = set()
    original = Registration._go

    def recording(self: Registration, event: RegInput) -> RegState:
        taken.add((self.state, event))
        return original(self, event)

    monkeypatch.setattr(Registration, "_go", recording)
    test_register_refresh_and_unregister()
    test_digest_423_and_wrong_password()
    test_failures_retry_with_back_off_and_recover()
    test_stop_before_start_and_misuse()
    test_stop_while_registering_and_after_failing()
    assert set(TRANSITIONS) - taken == set()


def test_stop_while_registering_and_after_failing() -> None:
    bed = Bed(max_expires=60)
    reg = bed.registration(expires=60)
    reg.start(bed.net.now)
    reg.stop(bed.net.now)  # the REGISTER is on its way: Expires: 0 follows it
    bed.run(1)
    assert [type(e) for e in bed.events(reg)] == [Unregistered] and state(reg) is RegState.UNREGISTERED
    assert [r.headers.get("Expires") for r in bed.registers()] == ["60", "0"]
    assert bed.registrar.lookup("alice", bed.net.now) == []
    # Registered, then a refresh fails: the binding may still live, so stopping sends Expires: 0.
    reg2 = bed.registration(expires=60, retry_base=100)
    reg2.start(bed.net.now)
    bed.run(0.1)
    # The registrar starts asking for credentials we do not have: the refresh fails at once.
    bed.server.endpoint.authenticator = DigestAuthenticator("test", {"somebody": "else"})
    bed.run(31)
    assert state(reg2) is RegState.FAILED
    reg2.stop(bed.net.now)
    bed.run(1)
    events = bed.events(reg2)
    assert isinstance(events[-1], Unregistered) and events[-1].status_code == 401
    assert bed.registers()[-1].headers.get("Expires") == "0"
    # Stopped while a refresh is under way: Expires: 0 goes at once, the refresh's answer is ignored.
    bed.server.endpoint.authenticator = None
    reg3 = bed.registration(expires=60)
    reg3.start(bed.net.now)
    bed.run(0.1)
    bed.run(reg3.refresh_at - bed.net.now)  # type: ignore[operator]
    assert state(reg3) is RegState.REFRESHING
    reg3.stop(bed.net.now)
    bed.run(1)
    assert [type(e) for e in bed.events(reg3)][-1] is Unregistered and state(reg3) is RegState.UNREGISTERED
    assert bed.registrar.lookup("alice", bed.net.now) == []
    bed.close()


# -- the registrar ----------------------------------------------------------------------------------

_BRANCHES = itertools.count()


def register_request(
    contact: str,
    *,
    cseq: int = 1,
    call_id: str = "c1",
    expires: str | None = None,
    to: str = "sip:alice@example.org",
    extra: list[tuple[str, object]] | None = None,
) -> Request:
    headers: list[tuple[str, object]] = (
        [("Contact", contact)] + ([("Expires", expires)] if expires is not None else []) + (extra or [])
    )
    request = make_request(
        "REGISTER",
        "sip:example.org",
        via=Via("UDP", "127.0.0.9", 5060, (("branch", f"z9hG4bK{call_id}x{next(_BRANCHES)}"),)),
        from_=NameAddress(parse_uri(to), None, (("tag", "f"),)),
        to=NameAddress(parse_uri(to)),
        call_id=call_id,
        cseq=cseq,
        headers=headers,
    )
    parsed = parse_message(request.serialize())
    assert isinstance(parsed, Request)
    return parsed


def registrar_answer(endpoint: Endpoint, registrar: Registrar, request: Request, now: float) -> Any:
    endpoint.handle_timers(now)  # earlier transactions (and their merge entries) end
    while endpoint.next_event() is not None:
        pass
    endpoint.receive(request.serialize(), ("127.0.0.9", 5060), "udp", now)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert registrar.on_event(event, now)
    return parse_message(endpoint.datagrams_to_send()[-1].data)


def test_registrar_rules() -> None:
    endpoint = Endpoint(EndpointConfig(allow=("REGISTER",), malloc_debug=True, seed=4))
    endpoint.add_listener("udp", ("127.0.0.1", 5060))
    registrar = Registrar(endpoint, min_expires=60, max_expires=3600, max_contacts=2)
    now = 1000.0
    ok = registrar_answer(endpoint, registrar, register_request("<sip:alice@10.0.0.1>", expires="120"), now)
    assert ok.status_code == 200 and [str(c) for c in ok.contact] == ["<sip:alice@10.0.0.1>;expires=120"]
    # Another contact (per-contact expires); both listed; the To tag is ours.
    ok = registrar_answer(
        endpoint, registrar, register_request("<sip:alice@10.0.0.2>;expires=600", cseq=2), now
    )
    assert len(ok.contact) == 2 and ok.to.tag
    assert registrar.statistics(now)["location-contacts"] == 2
    # Too brief; out of order (same Call-ID, old CSeq); too many; not an AOR; not the user's.
    assert (
        registrar_answer(
            endpoint, registrar, register_request("<sip:alice@10.0.0.1>", expires="30", cseq=3), now
        ).status_code
        == 423
    )
    # (40 s later: the first REGISTER's transaction is over, or it would be a merged request.)
    assert (
        registrar_answer(
            endpoint, registrar, register_request("<sip:alice@10.0.0.1>", cseq=1), now + 40
        ).status_code
        == 500
    )
    assert (
        registrar_answer(
            endpoint, registrar, register_request("<sip:alice@10.0.0.3>", cseq=4), now
        ).status_code
        == 503
    )
    assert (
        registrar_answer(
            endpoint, registrar, register_request("<sip:x@10.0.0.3>", to="sip:example.org", cseq=5), now
        ).status_code
        == 404
    )
    creds: list[tuple[str, object]] = [
        (
            "Authorization",
            'Digest username="mallory", realm="r", nonce="n", uri="sip:example.org", response="x"',
        )
    ]
    assert (
        registrar_answer(
            endpoint, registrar, register_request("<sip:m@10.0.0.3>", cseq=6, extra=creds), now
        ).status_code
        == 403
    )
    # Contact: * needs Expires: 0; with it every binding goes.
    assert registrar_answer(endpoint, registrar, register_request("*", cseq=7), now).status_code == 400
    assert (
        registrar_answer(endpoint, registrar, register_request("*", expires="0", cseq=8), now).status_code
        == 200
    )
    assert registrar.lookup("alice", now) == []
    # Bindings expire by themselves (read lazily).
    registrar_answer(endpoint, registrar, register_request("<sip:alice@10.0.0.1>", expires="60", cseq=9), now)
    assert len(registrar.lookup("alice", now + 59)) == 1
    assert registrar.lookup("alice", now + 61) == []
    stats = registrar.statistics(now + 61)
    assert stats["registered_users"] == 0 and stats["accepted_regs"] == 4 and stats["rejected_regs"] == 6
    assert not endpoint.close()


def test_without_a_registrar_the_application_gets_the_register() -> None:
    net = SimNetwork(seed=9)
    server = SessionLayer(
        Endpoint(EndpointConfig(seed=2, malloc_debug=True, allow=("INVITE", "BYE", "REGISTER"))), ALICE_SDP
    )
    net.attach(server, SERVER)
    client, _ = scripted(SimNetwork(seed=1))
    peer = ScriptedPeer(net, CLIENT)
    peer.send(register_request("<sip:alice@127.0.0.1>").serialize(), SERVER)
    net.run_until(net.now + 0.1)
    event = server.next_event()
    assert isinstance(event, RequestReceived) and event.request.method == "REGISTER"
    server.endpoint.respond(
        event.transaction,
        __import__("invsess.sip", fromlist=["make_response"]).make_response(event.request, 200),
        net.now,
    )
    net.run_until_idle(limit=60)
    assert not server.close(net.now)
    assert not client.close(0.0)


def test_same_binding() -> None:
    a = parse_uri("sip:alice@10.0.0.1:5060;transport=TCP")
    assert same_binding(a, parse_uri("sip:alice@10.0.0.1;transport=tcp;ob")) is True
    assert same_binding(a, parse_uri("sip:alice@10.0.0.1")) is False
    assert same_binding(a, parse_uri("sips:alice@10.0.0.1;transport=tcp")) is False
    assert same_binding(a, parse_uri("tel:+1")) is False
