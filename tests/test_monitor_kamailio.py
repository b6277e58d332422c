"""invsess's JSON-RPC against a real Kamailio 5.6 (jsonrpcs + xhttp): the same methods on both,
the same keys and types; and where Kamailio does not follow JSON-RPC 2.0 while invsess does,
Kamailio's own behaviour recorded (docs/monitoring.md lists the differences)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from invsess.aio import UserAgent
from invsess.endpoint import EndpointConfig
from invsess.monitor.client import RpcCallError, RpcClient
from invsess.sdp import parse_sdp
from invsess.testing.kamailio import find_kamailio
from invsess.testing.plugin import KAMAILIO_MISSING

ROOT = Path(__file__).resolve().parent.parent
RPC_ONLY = ROOT / "examples" / "kamailio" / "rpc-only.cfg"
pytestmark = pytest.mark.skipif(find_kamailio() is None, reason=KAMAILIO_MISSING)

SDP = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def shape(value: Any) -> Any:
    """Keys and types, recursively (lists by the shape of their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def raw(url: str, body: bytes) -> tuple[int | None, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except TimeoutError:
        return None, b""


@pytest.fixture
async def invsess_rpc() -> Any:
    ua = await UserAgent.create(
        ["udp:127.0.0.1:0"],
        sdp=parse_sdp(SDP),
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE")),
    )
    service = await ua.serve_rpc()
    yield service.url
    assert not await ua.close()


async def test_same_methods_same_shapes(kamailio_factory, invsess_rpc: str) -> None:
    kam = kamailio_factory(RPC_ONLY)
    ours, theirs = RpcClient(invsess_rpc), RpcClient(kam.rpc_url)

    async def both(method: str, *params: Any) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        mine = await loop.run_in_executor(None, lambda: ours.call(method, *params))
        kams = await loop.run_in_executor(None, lambda: theirs.call(method, *params))
        return mine, kams

    for method, params in (
        ("core.shmmem", ()),
        ("core.shmmem", ("k",)),
        ("core.uptime", ()),
        ("pkg.stats", ()),
        ("stats.fetch", ("shmem:",)),
        ("stats.fetchn", ("shmem:",)),
        ("stats.fetch", ("used_size",)),
        ("stats.get_statistics", ("used_size", "rcv_requests")),
        ("stats.get_statistics", ("shmem:",)),
        ("system.methodHelp", ("core.uptime",)),
    ):
        mine, kams = await both(method, *params)
        assert shape(mine) == shape(kams), (method, params, mine, kams)

    # Same keys where the figures have the same meaning.
    mine, kams = await both("stats.fetch", "shmem:")
    assert set(mine) == set(kams)
    mine, kams = await both("stats.get_statistics", "shmem:")
    assert [line.split(" = ")[0] for line in mine] == [line.split(" = ")[0] for line in kams]
    mine, kams = await both("stats.get_statistics", "used_size", "rcv_requests")
    assert [line.split(" = ")[0] for line in mine] == [line.split(" = ")[0] for line in kams]
    # Every core statistic Kamailio 5.6 has about received messages, invsess has too.
    mine, kams = await both("stats.fetch", "core:")
    kamailio_core = {
        k for k in kams if k.startswith("core.rcv_") or k in ("core.bad_msg_hdr", "core.unsupported_methods")
    }
    assert kamailio_core <= set(mine)
    line = re.compile(r"\w+:[\w.-]+ = \d+")
    mine, kams = await both("stats.get_statistics", "all")
    assert all(line.fullmatch(x) for x in mine) and all(line.fullmatch(x) for x in kams)
    mine, kams = await both("core.version")
    assert re.fullmatch(r"invsess \S+ \(\S+/\S+\)", mine) and re.match(r"kamailio \S+ \(\S+/\S+\)", kams)
    mine, kams = await both("system.listMethods")
    shared = {"core.version", "core.uptime", "core.shmmem", "pkg.stats", "stats.get_statistics", "stats.fetch",
              "stats.fetchn", "system.listMethods", "system.methodHelp"}  # fmt: skip
    assert shared <= set(mine) and shared <= set(kams)
    (entry,) = (await both("pkg.stats"))[0]
    assert set(entry) == set((await both("pkg.stats"))[1][0])


async def test_where_kamailio_differs_from_json_rpc(kamailio_factory, invsess_rpc: str) -> None:
    """invsess answers by the JSON-RPC 2.0 specification; Kamailio's jsonrpcs does not, in ways
    that docs/monitoring.md lists. Both are asserted, so the list stays true."""
    kam = kamailio_factory(RPC_ONLY)
    loop = asyncio.get_running_loop()

    async def both(body: bytes) -> tuple[tuple[int | None, Any], tuple[int | None, Any]]:
        mine = await loop.run_in_executor(None, raw, invsess_rpc, body)
        kams = await loop.run_in_executor(None, raw, kam.rpc_url, body)

        def decoded(answer: tuple[int | None, bytes]) -> tuple[int | None, Any]:
            return answer[0], json.loads(answer[1]) if answer[1] else None

        return decoded(mine), decoded(kams)

    # An unknown method: -32601 here, Kamailio's own 500 "Method Not Found".
    mine, kams = await both(b'{"jsonrpc":"2.0","method":"no.such","id":1}')
    assert mine == (404, {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found",
                                                     "data": {"method": "no.such"}}, "id": 1})  # fmt: skip
    assert kams[0] == 500 and kams[1]["error"] == {"code": 500, "message": "Method Not Found"}
    # No "jsonrpc": -32600 here; Kamailio runs the method anyway and answers {}.
    mine, kams = await both(b'{"method":"core.version","id":2}')
    assert mine[1]["error"]["code"] == -32600
    assert kams == (200, {"jsonrpc": "2.0", "result": {}, "id": 2})
    # A batch: answered per request here; Kamailio answers one empty result.
    mine, kams = await both(b'[{"jsonrpc":"2.0","method":"core.version","id":1}]')
    assert mine[0] == 200 and mine[1][0]["result"].startswith("invsess")
    assert kams == (200, {"jsonrpc": "2.0", "result": {}})
    # A notification: no answer here (204); Kamailio answers it (without id).
    mine, kams = await both(b'{"jsonrpc":"2.0","method":"core.version"}')
    assert mine == (204, None)
    assert kams[0] == 200 and "result" in kams[1] and "id" not in kams[1]
    # A missing parameter: -32602 here; Kamailio's 400 with the same words.
    mine, kams = await both(b'{"jsonrpc":"2.0","method":"stats.get_statistics","id":7}')
    assert mine[1]["error"]["code"] == -32602 and mine[1]["error"]["message"] == kams[1]["error"]["message"]
    assert kams[0] == 400 and kams[1]["error"]["code"] == 400
    # Not JSON: -32700 here; Kamailio does not answer at all (the client times out).
    mine = await loop.run_in_executor(None, raw, invsess_rpc, b"not json")
    assert mine[0] == 400 and json.loads(mine[1])["error"]["code"] == -32700
    status, body = await loop.run_in_executor(None, raw, kam.rpc_url, b"not json")
    assert (status, body) == (None, b"")
    # Kamailio is still serving after all this, and so are we.
    assert RpcClient(kam.rpc_url).call("core.version").startswith("kamailio")
    assert (await loop.run_in_executor(None, RpcClient(invsess_rpc).call, "core.version")).startswith(
        "invsess"
    )


async def test_invsess_stats_watches_a_kamailio_too(kamailio_factory) -> None:
    """``invsess stats`` reads with the methods Kamailio has; without invsess.leaks it leaves the
    allocation sites out."""
    from invsess.monitor.watch import read

    kam = kamailio_factory(RPC_ONLY)
    reading = await asyncio.get_running_loop().run_in_executor(None, read, RpcClient(kam.rpc_url))
    assert reading.version.startswith("kamailio")
    assert reading.sites is None
    assert reading.get("shmem.total_size") == 64 * 1024 * 1024
    assert reading.pkg and reading.pkg[0]["desc"] == "main process - attendant"
    with pytest.raises(RpcCallError) as caught:
        RpcClient(kam.rpc_url).call("invsess.leaks")
    assert caught.value.method_missing
