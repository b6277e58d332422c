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
from invsess.inv import InviteState, TimerSettings
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


async def agent_for_pjsip(transport: str, **extensions: object) -> UserAgent:
    """Our agent for a PJSIP peer; ``extensions``: ``timer=``, ``rel100=``, ``trace=``."""
    allow = ("INVITE", "BYE", "OPTIONS", "UPDATE", "PRACK")
    supported = ("100rel", "timer") if extensions else ()
    return await UserAgent.create(
        [f"{transport}:127.0.0.1:0"],
        sdp=parse_sdp(
            "v=0\r\no=invsess 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40010 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        ),
        config=EndpointConfig(malloc_debug=True, allow=allow, supported=supported),
        guard=SendGuard.loopback_only(),
        **extensions,  # type: ignore[arg-type]
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


PJSIP_SE = 90  # PJSIP asserts Min-SE >= 90 (sip_timer.c): the real clock has to wait 45 s


def _lines(trace: Trace, sent_by: tuple[str, int] | None = None) -> list[str]:
    """First lines of the messages in the trace (100 Trying left out), or of those one side sent."""
    return [
        m.first_line
        for m in trace.messages()
        if (sent_by is None or m.source == sent_by) and not m.first_line.startswith("SIP/2.0 100 ")
    ]


async def _we_call_pjsip_and_refresh(transport: str) -> None:
    """PJSIP answers with a reliable 183 carrying its SDP, then 200; we refresh at SE/2 by UPDATE."""
    trace = Trace()
    ua = await agent_for_pjsip(transport, timer=TimerSettings(session_expires=PJSIP_SE, refresher="uac"),
                               rel100="supported", trace=trace)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uas", transport, "--timer", f"{PJSIP_SE},90", "--100rel", "--ring", "183", "--ring-for", "0.5",
               "--wait", "80"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    call = await ua.call(
        f"sip:pjsip@127.0.0.1:{await pjsip_port(proc)}" + (";transport=tcp" if transport == "tcp" else "")
    )
    await call.wait_for(InviteState.CONFIRMED, timeout=20)
    ours = ua.endpoint.listeners[transport]
    lines = _lines(trace)
    assert lines[1].startswith("SIP/2.0 183") and lines[2].startswith("PRACK "), lines
    rel = next(m for m in trace.messages() if m.first_line.startswith("SIP/2.0 183"))
    assert b"RSeq:" in rel.data and b"application/sdp" in rel.data
    assert call.media is not None  # agreed at the 183 (early media), not again at the 2xx
    timer = call.session.timer
    assert timer is not None and timer.we_refresh and timer.interval == PJSIP_SE
    await asyncio.sleep(PJSIP_SE / 2 + 2)
    assert any(line.startswith("UPDATE ") for line in _lines(trace, ours)), _lines(trace)
    refreshed = [
        m for m in trace.messages() if m.first_line.startswith("SIP/2.0 200") and b"UPDATE" in m.data
    ]
    assert refreshed and b"Session-Expires: 90" in refreshed[0].data
    assert call.state is InviteState.CONFIRMED
    await call.hangup()
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "STATE DISCONNECTED 200" in out, out
    await call.close()
    assert not await ua.close()


async def _pjsip_calls_us_and_refreshes(transport: str) -> None:
    """PJSIP calls us requiring 100rel; our reliable 183 carries our answer; PJSIP refreshes."""
    trace = Trace()
    ua = await agent_for_pjsip(transport, timer=TimerSettings(), rel100="supported", trace=trace)
    host, port = ua.endpoint.listeners[transport]
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uac", f"sip:bob@{host}:{port}" + (";transport=tcp" if transport == "tcp" else ""), transport,
               "--timer", f"{PJSIP_SE},90", "--100rel",
               "--hangup-after", str(PJSIP_SE / 2 + 3)),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    call = await ua.incoming(timeout=20)
    await call.answer(183)
    await call.answer(200)  # held until PJSIP's PRACK
    await call.wait_for(InviteState.CONFIRMED, timeout=20)
    flow = [line.split()[1] if line.startswith("SIP/") else line.split()[0] for line in _lines(trace)]
    # (pjsua may slip in an UPDATE before its ACK: it re-offers one codec when we answered several)
    assert flow[:5] == ["INVITE", "183", "PRACK", "200", "200"] and "ACK" in flow, flow
    timer = call.session.timer
    assert timer is not None and not timer.we_refresh and timer.interval == PJSIP_SE  # PJSIP refreshes
    await call.wait_for(InviteState.DISCONNECTED, timeout=PJSIP_SE)
    refreshes = [line for line in _lines(trace, (host, port)) if False] or [
        m
        for m in trace.messages()
        if m.first_line.split()[0] in ("UPDATE", "INVITE") and m.source != (host, port)
    ][1:]
    assert refreshes, _lines(trace)  # PJSIP refreshed at SE/2 and we answered
    assert call.cause == 200  # PJSIP hung up with BYE, not us at expiry
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "STATE CONFIRMED 200" in out and "FINAL 200" in out, out
    await call.close()
    assert not await ua.close()


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
async def test_pjsip_session_timers_and_100rel_both_ways() -> None:
    """Each side as refresher, 100rel with SDP in the reliable 183, both directions, over UDP and
    TCP, all four at once (one 45-second wait for all)."""
    await asyncio.gather(*(flow(t) for flow in (_we_call_pjsip_and_refresh, _pjsip_calls_us_and_refreshes)
                           for t in ("udp", "tcp")))  # fmt: skip


# -- #12: what PJSIP shows of the offer/answer edge cases and of the command line ------------------


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
async def test_sdp_in_pjsips_unreliable_183_is_the_answer() -> None:
    """PJSIP rings with an unreliable 183 carrying its SDP, then answers 200 with it again: the
    183's SDP is the answer (early media), the 200's is not negotiated a second time."""
    trace = Trace()
    ua = await agent_for_pjsip("udp", trace=trace)
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uas", "udp", "--ring", "183", "--ring-for", "0.5"), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    call = await ua.call(f"sip:pjsip@127.0.0.1:{await pjsip_port(proc)}")
    await call.wait_for(InviteState.EARLY, timeout=20)
    early = call.media
    assert early is not None  # agreed at the 183: early media without 100rel
    ringing = next(m for m in trace.messages() if m.first_line.startswith("SIP/2.0 183"))
    assert b"application/sdp" in ringing.data and b"RSeq" not in ringing.data
    await call.wait_for(InviteState.CONFIRMED, timeout=20)
    ok = next(m for m in trace.messages() if m.first_line.startswith("SIP/2.0 200") and b"INVITE" in m.data)
    assert b"application/sdp" in ok.data  # PJSIP repeats it ...
    await asyncio.sleep(0.2)
    assert call.media is early  # ... and it is not taken again
    await call.hangup()
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "STATE DISCONNECTED 200" in out, out
    await call.close()
    assert not await ua.close()


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
async def test_pjsip_calls_invsess_answer_which_reinvites_takes_info_and_hangs_up(tmp_path: Path) -> None:
    """`invsess answer --allow info --reinvite-after --hangup-after` with PJSIP calling: PJSIP's
    DTMF by SIP INFO gets 200, our re-INVITE is answered, our BYE ends the call."""
    port, trace_file = _free_port(), tmp_path / "answer.jsonl"
    answer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "invsess.cli", "answer", "--listen", f"udp:127.0.0.1:{port}", "--allow", "info",
        "--reinvite-after", "0.5", "--hangup-after", "2", "--calls", "1", "--trace", str(trace_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert answer.stderr is not None
    first = (await asyncio.wait_for(answer.stderr.readline(), 20)).decode()
    assert first.startswith("warning: no --auth")  # answer says first that it answers anyone
    assert "listening on udp" in (await asyncio.wait_for(answer.stderr.readline(), 20)).decode()
    caller = await asyncio.create_subprocess_exec(
        *pjsip("uac", f"sip:bob@127.0.0.1:{port}", "udp", "--dtmf-info", "--hangup-after", "20"), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await asyncio.wait_for(caller.communicate(), 40))[0].decode(errors="replace")
    _, err = await asyncio.wait_for(answer.communicate(), 20)
    report = err.decode(errors="replace")
    assert "DTMF-INFO sent" in out and "STATE DISCONNECTED 200" in out, out
    assert answer.returncode == 0, report
    assert "calls ended: 1 (cause 200 x1)" in report and "BYE sent x1, re-INVITE done x1" in report, report
    trace = Trace.read(trace_file)
    info = [m for m in trace.messages() if m.first_line.startswith("INFO ")]
    assert info and b"application/dtmf-relay" in info[0].data
    assert any(m.first_line.startswith("SIP/2.0 200") and b" INFO\r\n" in m.data for m in trace.messages())
    assert any(m.first_line.startswith("BYE ") and m.source == ("127.0.0.1", port) for m in trace.messages())


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pjsua2-python is not installed (.ci/run installs it)")
async def test_invsess_call_updates_and_reinvites_pjsip() -> None:
    proc = await asyncio.create_subprocess_exec(
        *pjsip("uas", "udp"), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    port = await pjsip_port(proc)
    placed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "invsess.cli", "call", f"sip:pjsip@127.0.0.1:{port}", "--hold", "2",
        "--update-after", "0.3", "--reinvite-after", "1", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(placed.communicate(), 40)
    summary = stdout.decode()
    assert placed.returncode == 0, summary + stderr.decode()
    assert "1 calls: 1 succeeded, 0 failed" in summary
    assert "in-call requests: UPDATE done x1, re-INVITE done x1" in summary, summary
    out = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    assert "STATE DISCONNECTED 200" in out, out
