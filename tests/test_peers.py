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

from invsess.aio import AsyncEndpoint, SendGuard
from invsess.endpoint import Endpoint, EndpointConfig
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
        sys.executable, "-m", "tests.peers.pjsua2_call", target, transport, cwd=ROOT,
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
