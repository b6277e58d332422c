"""PJSIP calls PJSIP through the B2BUA (pjsua2 at both ends, real UDP on loopback): hold, resume,
DTMF by SIP INFO, and BYE from each side (`.ci/run` installs the pjsua2 wheel)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from invsess.aio import SendGuard
from invsess.b2bua import B2bua
from invsess.endpoint import EndpointConfig
from invsess.trace import Trace

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pjsua2") is None, reason="pjsua2-python is not installed (.ci/run installs it)"
)


def peer(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.peers.pjsua2_b2bua", *args]


async def start_uas(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        *peer("uas", *args), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError("the pjsua2 UAS exited before listening")
            if line.startswith("PORT "):
                return proc, int(line.split()[1])


async def bridge_to(port: int, trace: Trace) -> B2bua:
    config = EndpointConfig(
        malloc_debug=True,
        allow=("INVITE", "BYE", "OPTIONS", "UPDATE", "INFO", "MESSAGE"),
        accept=("application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain"),
    )
    return await B2bua.create(
        ["udp:127.0.0.1:0"],
        f"sip:127.0.0.1:{port}",
        config=config,
        guard=SendGuard.loopback_only(),
        trace=trace,
    )


async def test_pjsip_through_the_b2bua_hold_resume_dtmf_and_the_callers_bye() -> None:
    trace = Trace()
    uas, port = await start_uas()
    b2bua = await bridge_to(port, trace)
    host, b2bua_port = b2bua.ua.endpoint.listeners["udp"]
    uac = await asyncio.create_subprocess_exec(
        *peer("uac", f"sip:pjsip-uas@{host}:{b2bua_port}", "--hold", "--dtmf", "59", "--hangup-after", "0.5"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    caller = (await asyncio.wait_for(uac.communicate(), 60))[0].decode(errors="replace")
    callee = (await asyncio.wait_for(uas.communicate(), 60))[0].decode(errors="replace")
    assert "STATE CONFIRMED 200" in caller and "STATE CONFIRMED 200" in callee, caller + callee
    assert "MEDIA LOCAL_HOLD" in caller, caller  # the hold went through the B2BUA and back
    assert "MEDIA REMOTE_HOLD" in callee, callee  # the callee saw the caller's sendonly
    assert callee.rfind("MEDIA ACTIVE") > callee.find("MEDIA REMOTE_HOLD"), callee  # resumed
    assert "DTMF 5 info" in callee and "DTMF 9 info" in callee, callee  # INFO relayed
    assert "FINAL 200" in caller and "FINAL 200" in callee, caller + callee  # the caller's BYE
    # Two legs, two dialogs: no Call-ID crosses the B2BUA.
    call_ids = {
        m.data.split(b"Call-ID: ")[1].split(b"\r\n")[0] for m in trace.messages() if b"Call-ID: " in m.data
    }
    assert len(call_ids) == 2
    report = await b2bua.close()
    assert not report, report.format()
    assert b2bua.outcomes[200] == 1


async def test_pjsip_through_the_b2bua_bye_from_the_callee() -> None:
    trace = Trace()
    uas, port = await start_uas("--hangup-after", "0.5")
    b2bua = await bridge_to(port, trace)
    host, b2bua_port = b2bua.ua.endpoint.listeners["udp"]
    uac = await asyncio.create_subprocess_exec(
        *peer("uac", f"sip:pjsip-uas@{host}:{b2bua_port}", "--dtmf", "1"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    caller = (await asyncio.wait_for(uac.communicate(), 60))[0].decode(errors="replace")
    callee = (await asyncio.wait_for(uas.communicate(), 60))[0].decode(errors="replace")
    assert "STATE CONFIRMED 200" in caller and "DTMF 1 info" in callee, caller + callee
    assert "STATE DISCONNECTED" in caller and "FINAL 200" in caller, caller  # ended by the callee's BYE
    byes = [m for m in trace.messages() if m.first_line.startswith("BYE ")]
    assert len(byes) == 2  # the callee's to us, ours to the caller
    report = await b2bua.close()
    assert not report, report.format()
