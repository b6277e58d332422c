"""Real sockets on 127.0.0.1 and ::1: UDP, TCP, TLS, hostile stream peers, the send guard."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from invsess.aio import AsyncEndpoint, ListenSpec, SendGuard, SendRefusedError
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.sip import NameAddress, make_request, parse_message, parse_uri
from invsess.transaction import ResponseReceived, TimerConfig, TransactionTerminated, TransactionTimedOut

FAST = TimerConfig(t1=0.05, t2=0.2, t4=0.1)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def make(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext] | None = None, **config: object
) -> AsyncEndpoint:
    cfg = EndpointConfig(malloc_debug=True, timers=FAST, **config)  # type: ignore[arg-type]
    server_ssl, client_ssl = tls_pair or (None, None)
    return AsyncEndpoint(
        Endpoint(cfg), guard=SendGuard.loopback_only(), server_ssl=server_ssl, client_ssl=client_ssl
    )


@pytest.fixture
async def pair(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> AsyncIterator[tuple[AsyncEndpoint, AsyncEndpoint]]:
    uac, uas = await make(tls), await make(tls)
    yield uac, uas
    for ep in (uac, uas):
        assert not await ep.close(timeout=2.0)
        assert ep.guard.refused == [], "something tried to send off this host"


def options(uac: AsyncEndpoint, target: tuple[str, int], transport: str):
    host = f"[{target[0]}]" if ":" in target[0] else target[0]
    return make_request(
        "OPTIONS",
        f"sip:bob@{host}:{target[1]};transport={transport}",
        via=uac.endpoint.via(transport),
        from_=NameAddress(parse_uri("sip:alice@127.0.0.1"), None, (("tag", uac.endpoint.new_tag()),)),
        to=NameAddress(parse_uri("sip:bob@127.0.0.1")),
        call_id=f"aio-{uac.endpoint.new_tag()}",
        cseq=1,
    )


@pytest.mark.parametrize(
    ("transport", "host"),
    [
        ("udp", "127.0.0.1"),
        ("udp", "::1"),
        ("tcp", "127.0.0.1"),
        ("tcp", "::1"),
        ("tls", "127.0.0.1"),
        ("tls", "::1"),
    ],
)
async def test_options_round_trip(
    pair: tuple[AsyncEndpoint, AsyncEndpoint], transport: str, host: str
) -> None:
    uac, uas = pair
    await uac.listen(ListenSpec(transport, host, 0))
    target = await uas.listen(ListenSpec(transport, host, 0))
    uac.endpoint.send_request(options(uac, target, transport), target, transport, uac.now())
    uac.flush()
    event = await uac.next_event(timeout=5)
    assert isinstance(event, ResponseReceived)
    assert event.response.status_code == 200
    assert event.response.allow == ["OPTIONS"]


async def test_udp_timeout_when_nobody_listens(pair: tuple[AsyncEndpoint, AsyncEndpoint]) -> None:
    uac, _ = pair
    await uac.listen("udp:127.0.0.1:0")
    uac.endpoint.send_request(options(uac, ("127.0.0.1", 9), "udp"), ("127.0.0.1", 9), "udp", uac.now())
    uac.flush()
    event = await uac.next_event(timeout=10)
    assert isinstance(event, TransactionTimedOut)
    assert event.timer == "F"


async def test_tcp_connection_refused_ends_the_transaction(pair: tuple[AsyncEndpoint, AsyncEndpoint]) -> None:
    uac, _ = pair
    await uac.listen("tcp:127.0.0.1:0")
    uac.endpoint.send_request(options(uac, ("127.0.0.1", 9), "tcp"), ("127.0.0.1", 9), "tcp", uac.now())
    uac.flush()
    event = await uac.next_event(timeout=5)
    assert isinstance(event, TransactionTerminated)
    assert event.reason.startswith("transport error: tcp connection to 127.0.0.1:9 failed")


async def test_send_guard_refuses_off_host_destinations(pair: tuple[AsyncEndpoint, AsyncEndpoint]) -> None:
    uac, _ = pair
    await uac.listen("udp:127.0.0.1:0")
    for dest in (("192.0.2.1", 5060), ("255.255.255.255", 5060), ("224.0.0.1", 5060)):
        uac.endpoint.send_request(options(uac, dest, "udp"), dest, "udp", uac.now())
        uac.flush()
        event = await uac.next_event(timeout=5)
        assert isinstance(event, TransactionTerminated)
    assert uac.refused == 3
    assert uac.guard.refused == [("192.0.2.1", 5060), ("255.255.255.255", 5060), ("224.0.0.1", 5060)]
    uac.guard.refused.clear()  # expected here; the fixture fails any other test that tried
    with pytest.raises(SendRefusedError):
        SendGuard().check(("255.255.255.255", 5060))  # broadcast is refused even with no allow-list
    SendGuard().check(("192.0.2.1", 5060))  # an open guard allows unicast


async def stream_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


RAW_OPTIONS = (
    b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKbyte\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: bytes@x\r\nCSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


async def read_message(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


async def test_tcp_peer_sending_one_byte_at_a_time(pair: tuple[AsyncEndpoint, AsyncEndpoint]) -> None:
    _, uas = pair
    _, port = await uas.listen("tcp:127.0.0.1:0")
    reader, writer = await stream_client(port)
    for i in range(len(RAW_OPTIONS)):
        writer.write(RAW_OPTIONS[i : i + 1])
        await writer.drain()
    response = parse_message(await read_message(reader))
    assert response.status_code == 200  # type: ignore[union-attr]
    writer.write(b"\r\n\r\n")  # RFC 5626 keep-alive ping
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
    writer.close()
    await writer.wait_closed()


async def test_tcp_garbage_closes_that_connection_only(pair: tuple[AsyncEndpoint, AsyncEndpoint]) -> None:
    _, uas = pair
    _, port = await uas.listen("tcp:127.0.0.1:0")
    reader, writer = await stream_client(port)
    writer.write(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: banana\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
    writer.close()
    await writer.wait_closed()
    reader2, writer2 = await stream_client(port)
    writer2.write(RAW_OPTIONS)
    assert parse_message(await read_message(reader2)).status_code == 200  # type: ignore[union-attr]
    writer2.close()
    await writer2.wait_closed()


async def test_several_listeners_and_close_waits_for_transactions(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    uas = await make(tls)
    await uas.listen("udp:127.0.0.1:0")
    await uas.listen("udp:[::1]:0")
    _, port = await uas.listen("tcp:127.0.0.1:0")
    reader, writer = await stream_client(port)
    writer.write(RAW_OPTIONS)
    await read_message(reader)
    report = await uas.close(timeout=2.0)
    assert not report
    assert uas.endpoint.transactions() == []
    writer.close()
    await writer.wait_closed()


async def test_tcp_connection_is_reused_and_idle_ones_closed(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    uac = AsyncEndpoint(
        Endpoint(EndpointConfig(malloc_debug=True, timers=FAST)),
        guard=SendGuard.loopback_only(),
        idle_timeout=0.3,
    )
    uas = await make(tls)
    await uac.listen("tcp:127.0.0.1:0")
    target = await uas.listen("tcp:127.0.0.1:0")
    for _ in range(3):
        uac.endpoint.send_request(options(uac, target, "tcp"), target, "tcp", uac.now())
        uac.flush()
        event = await uac.next_event(timeout=5)
        while isinstance(event, TransactionTerminated):  # the previous one's Timer K (0 on TCP)
            event = await uac.next_event(timeout=5)
        assert isinstance(event, ResponseReceived)
        assert event.response.status_code == 200
    assert len(uac._streams["tcp"].connections) == 1  # one connection per peer, reused
    assert len(uas._streams["tcp"].connections) == 1  # the answers went back over it
    await asyncio.sleep(0.8)
    assert uac._streams["tcp"].connections == {}  # closed when idle
    for ep in (uac, uas):
        assert not await ep.close(timeout=2.0)


def test_listen_spec() -> None:
    assert ListenSpec.parse("udp:127.0.0.1:5070") == ListenSpec("udp", "127.0.0.1", 5070)
    assert ListenSpec.parse("TCP:[::1]:5071") == ListenSpec("tcp", "::1", 5071)
    for bad in ("sctp:127.0.0.1:5060", "udp:127.0.0.1", "udp:localhost:5060", "udp:[::1]:99999", "udp"):
        with pytest.raises(ValueError):
            ListenSpec.parse(bad)


async def test_an_unresolvable_host_fails_the_call_at_once() -> None:
    """A host that does not resolve: no call, no Timer B wait, a TransportFailed saying why."""
    from invsess.aio import TransportFailed, UserAgent

    from .sessions import ALICE_SDP

    config = EndpointConfig(malloc_debug=True, timers=FAST, allow=("INVITE", "BYE"))
    agent = await UserAgent.create(
        ["udp:127.0.0.1:0"], sdp=ALICE_SDP, config=config, guard=SendGuard.loopback_only()
    )
    with pytest.raises(TransportFailed, match=r"cannot resolve bob\.invalid") as failed:
        await agent.call("sip:bob@bob.invalid")
    assert failed.value.cause == 503
    assert agent.endpoint.transactions() == []
    assert not await agent.close(timeout=1.0)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("sip:bob@192.0.2.1:5060", "refusing to send to 192.0.2.1:5060"),  # the send guard
        ("sip:bob@127.0.0.1:9;transport=tcp", "tcp connection to 127.0.0.1:9 failed"),  # refused
    ],
)
async def test_a_call_whose_invite_cannot_be_sent_ends_at_once(uri: str, why: str) -> None:
    """The known bug: the asyncio driver told the endpoint, the session layer never heard of
    it, and the call stayed CALLING for ever. Now it ends at once with 503 (RFC 3261 §8.1.3.1)
    and releases everything."""
    from invsess.aio import UserAgent
    from invsess.inv import InviteState

    from .sessions import ALICE_SDP

    config = EndpointConfig(malloc_debug=True, timers=FAST, allow=("INVITE", "BYE"))
    agent = await UserAgent.create(
        ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], sdp=ALICE_SDP, config=config, guard=SendGuard.loopback_only()
    )
    call = await agent.call(uri)
    await call.wait_for(InviteState.DISCONNECTED, timeout=2.0)  # not Timer B's 64*T1
    assert call.cause == 503
    assert call.session.cause_text.startswith("transport error") and why in call.session.cause_text
    assert call.history[0] is InviteState.CALLING  # and no EARLY, no ringing: nothing was sent
    await call.close()
    assert agent.endpoint.transactions() == []
    assert not await agent.close(timeout=1.0)
