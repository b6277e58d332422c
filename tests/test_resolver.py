"""RFC 3263 server location against a real DNS server: dnsmasq on loopback, started here with
NAPTR, SRV and A records, answering dnspython (`.ci/run` installs dnsmasq)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import pytest

from invsess.aio import DnsResolver, ResolutionError, SendGuard, SystemResolver, Target, UserAgent
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState
from invsess.sdp import parse_sdp
from invsess.sip import SipUri, parse_uri
from invsess.transaction import TimerConfig

DNSMASQ = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(DNSMASQ is None, reason="dnsmasq is not installed (.ci/run installs it)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dnsmasq(records: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """dnsmasq answering only ``records`` (its own options) on a free loopback port."""
    for _ in range(5):
        port = free_udp_port()
        proc = subprocess.Popen(
            [DNSMASQ or "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
             "--pid-file=", f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
             "--log-facility=-", "--local=/test/", *records],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            proc.communicate(timeout=0.5)  # still running after half a second: it is serving
        except subprocess.TimeoutExpired:
            return proc, port
    raise RuntimeError("dnsmasq would not start")


class Dns:
    """A dnsmasq for one test, with the records given."""

    def __init__(self, records: list[str]) -> None:
        self.proc, self.port = start_dnsmasq(records)

    def resolver(self) -> DnsResolver:
        return DnsResolver([("127.0.0.1", self.port)], seed=1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=5)  # and its pipe closed


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


async def test_naptr_then_srv_then_a_records_in_rfc_3263_order() -> None:
    dns = Dns([
        "--host-record=sip1.example.test,127.0.0.11",
        "--host-record=sip2.example.test,127.0.0.12",
        "--host-record=tcp1.example.test,127.0.0.13",
        # NAPTR: TCP preferred by order; UDP next; a service we do not do is skipped.
        "--naptr-record=example.test,10,50,S,SIP+D2T,,_sip._tcp.example.test",
        "--naptr-record=example.test,20,50,S,SIP+D2U,,_sip._udp.example.test",
        "--naptr-record=example.test,5,50,S,SIP+D2S,,_sip._sctp.example.test",
        "--srv-host=_sip._udp.example.test,sip2.example.test,5072,20,0",
        "--srv-host=_sip._udp.example.test,sip1.example.test,5071,10,0",
        "--srv-host=_sip._tcp.example.test,tcp1.example.test,5080,10,0",
    ])  # fmt: skip
    try:
        resolver = dns.resolver()
        assert await resolver.resolve(sip("sip:bob@example.test"), ("udp", "tcp")) == [
            Target("127.0.0.13", 5080, "tcp")
        ]
        # Listening on UDP only: the TCP NAPTR is skipped; SRV priorities order the targets.
        assert await resolver.resolve(sip("sip:bob@example.test"), ("udp",)) == [
            Target("127.0.0.11", 5071, "udp"),
            Target("127.0.0.12", 5072, "udp"),
        ]
        # A transport parameter skips NAPTR; a port skips SRV too (§4.1, §4.2).
        assert (await resolver.resolve(sip("sip:bob@example.test;transport=udp"), ("udp", "tcp")))[
            0
        ] == Target("127.0.0.11", 5071, "udp")
        assert await resolver.resolve(sip("sip:bob@sip2.example.test:6000"), ("udp",)) == [
            Target("127.0.0.12", 6000, "udp")
        ]
        # No NAPTR and no SRV: A records with the default port.
        assert await resolver.resolve(sip("sip:bob@sip1.example.test"), ("udp",)) == [
            Target("127.0.0.11", 5060, "udp")
        ]
        assert await resolver.resolve(sip("sip:bob@127.0.0.5:7000"), ("udp",)) == [
            Target("127.0.0.5", 7000, "udp")
        ]
        with pytest.raises(ResolutionError, match=r"nowhere\.test"):
            await resolver.resolve(sip("sip:bob@nowhere.test"), ("udp",))
        with pytest.raises(ResolutionError, match="tls"):
            await resolver.resolve(sip("sips:bob@example.test"), ("udp",))
    finally:
        dns.close()


async def test_srv_without_naptr_and_a_dead_server() -> None:
    dns = Dns([
        "--host-record=only.example.test,127.0.0.21",
        "--srv-host=_sip._udp.srv.test,only.example.test,5090,0,0",
    ])  # fmt: skip
    try:
        assert await dns.resolver().resolve(sip("sip:bob@srv.test"), ("udp",)) == [
            Target("127.0.0.21", 5090, "udp")
        ]
    finally:
        dns.close()
    silent = DnsResolver([("127.0.0.1", free_udp_port())], timeout=0.5)
    with pytest.raises(ResolutionError, match="failed"):
        await silent.resolve(sip("sip:bob@srv.test"), ("udp",))


async def test_a_call_placed_by_name_reaches_the_callee_its_srv_record_names() -> None:
    timers = TimerConfig(t1=0.02, t2=0.16, t4=0.1)
    media = parse_sdp(
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    bob = await UserAgent.create(["udp:127.0.0.1:0"], sdp=media, user="bob", guard=SendGuard.loopback_only(),
                                 config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=timers))  # fmt: skip
    port = bob.endpoint.listeners["udp"][1]
    dns = Dns([
        "--host-record=pbx.example.test,127.0.0.1",
        "--naptr-record=example.test,10,50,S,SIP+D2U,,_sip._udp.example.test",
        f"--srv-host=_sip._udp.example.test,pbx.example.test,{port},10,0",
    ])  # fmt: skip
    try:
        alice = await UserAgent.create(["udp:127.0.0.1:0"], sdp=media, user="alice", guard=SendGuard.loopback_only(),
                                       config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=timers),
                                       resolver=dns.resolver())  # fmt: skip
        call = await alice.call("sip:bob@example.test")
        incoming = await bob.incoming(timeout=5)
        assert incoming.request is not None and incoming.request.uri_text == "sip:bob@example.test"
        await incoming.answer()
        await call.wait_for(InviteState.CONFIRMED)
        await call.hangup()
        assert call.cause == 200
        for ua in (alice, bob):
            assert not await ua.close()
    finally:
        dns.close()


async def test_the_system_resolver_uses_the_loops_getaddrinfo() -> None:
    resolver = SystemResolver()
    assert await resolver.resolve(sip("sip:bob@localhost:5099"), ("udp",)) in (
        [Target("127.0.0.1", 5099, "udp")],
        [Target("127.0.0.1", 5099, "udp"), Target("::1", 5099, "udp")],
    )
    assert await resolver.resolve(sip("sip:bob@localhost;transport=tcp"), ("udp", "tcp")) != []
    with pytest.raises(ResolutionError):
        await resolver.resolve(sip("sip:bob@no-such-host.invalid"), ("udp",))
    await asyncio.sleep(0)
