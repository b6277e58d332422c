"""`invsess b2bua`: `invsess call` through it to a user agent, and its refusals of bad options."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from click.testing import CliRunner

from invsess.aio import SendGuard, UserAgent
from invsess.cli import main
from invsess.endpoint import EndpointConfig
from invsess.sdp import parse_sdp
from invsess.transaction import TimerConfig

ROOT = Path(__file__).resolve().parent.parent


async def test_calls_through_the_b2bua_command() -> None:
    bob = await UserAgent.create(
        ["udp:127.0.0.1:0"],
        sdp=parse_sdp("v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                      "m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"),
        user="bob", guard=SendGuard.loopback_only(),
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=TimerConfig(t1=0.02, t2=0.16)),
    )  # fmt: skip
    answered = 0

    async def answer() -> None:
        nonlocal answered
        async for call in bob.incoming_calls():
            await call.answer()
            answered += 1

    answering = asyncio.get_running_loop().create_task(answer())
    host, port = bob.endpoint.listeners["udp"]
    b2bua = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "invsess.cli", "b2bua", "--listen", "udp:127.0.0.1:0", "--to", f"sip:{host}:{port}",
        "--t1", "0.02", "--calls", "3", "--duration", "60",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert b2bua.stderr is not None
    first = (await asyncio.wait_for(b2bua.stderr.readline(), 20)).decode()
    assert first.startswith("listening on udp:127.0.0.1:") and "bridging to" in first, first
    b2bua_port = first.split()[2].rsplit(":", 1)[1].rstrip(",")
    placed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "invsess.cli", "call", f"sip:bob@127.0.0.1:{b2bua_port}", "--calls", "3",
        "--rate", "20", "--hold", "0.1", "--t1", "0.02",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await asyncio.wait_for(placed.communicate(), 60))[0].decode()
    assert "3 calls: 3 succeeded, 0 failed" in out, out
    rest = (await asyncio.wait_for(b2bua.communicate(), 60))[1].decode()
    assert b2bua.returncode == 0, rest
    assert "calls bridged: 3; outcomes: 200 x3" in rest and "0 leaked blocks" in rest, rest
    assert answered == 3
    answering.cancel()
    assert not await bob.close()


def test_bad_options_are_one_line_errors() -> None:
    result = CliRunner().invoke(main, ["b2bua", "--to", "tel:+123"])
    assert result.exit_code == 2 and "--to" in result.output
    result = CliRunner().invoke(main, ["b2bua", "--to", "sip:127.0.0.1:5080", "--listen", "udp:nohost"])
    assert result.exit_code == 2 and "--listen" in result.output
