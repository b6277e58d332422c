"""Shutdown: calls ended in parallel within a bounded total wait, those whose peer is gone ended
by running their timers out and released in order, hurry() to stop at once; and the command
line's SIGINT / second SIGINT / SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from invsess.aio import Call, SendGuard, UserAgent
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState
from invsess.sdp import parse_sdp
from invsess.transaction import TimerConfig

TIMERS = TimerConfig(t1=0.5, t2=4.0, t4=5.0)  # real-world timers: a BYE would wait 32 s
SDP = (
    "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


async def agent(name: str) -> UserAgent:
    return await UserAgent.create(
        ["udp:127.0.0.1:0"],
        sdp=parse_sdp(SDP),
        user=name,
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=TIMERS),
        guard=SendGuard.loopback_only(),
    )


class RawCaller:
    """A UAC on a plain socket that answers nothing but what it is told to (then vanishes)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.setblocking(False)
        self.host, self.port = self.sock.getsockname()
        self.acked: set[str] = set()

    def invite(self, n: int) -> None:
        body = SDP
        self.sock.sendto(
            (
                f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bKr{n}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:raw@{self.host}>;tag=r{n}\r\nTo: <sip:bob@127.0.0.1>\r\n"
                f"Call-ID: raw{n}@{self.host}\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@{self.host}:{self.port}>\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            ).encode(),
            self.target,
        )

    def ack_all(self) -> int:
        """ACK every 2xx received so far (retransmissions too); returns how many calls are ACKed."""
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return len(self.acked)
            if not data.startswith(b"SIP/2.0 200") or b" INVITE\r\n" not in data:
                continue
            call_id = re.search(rb"Call-ID: (raw(\d+)@[^\r\n]+)", data)
            tag = re.search(rb"\r\nTo: [^\r\n]*;tag=([^\r\n;]+)", data)
            assert call_id and tag
            n = call_id.group(2).decode()
            self.sock.sendto(
                (
                    f"ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bKa{n}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:raw@{self.host}>;tag=r{n}\r\n"
                    f"To: <sip:bob@127.0.0.1>;tag={tag.group(1).decode()}\r\n"
                    f"Call-ID: {call_id.group(1).decode()}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                self.target,
            )
            self.acked.add(n)

    def close(self) -> None:
        self.sock.close()


async def answered_calls(bob: UserAgent, count: int, *, ack: bool) -> list[Call]:
    caller = RawCaller(bob.endpoint.listeners["udp"])
    calls = []
    for n in range(count):
        caller.invite(n)
    for _ in range(count):
        call = await bob.incoming(timeout=5)
        await call.answer(200)
        calls.append(call)
    await asyncio.sleep(0.1)
    if ack:
        assert caller.ack_all() == count
        for call in calls:
            await call.wait_for(InviteState.CONFIRMED)
    caller.close()  # the caller is gone: nothing will answer our BYEs
    return calls


async def test_orphaned_calls_end_in_parallel_within_the_bounded_wait() -> None:
    bob = await agent("bob")
    await answered_calls(bob, 20, ack=True)
    start = time.monotonic()
    report = await bob.close(timeout=0.5)
    elapsed = time.monotonic() - start
    assert not report, report.format()
    assert elapsed < 2.0  # one bounded wait for all, not 0.5 s (or 32 s) per call
    assert bob.shutdown is not None
    assert (bob.shutdown.up, bob.shutdown.answered, bob.shutdown.timed_out) == (20, 0, 20)
    assert not bob.shutdown.hurried
    assert (
        "20 calls still up at shutdown: 0 ended by their peer, 20 ended without an answer"
        in bob.shutdown.format()
    )
    assert bob.layer.sessions == []


async def test_calls_never_acknowledged_or_never_answered_end_too() -> None:
    bob = await agent("bob")
    await answered_calls(bob, 5, ack=False)  # 2xx sent, no ACK ever: CONNECTING
    alice = await agent("alice")
    black_hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    black_hole.bind(("127.0.0.3", 0))
    try:
        host, port = black_hole.getsockname()
        calling = await alice.call(f"sip:nobody@{host}:{port}")  # INVITE never answered: CALLING
        assert calling.state is InviteState.CALLING
        for ua, up in ((bob, 5), (alice, 1)):
            report = await ua.close(timeout=0.3)
            assert not report, report.format()
            assert ua.shutdown is not None and ua.shutdown.up == up and ua.shutdown.timed_out == up
            assert ua.layer.sessions == []
        assert calling.closed  # released by close(): reading it now would be a use-after-free
    finally:
        black_hole.close()


async def test_tcp_calls_whose_peer_vanished_end_without_leaks() -> None:
    """The BYE finds no connection and none can be opened: a transport error, which ends the
    session like a timeout (RFC 3261 §15.1.1) instead of leaving it stuck."""
    bob = await UserAgent.create(
        ["tcp:127.0.0.1:0"],
        sdp=parse_sdp(SDP),
        user="bob",
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=TIMERS),
        guard=SendGuard.loopback_only(),
    )
    host, port = bob.endpoint.listeners["tcp"]
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
    lhost, lport = writer.get_extra_info("sockname")
    common = f"From: <sip:raw@{lhost}>;tag=r1\r\nCall-ID: tcp1@x\r\nMax-Forwards: 70\r\n"
    writer.write(
        (
            f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {lhost}:{lport};branch=z9hG4bKt1\r\n{common}"
            f"To: <sip:bob@127.0.0.1>\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@{lhost}:{lport};transport=tcp>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
        ).encode()
    )
    call = await bob.incoming(timeout=5)
    await call.answer(200)
    data = b""
    while b"200 OK" not in data:
        data += await asyncio.wait_for(reader.read(4096), 5)
    tag = re.search(rb"\r\nTo: [^\r\n]*;tag=([^\r\n;]+)", data)
    assert tag is not None
    writer.write(
        (
            f"ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {lhost}:{lport};branch=z9hG4bKt2\r\n{common}"
            f"To: <sip:bob@127.0.0.1>;tag={tag.group(1).decode()}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    await call.wait_for(InviteState.CONFIRMED)
    writer.close()  # the caller is gone, its port closed
    await asyncio.sleep(0.2)
    report = await bob.close(timeout=2.0)
    assert not report, report.format()
    assert bob.shutdown is not None and bob.shutdown.up == 1
    assert bob.shutdown.seconds < 1.0  # the refused connection ended it: nothing to wait for


async def test_calls_with_a_live_peer_end_by_their_bye() -> None:
    alice, bob = await agent("alice"), await agent("bob")
    host, port = bob.endpoint.listeners["udp"]
    calls = [await alice.call(f"sip:bob@{host}:{port}") for _ in range(5)]
    answered = []
    for _ in range(5):
        answered.append(await bob.incoming(timeout=5))
        await answered[-1].answer(200)
    for call in calls:
        await call.wait_for(InviteState.CONFIRMED)
    report = await alice.close(timeout=5.0)
    assert not report
    assert alice.shutdown is not None
    assert (alice.shutdown.up, alice.shutdown.answered, alice.shutdown.timed_out) == (5, 5, 0)
    assert alice.shutdown.seconds < 2.0
    for incoming in answered:  # bob's side saw a BYE each
        await incoming.wait_for(InviteState.DISCONNECTED)
        assert incoming.cause == 200
    assert not await bob.close()
    assert bob.shutdown is not None and bob.shutdown.up == 0


async def test_hurry_stops_waiting_at_once() -> None:
    bob = await agent("bob")
    await answered_calls(bob, 10, ack=True)
    closing = asyncio.get_running_loop().create_task(bob.close(timeout=60.0))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    bob.hurry()
    report = await asyncio.wait_for(closing, 5)
    assert time.monotonic() - start < 1.0
    assert not report
    assert bob.shutdown is not None and bob.shutdown.hurried and bob.shutdown.timed_out == 10


async def test_a_call_arriving_during_shutdown_is_refused_and_released() -> None:
    bob = await agent("bob")
    await answered_calls(bob, 1, ack=True)  # keeps close() waiting for its BYE
    closing = asyncio.get_running_loop().create_task(bob.close(timeout=1.0))
    await asyncio.sleep(0.2)
    late = RawCaller(bob.endpoint.listeners["udp"])
    try:
        late.invite(99)
        await asyncio.sleep(0.2)
        answers = []
        with contextlib.suppress(BlockingIOError):
            while True:
                answers.append(late.sock.recv(65535).split(b"\r\n", 1)[0])
        assert b"SIP/2.0 503 Shutting Down" in answers
    finally:
        late.close()
    report = await closing
    assert not report, report.format()
    assert bob.shutdown is not None and bob.shutdown.up == 1


# -- the command line ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_answer(port: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "invsess.cli", "answer", "--listen", f"udp:127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("warning: no --auth"), line  # answer's first line
    line = proc.stderr.readline()
    assert line.startswith("listening on"), line
    return proc


def orphan_calls(port: int, count: int) -> None:
    async def run() -> None:
        caller = RawCaller(("127.0.0.1", port))
        for n in range(count):
            caller.invite(n)
        acked = 0
        deadline = time.monotonic() + 10
        while acked < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            acked = caller.ack_all()
        caller.close()
        assert acked == count

    asyncio.run(run())


@pytest.mark.parametrize(
    ("signals", "limit"),
    [
        ([signal.SIGINT], 4.0),  # waits --shutdown-timeout (2 s) for the BYEs, then ends them
        ([signal.SIGINT, signal.SIGINT], 1.5),  # the second one: at once
        ([signal.SIGTERM], 1.5),  # at once
    ],
)
def test_answer_stops_in_order_and_exits_0(signals: list[signal.Signals], limit: float) -> None:
    port = free_port()
    proc = start_answer(port, "--shutdown-timeout", "2")
    try:
        orphan_calls(port, 30)
        start = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert elapsed < limit, err
    assert "30 calls still up at shutdown: 0 ended by their peer, 30 ended without an answer" in err
    assert err.rstrip().endswith("0 leaked blocks")
    assert "Traceback" not in err
    if signals[-1] == signal.SIGTERM or len(signals) > 1:
        assert "stopping at once" in err


def test_call_command_stops_on_sigint_and_hangs_up() -> None:
    port = free_port()
    answer = start_answer(port)
    try:
        caller = subprocess.Popen(
            [sys.executable, "-m", "invsess.cli", "call", f"sip:bob@127.0.0.1:{port}", "--calls", "5",
             "--rate", "50", "--hold", "600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3.0)  # start-up and five calls up
        caller.send_signal(signal.SIGINT)
        out, err = caller.communicate(timeout=30)
        assert caller.returncode == 0, out + err
        assert "5 calls still up at shutdown: 5 ended by their peer, 0 ended without an answer" in err
        assert "interrupted: 5 calls not completed" in err
        assert "5 calls: 0 succeeded" in out
        answer.send_signal(signal.SIGINT)
        _, answer_err = answer.communicate(timeout=30)
        assert answer.returncode == 0
        assert "calls ended: 5" in answer_err
    finally:
        for proc in (answer,):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
