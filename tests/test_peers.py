"""Real peers nobody here wrote, against a live endpoint on loopback.

sipsak (Debian package; `.ci/run` installs it) sends OPTIONS over UDP and TCP and exits 0 only on
a 200. The PJSIP (pjsua2) call tests arrive with the INVITE session layer.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from invsess.aio import AsyncEndpoint, SendGuard
from invsess.endpoint import Endpoint, EndpointConfig

SIPSAK = shutil.which("sipsak")
pytestmark = pytest.mark.skipif(SIPSAK is None, reason="sipsak is not installed (.ci/run installs it)")


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
