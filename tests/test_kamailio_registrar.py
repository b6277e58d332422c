"""invsess softphones against a real Kamailio registrar and record-routing proxy.

``examples/kamailio/registrar-proxy.cfg`` (documented in docs/kamailio.md) runs in the test bed
of invsess.testing.kamailio: digest authentication of REGISTER (401) and INVITE (407) against
users written in the config, usrloc in memory, record_route/loose_route. The tests read
Kamailio's own view of the bindings over its JSON-RPC (``ul.dump``, ``stats.get_statistics``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from invsess.aio import RegistrationError, UserAgent
from invsess.inv import InviteState
from invsess.registration import RegState
from invsess.sdp import parse_sdp
from invsess.sip import SipUri, Uri, parse_message
from invsess.testing.kamailio import Kamailio
from invsess.trace import Trace
from invsess.transaction import TimerConfig

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "examples" / "kamailio" / "registrar-proxy.cfg"
USERS = {"USER_A": "alice", "PASS_A": "alice-secret", "USER_B": "bob", "PASS_B": "bob-secret"}

SDP = (
    "v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def kamailio(factory, **defines):
    return factory(CFG, substs=USERS, defines=defines or None)


async def softphone(user: str, port: int, transport: str = "udp", trace: Trace | None = None) -> UserAgent:
    from invsess.endpoint import EndpointConfig

    config = EndpointConfig(
        allow=("INVITE", "BYE", "OPTIONS", "UPDATE"), timers=TimerConfig(t1=0.1, t2=0.4, t4=0.5)
    )
    return await UserAgent.create(
        [f"{transport}:127.0.0.1:0"],
        sdp=parse_sdp(SDP.format(user=user, port=port)),
        user=user,
        config=config,
        trace=trace,
    )


def aors(kam: Kamailio) -> dict[str, list[dict[str, Any]]]:
    """ul.dump as {user: [contact entries]}."""
    domains = kam.rpc("ul.dump")["Domains"]
    out: dict[str, list[dict[str, Any]]] = {}
    for domain in domains:
        for record in domain["Domain"]["AoRs"]:
            info = record["Info"]
            out[info["AoR"]] = [c["Contact"] for c in info["Contacts"]]
    return out


def usrloc(kam: Kamailio) -> dict[str, int]:
    rows = kam.rpc("stats.get_statistics", "usrloc:")
    return {name.split(":", 1)[1].strip(): int(value) for name, value in (r.split(" = ") for r in rows)}


def sip(uri: Uri) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


async def settled(call) -> None:
    """Until the call's side has the ACK of its last 2xx (a re-INVITE may only follow then)."""
    async with asyncio.timeout(5):
        while awaiting_ack(call.session) or call.session.offers.busy:
            await asyncio.sleep(0.01)


def awaiting_ack(session: Any) -> bool:
    """True while a 2xx of the session waits for its ACK (``ack_wait`` is a part that says so, or
    is there only while it waits, depending on the session layer's version)."""
    wait = session.ack_wait
    return wait is not None and bool(getattr(wait, "waiting", True))


def sent(trace: Trace, by: tuple[str, int], method: str):
    """The requests of ``method`` one side sent, parsed, with where they went."""
    out = []
    for m in trace.messages():
        if m.source == by and m.first_line.startswith(f"{method} "):
            out.append((parse_message(m.data), m.destination))
    return out


