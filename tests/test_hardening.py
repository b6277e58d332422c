"""The transports under abuse, on real loopback sockets: the UDP reader's priorities and shedding,
connection caps, read deadlines, TLS handshake timeouts, buffer budgets, 513, freeing without
the cycle collector, and accept pausing when file descriptors run out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from structlog.testing import capture_logs

from invsess.aio import AsyncEndpoint, SendGuard, StreamLimits, UdpLimits
from invsess.aio.transport import StreamConnection, StreamTransport
from invsess.endpoint import Endpoint, EndpointConfig, LimitStats, Rejection
from invsess.sip import parse_message
from invsess.sip.parser import ParserLimits
from invsess.transaction import TimerConfig

FAST = TimerConfig(t1=0.05, t2=0.2, t4=0.1)


def options(
    n: int, host: str = "127.0.0.1", port: int = 1, transport: str = "TCP", call_id: str = "p"
) -> bytes:
    return (
        f"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {host}:{port};branch=z9hG4bKo{n}\r\n"
        f"From: <sip:a@{host}>;tag={n}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: {call_id}{n}@x\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def invite(n: int, host: str, port: int) -> bytes:
    return (
        f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKi{n}\r\n"
        f"From: <sip:a@{host}>;tag={n}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: flood{n}@x\r\n"
        f"CSeq: 1 INVITE\r\nContact: <sip:a@{host}:{port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def make(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext] | None = None, **kwargs: Any) -> AsyncEndpoint:
    config = kwargs.pop("config", None) or EndpointConfig(
        malloc_debug=True, timers=FAST, allow=("INVITE", "OPTIONS")
    )
    server_ssl, client_ssl = tls_pair or (None, None)
    return AsyncEndpoint(
        Endpoint(config),
        guard=SendGuard.loopback_only(),
        server_ssl=server_ssl,
        client_ssl=client_ssl,
        **kwargs,
    )


@pytest.fixture
async def closing() -> AsyncIterator[list[AsyncEndpoint]]:
    endpoints: list[AsyncEndpoint] = []
    yield endpoints
    for ep in endpoints:
        ep.hurry()
        await ep.close(timeout=0)
        ep.endpoint.close()
        assert not ep.endpoint.leak_report()
        assert ep.guard.refused == []


async def connect(port: int, host: str = "127.0.0.2") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def refused(port: int, host: str) -> bool:
    """Connect from ``host``: True when the server closed (or reset) the connection at once."""
    try:
        reader, writer = await connect(port, host)
    except ConnectionResetError:
        return True  # the reset came before the connect completed
    try:
        return await closed_by_server(reader, 2.0)
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(4096):
                pass
    except ConnectionResetError:
        return True
    return True


# -- UDP -----------------------------------------------------------------------------------------


def udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # room for every answer
    sock.bind((host, 0))
    return sock


def answers_on(sock: socket.socket, quiet: float = 0.5) -> list[int]:
    sock.settimeout(quiet)
    codes = []
    with contextlib.suppress(TimeoutError):
        while True:
            codes.append(parse_message(sock.recv(65535)).status_code)  # type: ignore[union-attr]
    return codes


async def test_udp_backlog_serves_pings_first_and_queues_new_work(closing: list[AsyncEndpoint]) -> None:
    aep = await make(udp_limits=UdpLimits(budget=0.002))
    closing.append(aep)
    _, port = await aep.listen("udp:127.0.0.1:0")
    flood, ping = udp_socket("127.0.0.2"), udp_socket("127.0.0.3")
    fhost, fport = flood.getsockname()
    phost, pport = ping.getsockname()
    try:
        # The loop is not running while we send: all of it waits in the kernel, a backlog.
        for n in range(200):
            flood.sendto(invite(n, fhost, fport), ("127.0.0.1", port))
        ping.sendto(options(0, phost, pport, "UDP"), ("127.0.0.1", port))
        seen = 0
        for _ in range(20):  # a few turns of the loop: one read, then one budget a turn
            await asyncio.sleep(0)
            seen = max(seen, aep.endpoint.limit_stats.current()["udp_queued"])
        assert seen > 0  # new work waits its turn...
        await asyncio.sleep(0.5)
        ping.settimeout(2)
        first = ping.recv(65535)
        assert parse_message(first).status_code == 200  # type: ignore[union-attr]
        # ... and is all served, in later turns: a burst is not an overload.
        assert aep.endpoint.limit_stats.rejected[Rejection.SHED] == 0
        assert aep.endpoint.limit_stats.current()["udp_queued"] == 0
        assert len(aep.endpoint.transactions()) == 201
    finally:
        flood.close()
        ping.close()


async def test_udp_new_work_that_waited_too_long_is_shed_with_503(closing: list[AsyncEndpoint]) -> None:
    aep = await make(udp_limits=UdpLimits(budget=0.002, max_delay=0.02))
    closing.append(aep)
    _, port = await aep.listen("udp:127.0.0.1:0")
    flood, ping = udp_socket("127.0.0.2"), udp_socket("127.0.0.3")
    fhost, fport = flood.getsockname()
    phost, pport = ping.getsockname()
    try:
        for n in range(200):
            flood.sendto(invite(n, fhost, fport), ("127.0.0.1", port))
        ping.sendto(options(0, phost, pport, "UDP"), ("127.0.0.1", port))
        await asyncio.sleep(0.5)
        assert answers_on(ping) == [200]
        shed = aep.endpoint.limit_stats.rejected[Rejection.SHED]
        assert 0 < shed < 200
        assert answers_on(flood).count(503) == shed  # shed INVITEs are told to come back later
        assert len(aep.endpoint.transactions()) == 200 - shed + 1
    finally:
        flood.close()
        ping.close()


async def test_udp_queue_overflow_sheds_the_oldest(closing: list[AsyncEndpoint]) -> None:
    aep = await make(udp_limits=UdpLimits(max_queue=10))
    closing.append(aep)
    _, port = await aep.listen("udp:127.0.0.1:0")
    flood = udp_socket("127.0.0.2")
    fhost, fport = flood.getsockname()
    try:
        for n in range(100):
            flood.sendto(invite(n, fhost, fport), ("127.0.0.1", port))
        await asyncio.sleep(0.5)
        assert aep.endpoint.limit_stats.rejected[Rejection.SHED] == 90
        assert len(aep.endpoint.transactions()) == 10
    finally:
        flood.close()


async def test_udp_reader_drops_a_blocked_source_as_it_reads(closing: list[AsyncEndpoint]) -> None:
    from invsess.endpoint import RateLimit

    config = EndpointConfig(
        malloc_debug=True, timers=FAST, allow=("INVITE", "OPTIONS"), rate_limit=RateLimit(5)
    )
    aep = await make(config=config)
    closing.append(aep)
    _, port = await aep.listen("udp:127.0.0.1:0")
    flood, ping = udp_socket("127.0.0.2"), udp_socket("127.0.0.3")
    fhost, fport = flood.getsockname()
    phost, pport = ping.getsockname()
    try:
        for n in range(6):  # over the rate: blocked
            flood.sendto(invite(n, fhost, fport), ("127.0.0.1", port))
        await asyncio.sleep(0.2)
        queued = []
        for n in range(6, 300):
            flood.sendto(invite(n, fhost, fport), ("127.0.0.1", port))
        ping.sendto(options(0, phost, pport, "UDP"), ("127.0.0.1", port))
        for _ in range(20):
            await asyncio.sleep(0)
            queued.append(aep.endpoint.limit_stats.current()["udp_queued"])
        await asyncio.sleep(0.3)
        assert max(queued) == 0  # nothing of the blocked source took a place in the queue
        assert answers_on(ping) == [200]
        assert aep.endpoint.limit_stats.rejected[Rejection.RATE] == 295
        assert aep.endpoint.limit_stats.rejected[Rejection.SHED] == 0
        assert len(aep.endpoint.transactions()) == 6
    finally:
        flood.close()
        ping.close()


async def test_udp_small_batches_are_served_in_order(closing: list[AsyncEndpoint]) -> None:
    aep = await make(udp_limits=UdpLimits(budget=1e-9))
    closing.append(aep)
    _, port = await aep.listen("udp:127.0.0.1:0")
    sock = udp_socket("127.0.0.2")
    host, sport = sock.getsockname()
    try:
        for n in range(3):
            sock.sendto(invite(n, host, sport), ("127.0.0.1", port))
        await asyncio.sleep(0.1)
        assert aep.endpoint.limit_stats.rejected[Rejection.SHED] == 0  # no backlog, nothing shed
        assert len(aep.endpoint.transactions()) == 3
    finally:
        sock.close()


# -- connection caps ------------------------------------------------------------------------------


async def test_connection_caps_total_and_per_ip(closing: list[AsyncEndpoint]) -> None:
    aep = await make(stream_limits=StreamLimits(max_connections=4, max_connections_per_ip=3))
    closing.append(aep)
    _, port = await aep.listen("tcp:127.0.0.1:0")
    stats = aep.endpoint.limit_stats
    with capture_logs() as logs:
        kept = [await connect(port, "127.0.0.2") for _ in range(3)]
        await asyncio.sleep(0.1)
        assert await refused(port, "127.0.0.2")
        kept.append(await connect(port, "127.0.0.3"))
        await asyncio.sleep(0.1)
        assert await refused(port, "127.0.0.4")
    assert stats.rejected[Rejection.CONNECTIONS_PER_IP] == 1
    assert stats.rejected[Rejection.CONNECTIONS] == 1
    assert stats.current()["connections"] == 4
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "connection limit reached: new connections are closed at once"
    ]  # once per episode, not once per connection
    for n, (_, writer) in enumerate(kept):  # the kept ones work
        writer.write(options(10 + n))
    for reader, _ in kept:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert parse_message(head).status_code == 200  # type: ignore[union-attr]
    for _, writer in kept:
        writer.close()
    await asyncio.sleep(0.2)
    assert stats.current()["connections"] == 0
    reader, writer = await connect(port, "127.0.0.4")  # room again
    writer.write(options(2))
    assert parse_message(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).status_code == 200  # type: ignore[union-attr]
    writer.close()


def test_the_connection_cap_follows_the_file_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = StreamLimits(max_connections=1024, max_connections_per_ip=256, fd_reserve=32)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert limits.effective_max_connections() == 224
    assert limits.effective_per_ip(224) == 168  # one address never takes every connection
    monkeypatch.setattr(resource, "getrlimit", lambda _: (100_000, 100_000))
    assert limits.effective_max_connections() == 1024
    assert limits.effective_per_ip(1024) == 256


async def test_slowloris_is_closed_at_the_read_deadline_whatever_trickles_in(
    closing: list[AsyncEndpoint],
) -> None:
    aep = await make(stream_limits=StreamLimits(read_timeout=0.5, idle_timeout=30))
    closing.append(aep)
    _, port = await aep.listen("tcp:127.0.0.1:0")
    reader, writer = await connect(port)
    start = time.monotonic()
    data = options(1)
    closed_at = None
    for i in range(len(data) - 1):  # never the last byte
        writer.write(data[i : i + 1])
        try:
            chunk = await asyncio.wait_for(reader.read(100), 0.05)
        except TimeoutError:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            closed_at = time.monotonic() - start
            break
    writer.close()
    assert closed_at is not None and 0.45 <= closed_at < 2.0
    assert aep.endpoint.limit_stats.rejected[Rejection.READ_TIMEOUT] == 1
    assert aep.endpoint.limit_stats.current()["buffered_bytes"] == 0
    # A slow but finished message is fine, and the deadline restarts with each message.
    reader, writer = await connect(port, "127.0.0.3")
    for n in range(3):
        writer.write(options(n)[:20])
        await asyncio.sleep(0.3)
        writer.write(options(n)[20:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert parse_message(head).status_code == 200  # type: ignore[union-attr]
    writer.close()


async def test_a_connection_that_says_nothing_is_closed_at_the_read_deadline(
    closing: list[AsyncEndpoint],
) -> None:
    aep = await make(stream_limits=StreamLimits(read_timeout=0.3, idle_timeout=30))
    closing.append(aep)
    _, port = await aep.listen("tcp:127.0.0.1:0")
    silent_reader, silent = await connect(port)
    pinging_reader, pinging = await connect(port, "127.0.0.3")
    pinging.write(b"\r\n\r\n")  # a keep-alive is something: RFC 5626 flows start that way
    assert await asyncio.wait_for(pinging_reader.readexactly(2), 5) == b"\r\n"
    start = time.monotonic()
    assert await closed_by_server(silent_reader)
    assert time.monotonic() - start < 2.0
    await asyncio.sleep(0.3)
    pinging.write(options(1))  # still open
    assert parse_message(await asyncio.wait_for(pinging_reader.readuntil(b"\r\n\r\n"), 5)).status_code == 200  # type: ignore[union-attr]
    silent.close()
    pinging.close()
    assert aep.endpoint.limit_stats.rejected[Rejection.READ_TIMEOUT] == 1


async def test_idle_connections_are_closed(closing: list[AsyncEndpoint]) -> None:
    aep = await make(stream_limits=StreamLimits(idle_timeout=0.3))
    closing.append(aep)
    _, port = await aep.listen("tcp:127.0.0.1:0")
    reader, writer = await connect(port)
    start = time.monotonic()
    assert await closed_by_server(reader)
    assert time.monotonic() - start < 2.0
    writer.close()
    assert aep.endpoint.limit_stats.rejected[Rejection.IDLE_TIMEOUT] == 1


async def test_tls_handshake_timeout_and_handshake_cap(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], closing: list[AsyncEndpoint]
) -> None:
    aep = await make(tls, stream_limits=StreamLimits(handshake_timeout=0.3, max_handshakes=1))
    closing.append(aep)
    _, port = await aep.listen("tls:127.0.0.1:0")
    stats = aep.endpoint.limit_stats
    silent_reader, silent = await connect(port)  # TCP only: the handshake never starts
    await asyncio.sleep(0.05)
    assert stats.current()["handshakes"] == 1
    assert await refused(port, "127.0.0.3")  # one handshake at a time here
    assert stats.rejected[Rejection.HANDSHAKES] == 1
    assert await closed_by_server(silent_reader)
    silent.close()
    assert stats.rejected[Rejection.HANDSHAKE_TIMEOUT] == 1
    assert stats.current()["handshakes"] == 0
    assert stats.current()["connections"] == 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls[1], server_hostname="127.0.0.1")
    writer.write(options(1, transport="TLS"))
    assert parse_message(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).status_code == 200  # type: ignore[union-attr]
    writer.close()


async def test_unfinished_messages_have_a_total_budget(closing: list[AsyncEndpoint]) -> None:
    aep = await make(stream_limits=StreamLimits(max_buffered=3000))
    closing.append(aep)
    _, port = await aep.listen("tcp:127.0.0.1:0")
    big_reader, big = await connect(port, "127.0.0.2")
    _, small = await connect(port, "127.0.0.3")
    big.write(b"OPTIONS sip:b@h SIP/2.0\r\nX: " + b"y" * 2000)
    await asyncio.sleep(0.1)
    small.write(b"OPTIONS sip:b@h SIP/2.0\r\nX: " + b"y" * 1500)
    assert await closed_by_server(big_reader)  # the one holding most goes
    assert aep.endpoint.limit_stats.rejected[Rejection.BUFFER] == 1
    assert aep.endpoint.limit_stats.current()["buffered_bytes"] < 3000
    small.write(b"\r\n\r\n")
    big.close()
    small.close()


async def test_oversize_streamed_message_gets_513_then_the_connection_closes(
    closing: list[AsyncEndpoint],
) -> None:
    aep = await make()
    closing.append(aep)
    _, port = await aep.listen("tcp:127.0.0.1:0")
    reader, writer = await connect(port)
    writer.write(options(1).replace(b"Content-Length: 0", b"Content-Length: 10000000"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    response = parse_message(head)
    assert response.status_code == 513  # type: ignore[union-attr]
    assert await closed_by_server(reader)
    writer.close()
    assert aep.endpoint.limit_stats.rejected[Rejection.OVERSIZE] == 1


class FakeTransport(asyncio.Transport):
    """A transport whose peer never reads: the write buffer only grows."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = 0
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffer

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.2", 4000) if name == "peername" else default


