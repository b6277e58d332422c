"""The JSON-RPC 2.0 server: the protocol to the letter (whatever the body), the methods and their
shapes, HTTP (aiohttp) with its token, and the Prometheus exposition."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from invsess.aio import SendGuard, UserAgent
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import InviteState
from invsess.monitor import BindAddress, Dispatcher, InvalidParamsError, MonitorMethods, MonitorTarget
from invsess.monitor.client import RpcCallError, RpcClient, RpcClientError
from invsess.sdp import parse_sdp
from invsess.transaction import TimerConfig

FAST = TimerConfig(t1=0.02, t2=0.16, t4=0.1)


def answer(d: Dispatcher, body: bytes | str) -> tuple[int, Any]:
    status, raw = d.handle(body.encode() if isinstance(body, str) else body)
    return status, None if raw is None else json.loads(raw)


def toy() -> Dispatcher:
    d = Dispatcher(max_batch=3)

    def subtract(minuend: int, subtrahend: int) -> int:
        """Subtract."""
        if not isinstance(minuend, int) or not isinstance(subtrahend, int):
            raise InvalidParamsError("integers only")
        return minuend - subtrahend

    def broken() -> int:
        """Divide by zero."""
        return 1 // 0

    def unencodable() -> object:
        """A result JSON cannot carry."""
        return {1, 2}

    d.add("subtract", subtract)
    d.add("broken", broken)
    d.add("unencodable", unencodable)
    return d


# -- the protocol (the examples of the JSON-RPC 2.0 specification, and worse) -------------------


def test_positional_and_named_params() -> None:
    d = toy()
    assert answer(d, '{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}') == (
        200,
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    )
    assert answer(
        d, '{"jsonrpc":"2.0","method":"subtract","params":{"subtrahend":23,"minuend":42},"id":"x"}'
    )[1] == {"jsonrpc": "2.0", "result": 19, "id": "x"}


def test_notifications_get_no_answer() -> None:
    d = toy()
    assert answer(d, '{"jsonrpc":"2.0","method":"subtract","params":[1,2]}') == (204, None)
    assert answer(d, '{"jsonrpc":"2.0","method":"nosuch"}') == (204, None)  # not even errors
    assert answer(d, '[{"jsonrpc":"2.0","method":"subtract","params":[1,2]}]') == (204, None)


@pytest.mark.parametrize(
    ("body", "status", "code", "rid"),
    [
        ('{"jsonrpc":"2.0","method":"foobar","id":"1"}', 404, -32601, "1"),
        ('{"jsonrpc":"2.0","method":"foobar, "params":"bar", "baz]', 400, -32700, None),
        ("not json", 400, -32700, None),
        (b"\xff\xfe\x00", 400, -32700, None),  # not UTF-8
        ("[" * 100 + "]" * 100, 400, -32700, None),  # nested past the limit
        ("[" * 100000, 400, -32700, None),  # past Python's own recursion limit
        ('{"jsonrpc":"2.0","method":1,"params":"bar"}', 400, -32600, None),
        ('{"method":"subtract","params":[1,2],"id":3}', 400, -32600, 3),  # no "jsonrpc"
        ('{"jsonrpc":"1.0","method":"subtract","params":[1,2],"id":3}', 400, -32600, 3),
        ('{"jsonrpc":"2.0","method":"subtract","params":"12","id":4}', 400, -32600, 4),
        ('{"jsonrpc":"2.0","method":"subtract","params":[1,2],"id":true}', 400, -32600, None),
        ('{"jsonrpc":"2.0","method":"subtract","params":[1,2],"id":[1]}', 400, -32600, None),
        ("[]", 400, -32600, None),
        ("1", 400, -32600, None),
        ("null", 400, -32600, None),
        ('{"jsonrpc":"2.0","method":"subtract","params":[1],"id":5}', 400, -32602, 5),
        ('{"jsonrpc":"2.0","method":"subtract","params":[1,2,3],"id":5}', 400, -32602, 5),
        ('{"jsonrpc":"2.0","method":"subtract","params":{"x":1},"id":5}', 400, -32602, 5),
        ('{"jsonrpc":"2.0","method":"subtract","params":["a","b"],"id":6}', 400, -32602, 6),
        ('{"jsonrpc":"2.0","method":"broken","id":7}', 500, -32603, 7),
        ('{"jsonrpc":"2.0","method":"unencodable","id":8}', 500, -32603, 8),
    ],
)
def test_every_malformed_request_gets_its_error(body: str | bytes, status: int, code: int, rid: Any) -> None:
    got_status, got = answer(toy(), body)
    assert got_status == status
    assert got["jsonrpc"] == "2.0" and got["id"] == rid
    assert got["error"]["code"] == code
    assert isinstance(got["error"]["message"], str) and got["error"]["message"]


def test_batches() -> None:
    d = toy()
    status, got = answer(
        d,
        '[{"jsonrpc":"2.0","method":"subtract","params":[5,3],"id":"a"},'
        '{"jsonrpc":"2.0","method":"subtract","params":[7,0]},'  # a notification: no answer
        '{"foo":"boo"}]',
    )
    assert status == 200
    assert got[0] == {"jsonrpc": "2.0", "result": 2, "id": "a"}
    assert got[1]["error"]["code"] == -32600 and got[1]["id"] is None
    assert len(got) == 2
    status, got = answer(d, "[1,2,3]")
    assert status == 200 and [g["error"]["code"] for g in got] == [-32600] * 3
    status, got = answer(d, "[1,2,3,4]")  # over max_batch: refused as a whole
    assert status == 400 and got["error"]["code"] == -32600


# -- the methods --------------------------------------------------------------------------------


@pytest.fixture
def methods() -> Iterator[MonitorMethods]:
    endpoint = Endpoint(EndpointConfig(seed=1, malloc_debug=True))
    yield MonitorMethods([MonitorTarget("udp:127.0.0.1:5060", endpoint, clock=lambda: 100.0)], started=0.0)
    assert not endpoint.close()


def call(methods: MonitorMethods, method: str, *params: Any) -> Any:
    return methods.dispatcher().call(method, list(params))


def test_statistics_selection(methods: MonitorMethods) -> None:
    everything = call(methods, "stats.get_statistics", "all")
    assert "shmem:used_size = 0" in everything and "core:rcv_requests = 0" in everything
    assert everything == sorted(everything, key=lambda line: tuple(line.split(" = ")[0].split(":", 1)))
    assert call(methods, "stats.get_statistics", "used_size", "rcv_requests") == [
        "shmem:used_size = 0",
        "core:rcv_requests = 0",
    ]  # Kamailio's order: as asked
    assert all(line.startswith("sanity:") for line in call(methods, "stats.get_statistics", "sanity:"))
    assert call(methods, "stats.get_statistics", "tm:current") == ["tm:current = 0"]  # invsess's form too
    assert call(methods, "stats.get_statistics", "nosuch", "nosuch:", "shmem:nosuch") == []
    fetched = call(methods, "stats.fetch", "shmem:")
    assert fetched["shmem.total_size"] == str(64 * 1024 * 1024)
    assert all(isinstance(v, str) for v in fetched.values())
    assert call(methods, "stats.fetchn", "shmem:")["shmem.total_size"] == 64 * 1024 * 1024
    with pytest.raises(InvalidParamsError, match="Please provide"):
        call(methods, "stats.get_statistics")
    with pytest.raises(InvalidParamsError, match="strings"):
        call(methods, "stats.fetch", 5)


def test_kamailio_core_methods(methods: MonitorMethods) -> None:
    assert call(methods, "core.version").startswith("invsess 0.1.0 (")
    uptime = call(methods, "core.uptime")
    assert set(uptime) == {"now", "up_since", "uptime"} and uptime["uptime"] > 0
    shm = call(methods, "core.shmmem")
    assert shm["total"] == 64 * 1024 * 1024
    assert call(methods, "core.shmmem", "k")["total"] == 64 * 1024
    assert call(methods, "core.shmmem", "MB")["total"] == 64
    for bad in ("x", "kk", "", 5):
        with pytest.raises(InvalidParamsError, match="b\\|k\\|m\\|g"):
            call(methods, "core.shmmem", bad)
    (entry,) = call(methods, "pkg.stats")
    assert entry["desc"] == "udp:127.0.0.1:5060" and entry["entry"] == 0
    assert call(methods, "pkg.stats", "pid", entry["pid"]) == [entry]
    assert call(methods, "pkg.stats", "index", 0) == [entry]
    assert call(methods, "pkg.stats", "rank", 7) == []
    with pytest.raises(InvalidParamsError, match="No such pid"):
        call(methods, "pkg.stats", "pid", 1)
    with pytest.raises(InvalidParamsError, match="Invalid filter"):
        call(methods, "pkg.stats", "name", 1)
    with pytest.raises(InvalidParamsError, match="One more parameter"):
        call(methods, "pkg.stats", "pid")
    assert "invsess.dialogs" in call(methods, "system.listMethods")
    assert call(methods, "system.methodHelp", "core.shmmem").startswith("Returns")
    with pytest.raises(InvalidParamsError, match="command not found"):
        call(methods, "system.methodHelp", "nosuch")


def test_snapshot_and_diff_name_what_grew(methods: MonitorMethods) -> None:
    from invsess.monitor.jsonrpc import RpcError

    with pytest.raises(RpcError, match=r"call invsess\.snapshot first") as caught:
        call(methods, "invsess.diff")
    assert caught.value.code == -32000
    (taken,) = call(methods, "invsess.snapshot")
    assert taken["blocks"] == 0
    factory = methods.targets[0].factory
    pool = factory.create_pool("app-cache")
    from invsess.memory import Buffer

    for _ in range(3):
        pool.alloc(Buffer, b"x" * 100)  # the line the diff must name
    (diff,) = call(methods, "invsess.diff")
    (site,) = diff["sites"]
    assert site["function"] == "test_snapshot_and_diff_name_what_grew"
    assert (site["type"], site["count_diff"], site["size_diff"]) == ("Buffer", 3, 3 * site["size"] // 3)
    assert "test_monitor_rpc.py" in diff["report"] and "count=3 (+3)" in diff["report"]
    (live,) = call(methods, "invsess.leaks", 5)
    assert live["blocks"] == 3 and live["sites"][0]["count"] == 3
    assert live["report"].startswith("3 live blocks")
    with pytest.raises(InvalidParamsError, match="positive integer"):
        call(methods, "invsess.leaks", 0)
    pool.release("test done")


async def test_dialogs_list_state_age_and_reference_holders() -> None:
    alice, bob = await _agent("alice"), await _agent("bob")
    h, p = bob.endpoint.listeners["udp"]
    placed = await alice.call(f"sip:bob@{h}:{p}")
    incoming = await bob.incoming(timeout=5)
    await incoming.answer(200)
    await placed.wait_for(InviteState.CONFIRMED)
    await incoming.wait_for(InviteState.CONFIRMED)
    methods = MonitorMethods([bob.monitor_target()])
    (dialog,) = call(methods, "invsess.dialogs")
    assert (
        dialog["call_id"] == incoming.call_id and dialog["role"] == "UAS" and dialog["state"] == "CONFIRMED"
    )
    assert 0 <= dialog["age"] < 5
    assert dialog["references"] == {"inv-session": 1, "app-call": 1}
    assert dialog["session"] == {"state": "CONFIRMED", "references": {"inv-session": 1, "app-call": 1}}
    await placed.hangup()
    await incoming.wait_for(InviteState.DISCONNECTED)
    await incoming.close()  # the application's references go; the layer's went at DISCONNECTED
    await asyncio.sleep(0.05)
    for entry in call(methods, "invsess.dialogs"):  # a dialog kept by its BYE transaction only
        assert entry["references"] == {} and entry["session"]["references"] == {}
    await placed.close()
    for ua in (alice, bob):
        assert not await ua.close()


# -- over HTTP ----------------------------------------------------------------------------------


async def _agent(name: str) -> UserAgent:
    sdp = f"v=0\r\no={name} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    return await UserAgent.create(
        ["udp:127.0.0.1:0"],
        sdp=parse_sdp(sdp),
        user=name,
        config=EndpointConfig(malloc_debug=True, allow=("INVITE", "BYE"), timers=FAST),
        guard=SendGuard.loopback_only(),
    )


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body if method == "POST" else None, headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def test_http_server_answers_and_refuses() -> None:
    ua = await _agent("bob")
    service = await ua.serve_rpc()
    assert service.address[0] == "127.0.0.1" and service.address[1] > 0
    assert service.url == f"http://127.0.0.1:{service.address[1]}/RPC"
    status, body = await in_thread(post, service.url, b'{"jsonrpc":"2.0","method":"core.shmmem","id":1}')
    assert status == 200 and json.loads(body)["result"]["total"] == 64 * 1024 * 1024
    status, body = await in_thread(post, service.url, b"{not json")
    assert status == 400 and json.loads(body)["error"]["code"] == -32700
    status, _ = await in_thread(post, service.url, b'{"jsonrpc":"2.0","method":"core.version"}')
    assert status == 204
    status, _ = await in_thread(post, service.url, b"x" * (128 * 1024))
    assert status == 413  # bodies are bounded
    status, _ = await in_thread(post, service.url, b"", {}, "GET")
    assert status == 405
    status, _ = await in_thread(post, service.url.replace("/RPC", "/nowhere"), b"{}")
    assert status == 404
    client = RpcClient(service.url)
    assert (await in_thread(client.call, "core.version")).startswith("invsess")
    with pytest.raises(RpcCallError) as caught:
        await in_thread(client.call, "no.such.method")
    assert caught.value.code == -32601 and caught.value.method_missing
    assert not await ua.close()
    with pytest.raises(RpcClientError, match="cannot reach"):
        await in_thread(client.call, "core.version")  # closed with the agent


async def test_token_is_required_when_set() -> None:
    ua = await _agent("bob")
    rpc = await ua.serve_rpc(token="s3cret")
    metrics = await ua.serve_metrics(token="s3cret")
    body = b'{"jsonrpc":"2.0","method":"core.version","id":1}'
    for url, method in ((rpc.url, "POST"), (metrics.url, "GET")):
        status, _ = await in_thread(post, url, body, {}, method)
        assert status == 401
        status, _ = await in_thread(post, url, body, {"Authorization": "Bearer wrong"}, method)
        assert status == 401
        status, _ = await in_thread(post, url, body, {"Authorization": "Bearer s3cret"}, method)
        assert status == 200
    with pytest.raises(RpcClientError, match="token"):
        await in_thread(RpcClient(rpc.url).call, "core.version")
    assert await in_thread(RpcClient(rpc.url, token="s3cret").call, "core.version")
    assert not await ua.close()


def test_bind_addresses() -> None:
    assert BindAddress.parse("5071") == BindAddress("127.0.0.1", 5071)
    assert BindAddress.parse("0.0.0.0:80") == BindAddress("0.0.0.0", 80)
    assert BindAddress.parse("[::1]:9") == BindAddress("::1", 9)
    assert BindAddress.parse("5071").loopback and not BindAddress.parse("192.0.2.1:1").loopback
    for bad in ("localhost:5071", "1.2.3.4", "70000", "[::1]9", "127.0.0.1:x"):
        with pytest.raises(ValueError, match=r"not an IP address|expected|invalid port"):
            BindAddress.parse(bad)


async def test_prometheus_exposition_parses_and_follows_the_conventions() -> None:
    alice, bob = await _agent("alice"), await _agent("bob")
    service = await bob.serve_metrics()
    h, p = bob.endpoint.listeners["udp"]
    placed = await alice.call(f"sip:bob@{h}:{p}")
    incoming = await bob.incoming(timeout=5)
    await incoming.answer(200)
    await placed.wait_for(InviteState.CONFIRMED)
    status, body = await in_thread(post, service.url, b"", {}, "GET")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "invsess_memory_used_bytes",
        "invsess_memory_pool_used_bytes",
        "invsess_live_objects",
        "invsess_sessions",
        "invsess_dialogs",
        "invsess_transactions",
        "invsess_sip_requests_received",
        "invsess_sip_responses_sent",
        "invsess_retransmissions",
        "invsess_sanity_failures",
        "invsess_limit_rejections",
        "process_resident_memory_bytes",
    ):
        assert name in families, name
    for name, family in families.items():
        if name.startswith("invsess_") and family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
    sessions = {s.labels["state"]: s.value for s in families["invsess_sessions"].samples}
    assert sessions["confirmed"] == 1.0
    invites = [
        s for s in families["invsess_sip_requests_received"].samples if s.labels.get("method") == "INVITE"
    ]
    assert invites and invites[0].value == 1.0 and invites[0].labels["endpoint"] == f"udp:{h}:{p}"
    used = families["invsess_memory_used_bytes"].samples[0].value
    assert used == bob.endpoint.factory.statistics().used_size
    await placed.hangup()
    await incoming.wait_for(InviteState.DISCONNECTED)
    await incoming.close()
    await placed.close()
    for ua in (alice, bob):
        assert not await ua.close()