async def test_two_softphones_register_call_hold_resume_hang_up(kamailio_factory) -> None:
    kam = kamailio(kamailio_factory)
    proxy = f"{kam.sip_uri};lr"
    trace_a, trace_b = Trace(), Trace()
    alice = await softphone("alice", 40100, trace=trace_a)
    bob = await softphone("bob", 40200, trace=trace_b)
    try:
        reg_a = await alice.register(kam.sip_uri, "alice", "alice-secret", expires=60)
        reg_b = await bob.register(kam.sip_uri, "bob", "bob-secret", expires=60)
        assert reg_a.state is RegState.REGISTERED and reg_a.expires == 60
        assert reg_b.expires == 60

        bindings = aors(kam)
        assert set(bindings) == {"alice", "bob"}
        alice_port = alice.endpoint.listeners["udp"][1]
        assert bindings["alice"][0]["Address"] == f"sip:alice@127.0.0.1:{alice_port}"
        assert bindings["alice"][0]["Expires"] > 50
        assert usrloc(kam)["registered_users"] == 2

        # Alice calls Bob by name, through the proxy (a preloaded Route): the INVITE is challenged
        # (407) and sent again with credentials; Kamailio finds Bob's contact.
        call = await alice.call(f"sip:bob@127.0.0.1:{kam.sip_port}", route=[proxy])
        incoming = await bob.incoming(10)
        await incoming.answer(180)
        await incoming.answer(200)
        await call.wait_for(InviteState.CONFIRMED)
        await incoming.wait_for(InviteState.CONFIRMED)
        invites = sent(trace_a, alice.endpoint.listeners["udp"], "INVITE")
        assert len(invites) == 2  # the first was challenged
        first, second = invites[0][0], invites[1][0]
        assert "Proxy-Authorization" not in first.headers and "Proxy-Authorization" in second.headers
        assert first.call_id == second.call_id and second.cseq.number == first.cseq.number + 1
        assert first.top_via.branch != second.top_via.branch
        # Both dialogs have Kamailio in their route set (Record-Route with ;lr).
        assert [sip(r.uri).host_port for r in call.dialog.route_set] == [kam.sip_address]
        assert sip(call.dialog.route_set[0].uri).lr and sip(incoming.dialog.route_set[0].uri).lr

        await call.hold()
        assert call.media is not None and call.media.local.media[0].direction == "sendonly"
        await call.resume()
        await settled(incoming)
        await incoming.hold()  # the callee's re-INVITE follows its route set too
        await incoming.resume()
        await settled(call)
        await call.hangup()
        await incoming.wait_for(InviteState.DISCONNECTED)

        # re-INVITEs and the BYE went to Kamailio with a Route naming it; the Request-URI was the
        # other side's contact (loose routing).
        for trace, agent, peer in ((trace_a, alice, bob), (trace_b, bob, alice)):
            me = agent.endpoint.listeners["udp"]
            reinvites = sent(trace, me, "INVITE")[-2:] if agent is bob else sent(trace, me, "INVITE")[2:]
            assert len(reinvites) == 2
            for request, destination in reinvites:
                assert destination == kam.sip_address
                assert request.route and request.route[0].uri.host_port == kam.sip_address
                assert request.uri.host_port == peer.endpoint.listeners["udp"]
        ((bye, destination),) = sent(trace_a, alice.endpoint.listeners["udp"], "BYE")
        assert destination == kam.sip_address and bye.route[0].uri.lr
        assert bye.uri.host_port == bob.endpoint.listeners["udp"]
        # The ACK of the 2xx carried the INVITE's credentials (RFC 3261 §13.2.2.4).
        ack = next(r for r, _ in sent(trace_a, alice.endpoint.listeners["udp"], "ACK") if r.cseq.number == 2)
        assert "Proxy-Authorization" in ack.headers
        await call.close()
        await incoming.close()

        # And the other way: Bob calls Alice by name; Bob's INVITE is challenged with his realm.
        back = await bob.call(f"sip:alice@127.0.0.1:{kam.sip_port}", route=[proxy])
        ringing = await alice.incoming(10)
        await ringing.answer(200)
        await back.wait_for(InviteState.CONFIRMED)
        await back.hangup()
        await ringing.wait_for(InviteState.DISCONNECTED)
        assert back.cause == 200 and ringing.cause == 200
        await back.close()
        await ringing.close()
    finally:
        report_a = await alice.close()
        report_b = await bob.close()
    assert not report_a and not report_b, (report_a.format(), report_b.format())
    # close() unregistered both (Expires: 0): Kamailio holds no binding any more.
    assert aors(kam) == {}
    assert usrloc(kam)["registered_users"] == 0