async def test_a_peer_that_does_not_read_is_cut_off() -> None:
    stats = LimitStats()
    owner = StreamTransport(
        lambda *_: None,
        lambda: None,
        "tcp",
        guard=SendGuard.loopback_only(),
        parser_limits=ParserLimits(),
        stats=stats,
        limits=StreamLimits(max_write_buffer=1000),
    )
    conn = StreamConnection(owner)
    fake = FakeTransport()
    conn.connection_made(fake)
    for _ in range(3):
        conn.write(b"x" * 400)
    assert fake.aborted
    assert stats.rejected[Rejection.WRITE_BUFFER] == 1
    conn.write(b"more")  # ignored once cut off
    assert fake.buffer == 1200


# -- no reference cycles --------------------------------------------------------------------------------


async def test_connections_are_freed_on_close_without_the_cycle_collector(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], closing: list[AsyncEndpoint]
) -> None:
    aep = await make(tls, stream_limits=StreamLimits(max_connections_per_ip=2, read_timeout=0.2))
    closing.append(aep)
    _, tcp_port = await aep.listen("tcp:127.0.0.1:0")
    _, tls_port = await aep.listen("tls:127.0.0.1:0")
    client = await make(tls)
    closing.append(client)
    target_host, target_port = await client.listen("tcp:127.0.0.1:0")
    refs: list[weakref.ref[Any]] = []

    def track(kind: str) -> None:
        for conn in aep._streams[kind].connections.values():
            refs.append(weakref.ref(conn))
            if conn.transport is not None:
                refs.append(weakref.ref(conn.transport))

    gc.collect()
    gc.disable()
    try:
        # closed by the peer
        reader, writer = await connect(tcp_port)
        writer.write(b"\r\n\r\n")
        await reader.readexactly(2)
        track("tcp")
        writer.close()
        # closed by us at the read deadline
        reader2, writer2 = await connect(tcp_port, "127.0.0.3")
        writer2.write(b"OPTIONS")
        await asyncio.sleep(0.05)
        track("tcp")
        await closed_by_server(reader2)
        writer2.close()
        # TLS, closed by the peer
        reader3, writer3 = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=tls[1], server_hostname="127.0.0.1"
        )
        writer3.write(b"\r\n\r\n")
        await reader3.readexactly(2)
        track("tls")
        writer3.close()
        # outbound, closed by the remote end
        client._streams["tcp"].send(b"\r\n\r\n", ("127.0.0.1", tcp_port))
        await asyncio.sleep(0.1)
        for conn in client._streams["tcp"].connections.values():
            refs.append(weakref.ref(conn))
        for conn in list(aep._streams["tcp"].connections.values()):
            conn.close()
        for _ in range(30):
            await asyncio.sleep(0.02)
        del reader, writer, reader2, writer2, reader3, writer3
        assert len(refs) >= 7
        alive = [ref() for ref in refs if ref() is not None]
        assert alive == [], f"kept alive by cycles: {alive}"
    finally:
        gc.enable()
    assert target_host == "127.0.0.1" and target_port > 0


