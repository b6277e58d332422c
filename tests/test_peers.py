"""Real peers nobody here wrote, against a live endpoint on loopback.

* sipsak (Debian package; `.ci/run` installs it) sends OPTIONS over UDP and TCP and exits 0 only
  on a 200.
* PJSIP through the pjsua2 wheel (`.ci/run` installs it) places an INVITE that the endpoint
  rejects: 486, then PJSIP's ACK, matched by our server transaction. Calls that are answered come
  with the INVITE session layer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from invsess.aio import AsyncEndpoint, SendGuard, UserAgent
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteState
from invsess.sdp import parse_sdp
from invsess.sip import make_response
from invsess.trace import Trace
from invsess.transaction import RequestReceived, TransactionTerminated

SIPSAK = shutil.which("sipsak")
HAVE_PJSUA2 = importlib.util.find_spec("pjsua2") is not None
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(SIPSAK is None, reason="sipsak is not installed (.ci/run installs it)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipsak_options(transport: str) -> None:
    aep = AsyncEndpoint(Endpoint(EndpointConfig(malloc_debug=True)), guard=SendGuard.loopback_only())
    _, port = await aep.listen(f"{transport}:127.0.0.1:0")
    proc = await asyncio.create_subprocess_exec(
        SIPSAK or "sipsak", "-vv", "--transport", transport, "-s", f"sip:bob@127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "SIP/2.0 200 OK" in text
    assert "Allow: OPTIONS" in text
    assert not await aep.close(timeout=2.0)
    assert aep.guard.refused == []


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_pjsip_invite_rejected_and_acked(transport: str) -> None:
    trace = Trace()
    aep = AsyncEndpoint(
        Endpoint(EndpointConfig(malloc_debug=True, allow=("INVITE",))),
        guard=SendGuard.loopback_only(),
        trace=trace,
    )
    _, port = await aep.listen(f"{transport}:127.0.0.1:0")
    target = f"sip:bob@127.0.0.1:{port}" + (";transport=tcp" if transport == "tcp" else "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.pjsua2_call", "uac", target, transport, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    event = await aep.next_event(timeout=20)
    assert isinstance(event, RequestReceived)
    assert event.request.method == "INVITE"
    invite_tx = event.transaction
    aep.endpoint.respond(invite_tx, make_response(event.request, 486, to_tag="pjtest"), aep.now())
    aep.flush()
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert "FINAL 486" in out.decode(errors="replace"), out
    lines = [m.first_line.split(" ")[0] + " " + m.first_line.split(" ")[1] for m in trace.messages()]
    assert lines[0].startswith("INVITE")
    assert "SIP/2.0 486" in lines
    assert any(line.startswith("ACK") for line in lines)  # PJSIP acknowledged our 486
    assert invite_tx.state.name in ("CONFIRMED", "TERMINATED")  # the ACK matched the transaction
    ended = await aep.next_event(timeout=20)
    while not isinstance(ended, TransactionTerminated):
        ended = await aep.next_event(timeout=20)
    assert not await aep.close(timeout=2.0)
    assert aep.guard.refused == []


async def pjsip_port(proc: asyncio.subprocess.Process) -> str:
    """The port the pjsua2 UAS listens on (pjlib prints a banner before it)."""
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError("the pjsua2 UAS exited before listening")
            if line.startswith("PORT "):
                return line.split()[1]


def pjsip(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.peers.pjsua2_call", *args]


async def agent_for_pjsip(transport: str) -> UserAgent:
    return await UserAgent.create(
        [f"{transport}:127.0.0.1:0"],
        sdp=parse_sdp(
            "v=0\r\no=invsess 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40010 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        ),
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE", "OPTIONS", "UPDATE")),
        guard=SendGuard.loopback_only(),
    )


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_pjsip_calls_us_holds_and_hangs_up(transport: str) -> None:
    ua = await agent_for_pjsip(transport)
    host, port = ua.endpoint.listeners[transport]
    target = f"sip:bob@{host}:{port}" + (";transport=tcp" if transport == "tcp" else "")
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uac", target, transport, "--hold", "--hangup-after", "0.5"), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    call = await ua.incoming(timeout=20)
    await call.answer(200)
    await call.wait_for(InviteState.CONFIRMED)
    await call.wait_for(InviteState.DISCONNECTED, timeout=30)
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "STATE CONFIRMED 200" in out, out
    assert "HELD" in out, out  # PJSIP's hold re-INVITE was answered by our negotiator
    assert call.media is not None and call.media.local.media[0].direction == "recvonly"
    assert call.cause == 200  # PJSIP hung up with BYE
    await call.close()
    assert not await ua.close()


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_we_call_pjsip_hold_and_hang_up(transport: str) -> None:
    ua = await agent_for_pjsip(transport)
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uas", transport), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    target = f"sip:pjsip@127.0.0.1:{await pjsip_port(proc)}" + (
        ";transport=tcp" if transport == "tcp" else ""
    )
    call = await ua.call(target)
    await call.wait_for(InviteState.CONFIRMED, timeout=20)
    await call.hold()
    assert call.media is not None and call.media.remote.media[0].direction in ("recvonly", "inactive")
    await call.resume()
    await call.hangup()
    assert call.cause == 200
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "STATE DISCONNECTED 200" in out, out
    await call.close()
    assert not await ua.close()


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
async def test_we_cancel_a_ringing_pjsip() -> None:
    ua = await agent_for_pjsip("udp")
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uas", "udp", "--ring-only"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    call = await ua.call(f"sip:pjsip@127.0.0.1:{await pjsip_port(proc)}")
    await call.wait_for(InviteState.EARLY, timeout=20)
    await call.hangup()  # CANCEL
    assert call.cause == 487
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "FINAL 487" in out, out
    await call.close()
    assert not await ua.close()
