"""RFC 4475 over real UDP to a live endpoint: every ``outcome`` of expected.tsv holds.

Answers go where RFC 3261 §18.2.2 sends them: ``received`` is the loopback source and the port
comes from the Via (5060 by default, 5050 for quotbal), or from ``rport``. So the test listens
on ports 5060 and 5050 of a random address of 127.0.0.0/8 (another one if either is taken) and
sends from its :5060; whatever else arrives there (another SIP process's traffic) is ignored.
The send guard allows loopback only: the corpus names 192.0.2.x and 255.255.255.255, and
nothing may ever go there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import subprocess
import sys
import time

import pytest

from invsess.aio import AsyncEndpoint, SendGuard
from invsess.endpoint import CancelReceived, Endpoint, EndpointConfig
from invsess.sip import ParseError, Response, make_response, parse_message
from invsess.transaction import RequestReceived, TimerConfig

from .conftest import RFC4475, rfc4475_rows

ROWS = rfc4475_rows()
ALLOW = ("INVITE", "OPTIONS", "BYE")
#: How long an expected answer may take on a busy machine (an answer is normally in ~1 ms).
PATIENCE = 5.0


def receivers() -> tuple[socket.socket, socket.socket]:
    """Sockets on ports 5060 and 5050 of one random loopback address (no fixed address needed)."""
    rng = random.Random()
    for _ in range(50):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        socks: list[socket.socket] = []
        try:
            for port in (5060, 5050):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, port))
                s.setblocking(False)
        except OSError:
            for t in socks:
                t.close()
            continue
        return socks[0], socks[1]
    pytest.fail("no loopback address had ports 5060 and 5050 free")


def call_id_of(data: bytes) -> str | None:
    match = re.search(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S*)", data)
    return match.group(1).decode("utf-8", "surrogateescape") if match else None


def collect(
    socks: tuple[socket.socket, ...], call_id: str | None, *, wanted: bool, quiet: float
) -> list[Response]:
    """The answers to the message with ``call_id`` (earlier calls' retransmissions are ignored).

    When an answer is ``wanted``, wait for a final one however loaded the machine is (up to
    :data:`PATIENCE`), then ``quiet`` more for any second one; else ``quiet`` proves there is none.
    """
    out: list[Response] = []
    start = time.monotonic()
    deadline = start + (PATIENCE if wanted else quiet)
    while time.monotonic() < deadline:
        for s in socks:
            with contextlib.suppress(BlockingIOError, ParseError):
                msg = parse_message(s.recv(65535))
                # Anything but an answer to this message (some other process sending here) is
                # not ours to judge.
                if isinstance(msg, Response) and msg.headers.get("Call-ID") == call_id:
                    out.append(msg)
                    if msg.status_code >= 200:
                        deadline = time.monotonic() + quiet
        time.sleep(0.005)
    return out


def check(outcome: str, answers: list[Response], name: str) -> None:
    finals = [r for r in answers if r.status_code >= 200]
    codes = [r.status_code for r in finals]
    if outcome.startswith("drop"):
        assert answers == [], name
    elif outcome.isdigit():
        assert codes[:1] == [int(outcome)], (name, codes)
    elif outcome == "process":
        assert codes and codes[0] != 400, (name, codes)
    elif outcome == "process-first-only":
        assert len(codes) == 1 and codes[0] != 400, (name, codes)
    elif outcome in ("400-or-process", "process-or-400"):
        assert codes, name
    elif outcome == "501-or-400":
        assert codes[:1] in ([501], [400]), (name, codes)
    elif outcome == "process-as-non-registrar":
        assert codes[:1] == [405] and finals[0].allow, (name, codes)
    elif outcome == "420-with-Unsupported":
        assert codes[:1] == [420] and finals[0].unsupported, (name, codes)
    elif outcome == "415-with-Accept":
        assert codes[:1] == [415] and finals[0].headers.get("Accept"), (name, codes)
    else:  # pragma: no cover - a new outcome in expected.tsv needs a rule here
        pytest.fail(f"unknown outcome {outcome!r}")


def run_corpus(target: tuple[str, int], quiet: float) -> None:
    rx5060, rx5050 = receivers()
    try:
        for row in ROWS:
            data = (RFC4475 / row["file"]).read_bytes()
            rx5060.sendto(data, target)
            wanted = not row["outcome"].startswith("drop")
            answers = collect((rx5060, rx5050), call_id_of(data), wanted=wanted, quiet=quiet)
            check(row["outcome"], answers, row["file"])
    finally:
        rx5060.close()
        rx5050.close()


async def test_corpus_against_an_in_process_endpoint() -> None:
    timers = TimerConfig(t1=0.02, t2=0.08, t4=0.05)
    endpoint = Endpoint(EndpointConfig(malloc_debug=True, allow=ALLOW, timers=timers))
    aep = AsyncEndpoint(endpoint, guard=SendGuard.loopback_only())
    target = await aep.listen("udp:127.0.0.1:0")
    start = aep.endpoint.factory.statistics()

    async def tu() -> None:
        while True:
            event = await aep.next_event()
            if isinstance(event, RequestReceived):
                aep.endpoint.respond(
                    event.transaction, make_response(event.request, 480, to_tag="tu"), aep.now()
                )
            elif isinstance(event, CancelReceived):
                aep.endpoint.respond(
                    event.invite, make_response(event.invite.request, 487, to_tag="tu"), aep.now()
                )
            aep.flush()

    worker = asyncio.get_running_loop().create_task(tu())
    try:
        await asyncio.to_thread(run_corpus, target, 0.15)
    except BaseException:  # a failure: close what we opened
        worker.cancel()
        await aep.close(timeout=1.0)
        raise
    for _ in range(200):  # Timer H/J/L at 64*T1 = 1.28 s
        if not aep.endpoint.transactions():
            break
        await asyncio.sleep(0.05)
    worker.cancel()
    end = aep.endpoint.factory.statistics()
    assert (end.used_size, end.real_used_size, end.fragments) == (
        start.used_size,
        start.real_used_size,
        start.fragments,
    )
    assert aep.guard.refused == []  # nothing even tried to leave loopback
    assert not await aep.close(timeout=1.0)


def test_corpus_against_invsess_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "invsess.cli", "answer", "--listen", f"udp:127.0.0.1:{port}", "--t1", "0.02",
           "--duration", "30", "--log-level", "warning", "--answer-code", "480",
           *(a for m in ALLOW for a in ("--allow", m))]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        ready = False
        while time.monotonic() < deadline and not ready:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.settimeout(0.2)
                probe.sendto(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bKprobe\r\n"
                             b"From: <sip:p@x>;tag=1\r\nTo: <sip:x@x>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
                             ("127.0.0.1", port))  # fmt: skip
                with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                    ready = bool(probe.recv(65535))
        assert ready, "invsess answer did not start"
        run_corpus(("127.0.0.1", port), 0.3)
    finally:
        proc.send_signal(2)  # SIGINT: graceful close and the leak report
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "0 leaked blocks" in err
    assert "send refused" not in err  # nothing tried to leave loopback