# -- out of file descriptors -----------------------------------------------------------------------------

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from invsess.aio import AsyncEndpoint, SendGuard, StreamLimits
    from invsess.endpoint import Endpoint, EndpointConfig
    from invsess.logs import configure

    async def main():
        configure("warning")
        limits = StreamLimits(fd_reserve=1, accept_retry=0.2)  # the cap alone would never run out
        aep = AsyncEndpoint(Endpoint(EndpointConfig()), guard=SendGuard.loopback_only(), stream_limits=limits)
        _, port = await aep.listen("tcp:127.0.0.1:0")
        await aep.listen(f"udp:127.0.0.1:{port}")
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print(dict(aep.endpoint.limit_stats.rejected), file=sys.stderr)
        aep.hurry()
        await aep.close(timeout=0)

    asyncio.run(main())
    """
)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_accept_pauses_when_file_descriptors_run_out_and_resumes() -> None:
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs /proc to read the server's CPU time")
    proc = subprocess.Popen(
        ["sh", "-c", 'ulimit -n 48 && exec "$@"', "sh", sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        for n in range(100):  # from four addresses: no per-address cap stops them first
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((f"127.0.0.{2 + n % 4}", 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(0.5)
        before = cpu_seconds(proc.pid)
        time.sleep(1.5)
        assert cpu_seconds(proc.pid) - before < 0.3  # paused, not spinning on a ready listener
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.5", 0))
        udp.settimeout(3)
        uhost, uport = udp.getsockname()
        udp.sendto(options(1, uhost, uport, "UDP"), ("127.0.0.1", port))
        assert parse_message(udp.recv(65535)).status_code == 200  # type: ignore[union-attr]
        udp.close()
        for s in socks:
            s.close()
        socks.clear()
        time.sleep(1.0)
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(options(2))
            assert s.recv(65535).startswith(b"SIP/2.0 200")  # accepting again
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=20)
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = err.splitlines()
    paused = [line for line in lines if "out of file descriptors: accepting paused" in line]
    assert len(paused) == 1, err  # one line a minute at most, not one per attempt
    assert "Traceback" not in err
    assert len(lines) <= 10, err
    assert "ACCEPT_PAUSED" in lines[-1] or "accept_paused" in lines[-1]