async def test_wrong_password_unknown_user_and_423(kamailio_factory) -> None:
    kam = kamailio(kamailio_factory)
    ua = await softphone("alice", 40300)
    try:
        with pytest.raises(RegistrationError) as refused:
            await ua.register(kam.sip_uri, "alice", "not-the-password", expires=60)
        assert refused.value.status_code == 401
        with pytest.raises(RegistrationError) as unknown:
            await ua.register(kam.sip_uri, "mallory", "whatever", expires=60)
        assert unknown.value.status_code == 401
        assert aors(kam) == {}
        # 3 s is below the test bed's min_expires (5): Kamailio answers 423 with Min-Expires,
        # and the REGISTER goes again with 5.
        reg = await ua.register(kam.sip_uri, "alice", "alice-secret", expires=3)
        assert reg.expires == 5
        # The binding is refreshed before it expires (at 5 - 2.5 s): still there after 7 s.
        await asyncio.sleep(7)
        assert reg.state is RegState.REGISTERED
        assert "alice" in aors(kam)
        refreshes = [e for e in reg.history if getattr(e, "refreshed", False)]
        assert len(refreshes) >= 2
    finally:
        report = await ua.close()
    assert not report
    assert aors(kam) == {}


async def test_sha256_digest_and_outbound_over_tcp(kamailio_factory) -> None:
    """Kamailio challenging with SHA-256 (RFC 8760); an RFC 5626 registration over TCP gets a
    Flow-Timer, and the client keeps the flow up with CRLF pings."""
    kam = kamailio(kamailio_factory, AUTH_SHA256=None)
    trace = Trace()
    ua = await softphone("alice", 40400, transport="tcp", trace=trace)
    try:
        reg = await ua.register(
            f"{kam.sip_uri};transport=tcp",
            "alice",
            "alice-secret",
            expires=60,
            instance_id="f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        )
        (contact,) = aors(kam)["alice"]
        assert contact["Instance"] == "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"
        assert contact["Reg-Id"] == 1
        registers = [parse_message(m.data) for m in trace.messages() if m.first_line.startswith("REGISTER ")]
        assert "algorithm=SHA-256" in (registers[1].headers.get("Authorization") or "")
        assert reg.core._flow_timer == 10  # the test bed's FLOW_TIMER
        assert reg.core.keepalive_at is not None and reg.core.keepalive_at - ua.now() <= 10
    finally:
        report = await ua.close()
    assert not report


async def test_command_line_softphones_through_kamailio(kamailio_factory) -> None:
    """``invsess answer --register`` keeps Bob's binding while it serves; ``invsess call --proxy
    --user --password`` reaches him by name through Kamailio (407 answered); both bindings are
    gone when the commands end."""
    kam = kamailio(kamailio_factory)
    cli = [sys.executable, "-m", "invsess.cli"]
    bob = await asyncio.create_subprocess_exec(
        *cli, "answer", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--register", kam.sip_uri,
        "--user", "bob", "--password", "bob-secret", "--expires", "60", "--calls", "1", "--duration", "40",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    for _ in range(200):
        if "bob" in aors(kam):
            break
        await asyncio.sleep(0.05)
    assert "bob" in aors(kam)
    alice = await asyncio.create_subprocess_exec(
        *cli, "call", f"sip:bob@127.0.0.1:{kam.sip_port}", "--proxy", kam.sip_uri, "--user", "alice",
        "--password", "alice-secret", "--hold", "0.3", "--t1", "0.05",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    placed = (await asyncio.wait_for(alice.communicate(), 60))[0].decode()
    bob_err = (await asyncio.wait_for(bob.communicate(), 60))[1].decode()
    assert alice.returncode == 0 and "1 calls: 1 succeeded" in placed, placed
    assert bob.returncode == 0, bob_err
    assert f"registered at {kam.sip_uri} as bob: expires 60" in bob_err
    assert "calls ended: 1" in bob_err and "0 leaked blocks" in bob_err
    assert aors(kam) == {}  # Bob unregistered when he stopped
