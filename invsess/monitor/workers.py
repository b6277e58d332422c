"""One monitoring URL for ``invsess answer --workers N``: JSON-RPC and Prometheus over every
worker's own.

Each worker serves its figures on a loopback port of its own, with the same methods as a single
process (:mod:`invsess.monitor.methods`), and tells the supervisor where. The supervisor serves
the URL the user asked for (``--rpc``, ``--metrics``): each request asks every worker and
combines the answers the way Kamailio shows its processes:

* ``pkg.stats``: one entry per worker (its endpoint's pool factory), ``pid`` the worker's and
  ``rank`` its rank, 1..N — Kamailio ranks its SIP workers from 1, and its rank 0, the main
  process, has no memory of ours to show: the supervisor serves no SIP. The filters
  (``pid|rank|index N``) work as Kamailio's, over all workers.
* ``core.shmmem`` and ``stats.get_statistics`` / ``fetch`` / ``fetchn``: sums over the workers,
  as Kamailio's statistics sum its processes' (``shmem:max_used_size`` is then the sum of the
  workers' peaks: an upper bound of the peak of the sum).
* ``invsess.leaks`` / ``snapshot`` / ``diff`` / ``dialogs``: every worker's entries, each marked
  with its ``worker`` rank (``dialogs``: the oldest ``limit`` over all).
* ``core.version``, ``core.uptime``, ``system.*``: the supervisor's.

One worker's whole view stays a URL away: each worker's own URL is printed at start.

Prometheus: every worker's samples, with a ``worker`` label (its rank) — its process metrics
too, so each worker's resident memory and CPU show — and ``invsess_worker_up`` per worker (0
when a scrape of it failed).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from invsess.monitor.bind import BindAddress
from invsess.monitor.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    InvalidParamsError,
    RpcError,
)
from invsess.monitor.methods import version_string
from invsess.monitor.server import MAX_BODY, HttpService, _auth, _start

#: How long a worker may take to answer the supervisor.
WORKER_TIMEOUT = 5.0
_HTTP_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, METHOD_NOT_FOUND: 404}


@attrs.frozen
class WorkerEndpoint:
    """Where one worker serves its figures (None: not served)."""

    rank: int
    pid: int
    rpc: str | None
    metrics: str | None


class WorkerClient:
    """Asks the workers, all at once, over one aiohttp session (made on first use)."""

    def __init__(self, workers: Sequence[WorkerEndpoint], token: str | None) -> None:
        self.workers = list(workers)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._ids = 0

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT))
        return self._session

    async def call(self, method: str, params: list[Any]) -> list[tuple[WorkerEndpoint, Any]]:
        """``method(*params)`` on every worker: (worker, result) by rank. The first error
        object a worker answers is raised as it came (invalid parameters...); a worker that
        does not answer is a server error naming it."""
        self._ids += 1
        payload = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._ids}
        answers = await asyncio.gather(*(self._one(w, payload) for w in self.workers))
        return list(zip(self.workers, answers, strict=True))

    async def _one(self, worker: WorkerEndpoint, payload: dict[str, Any]) -> Any:
        if worker.rpc is None:
            raise RpcError(SERVER_ERROR, f"worker {worker.rank} serves no JSON-RPC")
        try:
            async with self._client().post(worker.rpc, json=payload, headers=self._headers) as reply:
                answer = json.loads(await reply.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RpcError(
                SERVER_ERROR, f"worker {worker.rank} (pid {worker.pid}) did not answer: {exc!r}"
            ) from None
        if not isinstance(answer, dict) or answer.get("id") != payload["id"]:
            raise RpcError(SERVER_ERROR, f"worker {worker.rank}: not an answer to our request")
        error = answer.get("error")
        if isinstance(error, dict):
            raise RpcError(
                int(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")), error.get("data")
            )
        return answer.get("result")

    async def scrape(self, worker: WorkerEndpoint) -> str | None:
        """One worker's Prometheus text (None when it could not be read)."""
        if worker.metrics is None:
            return None
        try:
            async with self._client().get(worker.metrics, headers=self._headers) as reply:
                if reply.status != 200:
                    return None
                return await reply.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


Method = Callable[..., Awaitable[Any]]


class WorkerMethods:
    """The JSON-RPC methods over the workers; :meth:`handle` answers a request body."""

    def __init__(self, client: WorkerClient, *, max_batch: int = 100) -> None:
        self.client = client
        self.started = time.time()
        self.max_batch = max_batch
        self._methods: dict[str, Method] = {
            "core.version": self.core_version,
            "core.uptime": self.core_uptime,
            "core.shmmem": self.core_shmmem,
            "pkg.stats": self.pkg_stats,
            "stats.get_statistics": self.stats_get_statistics,
            "stats.fetch": self.stats_fetch,
            "stats.fetchn": self.stats_fetchn,
            "system.listMethods": self.list_methods,
            "system.methodHelp": self.method_help,
            "invsess.leaks": self.leaks,
            "invsess.snapshot": self.snapshot,
            "invsess.diff": self.diff,
            "invsess.dialogs": self.dialogs,
        }

    # -- the envelope (JSON-RPC 2.0, as invsess.monitor.jsonrpc answers it) -----------------

    async def handle(self, body: bytes) -> tuple[int, bytes | None]:
        """(HTTP status, response body or None for no content)."""
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return _single(_error(None, RpcError(PARSE_ERROR, "Parse error")))
        if isinstance(document, list):
            if not document or len(document) > self.max_batch:
                why = "empty batch" if not document else f"batch of {len(document)}: at most {self.max_batch}"
                return _single(_error(None, RpcError(INVALID_REQUEST, why)))
            answers = [a for a in await asyncio.gather(*(self._one(r) for r in document)) if a is not None]
            return (200, _encode(answers)) if answers else (204, None)
        answer = await self._one(document)
        return (204, None) if answer is None else _single(answer)

    async def _one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "a request must be a JSON object"))
        has_id = "id" in request
        rid = request.get("id")
        if has_id and not (rid is None or (isinstance(rid, str | int | float) and not isinstance(rid, bool))):
            return _error(None, RpcError(INVALID_REQUEST, "id must be a string, a number or null"))
        params = request.get("params", [])
        if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
            return _error(rid, RpcError(INVALID_REQUEST, 'a request needs "jsonrpc": "2.0" and a "method"'))
        if not isinstance(params, list | dict):
            return _error(rid, RpcError(INVALID_REQUEST, 'the "params" member must be an array or an object'))
        try:
            result = await self.call(request["method"], params)
        except RpcError as exc:
            return _error(rid, exc) if has_id else None
        return {"jsonrpc": "2.0", "result": result, "id": rid} if has_id else None

    async def call(self, name: str, params: list[Any] | dict[str, Any]) -> Any:
        """Run method ``name``; :class:`RpcError` for anything wrong."""
        method = self._methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found", {"method": name})
        try:
            signature = inspect.signature(method)
            bound = signature.bind(*params) if isinstance(params, list) else signature.bind(**params)
        except TypeError as exc:
            raise InvalidParamsError(f"{name}: {exc}") from None
        return await method(*bound.args, **bound.kwargs)

    # -- the supervisor's own ------------------------------------------------------------------

    async def core_version(self) -> str:
        """Returns the version string of the server."""
        return version_string()

    async def core_uptime(self) -> dict[str, Any]:
        """Returns uptime of the server."""
        now = time.time()
        return {
            "now": time.ctime(now),
            "up_since": time.ctime(self.started),
            "uptime": int(now - self.started),
        }

    async def list_methods(self) -> list[str]:
        """Lists the methods of this server."""
        return sorted(self._methods)

    async def method_help(self, name: str) -> str:
        """Returns the help of a method."""
        method = self._methods.get(name) if isinstance(name, str) else None
        if method is None:
            raise InvalidParamsError("command not found")
        return (inspect.getdoc(method) or "undocumented").splitlines()[0]

    # -- sums ----------------------------------------------------------------------------------

    async def core_shmmem(self, unit: str = "b") -> dict[str, int]:
        """Returns the workers' pool factories' memory info, summed; optional unit b|k|m|g."""
        total: dict[str, int] = {}
        for _, result in await self.client.call("core.shmmem", [unit]):
            for key, value in dict(result).items():
                total[key] = total.get(key, 0) + int(value)
        return total

    async def _stats(self, names: tuple[str, ...]) -> dict[str, int]:
        total: dict[str, int] = {}
        for _, result in await self.client.call("stats.fetchn", list(names)):
            for key, value in dict(result).items():
                total[key] = total.get(key, 0) + int(value)
        return total

    async def stats_get_statistics(self, *names: str) -> list[str]:
        """Returns statistics summed over the workers: all, a group (group:), or names."""
        return [f"{key.replace('.', ':', 1)} = {value}" for key, value in (await self._stats(names)).items()]

    async def stats_fetch(self, *names: str) -> dict[str, str]:
        """Returns statistics summed over the workers as {"group.name": "value"}."""
        return {key: str(value) for key, value in (await self._stats(names)).items()}

    async def stats_fetchn(self, *names: str) -> dict[str, int]:
        """Returns statistics summed over the workers as {"group.name": value}."""
        return await self._stats(names)

    # -- one entry per worker ------------------------------------------------------------------

    async def pkg_stats(self, mode: str | None = None, value: int | None = None) -> list[dict[str, Any]]:
        """Returns the memory of each worker (rank 1..N); optional filter pid|rank|index N."""
        if mode is not None:
            if mode not in ("pid", "rank", "index"):
                raise InvalidParamsError("Invalid filter type (use pid|rank|index)")
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidParamsError("One more parameter expected: an integer")
        entries: list[dict[str, Any]] = []
        for worker, result in await self.client.call("pkg.stats", []):
            for entry in result:
                entries.append(
                    {
                        **entry,
                        "entry": len(entries),
                        "rank": worker.rank,
                        "desc": f"worker {worker.rank}: {entry['desc']}",
                    }
                )
        if mode is None:
            return entries
        key = "entry" if mode == "index" else mode
        picked = [e for e in entries if e[key] == value]
        if not picked and mode != "rank":
            raise InvalidParamsError(f"No such {mode}")
        return picked

    async def _per_worker(self, method: str, params: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for worker, result in await self.client.call(method, params):
            for entry in result:
                named = {**entry, "worker": worker.rank}
                if "endpoint" in entry:
                    named["endpoint"] = f"worker {worker.rank}: {entry['endpoint']}"
                out.append(named)
        return out

    async def leaks(self, limit: int = 20) -> list[dict[str, Any]]:
        """Live blocks by allocation site, per worker, largest first."""
        return await self._per_worker("invsess.leaks", [limit])

    async def snapshot(self) -> list[dict[str, Any]]:
        """Takes a snapshot of live blocks by site in every worker, for invsess.diff."""
        return await self._per_worker("invsess.snapshot", [])

    async def diff(self, limit: int = 20) -> list[dict[str, Any]]:
        """What grew (or shrank) by allocation site since invsess.snapshot, per worker."""
        return await self._per_worker("invsess.diff", [limit])

    async def dialogs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Live dialogs of every worker, oldest first (the worker's rank in each)."""
        found = await self._per_worker("invsess.dialogs", [limit])
        found.sort(key=lambda d: -d["age"] if isinstance(d.get("age"), int | float) else float("inf"))
        return found[:limit]


def _error(rid: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.as_object(), "id": rid}


def _encode(answer: Any) -> bytes:
    return json.dumps(answer, separators=(",", ":"), allow_nan=False).encode()


def _single(answer: dict[str, Any]) -> tuple[int, bytes]:
    error = answer.get("error")
    status = 200 if error is None else _HTTP_STATUS.get(error["code"], 500)
    return status, _encode(answer)


class WorkerCollector:
    """A ``prometheus_client`` collector over the workers' scrapes (taken just before)."""

    def __init__(self) -> None:
        self.scrapes: list[tuple[WorkerEndpoint, str | None]] = []

    def collect(self) -> list[Metric]:
        """Every worker's families, merged by name, with a ``worker`` label."""
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily(
            "invsess_worker_up", "1 when the worker's figures were read", labels=["worker"]
        )
        for worker, text in self.scrapes:
            up.add_metric([str(worker.rank)], 0.0 if text is None else 1.0)
            if text is None:
                continue
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                rank = str(worker.rank)
                into.samples.extend(
                    Sample(s.name, {"worker": rank, **s.labels}, s.value, s.timestamp, s.exemplar)
                    for s in family.samples
                )
        return [*merged.values(), up]


async def serve_worker_rpc(
    workers: Sequence[WorkerEndpoint], bind: BindAddress | str = "127.0.0.1:0", *, token: str | None = None
) -> HttpService:
    """JSON-RPC 2.0 over every worker at ``http://bind/RPC`` (see the module docstring)."""
    client = WorkerClient(workers, token)
    methods = WorkerMethods(client)
    if isinstance(bind, str):
        bind = BindAddress.parse(bind)

    async def rpc(request: web.Request) -> web.StreamResponse:
        status, answer = await methods.handle(await request.read())
        if answer is None:
            return web.Response(status=status)
        return web.Response(status=status, body=answer, content_type="application/json")

    async def closing(app: web.Application) -> None:
        await client.close()

    app = web.Application(middlewares=[_auth(token)], client_max_size=MAX_BODY)
    app.router.add_post("/RPC", rpc)
    app.router.add_post("/", rpc)
    app.on_cleanup.append(closing)
    return await _start(app, bind, "/RPC", token)


async def serve_worker_metrics(
    workers: Sequence[WorkerEndpoint], bind: BindAddress | str = "127.0.0.1:0", *, token: str | None = None
) -> HttpService:
    """The Prometheus text format over every worker at ``http://bind/metrics``."""
    client = WorkerClient(workers, token)
    collector = WorkerCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if isinstance(bind, str):
        bind = BindAddress.parse(bind)

    async def metrics(request: web.Request) -> web.StreamResponse:
        texts = await asyncio.gather(*(client.scrape(w) for w in client.workers))
        collector.scrapes = list(zip(client.workers, texts, strict=True))
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def closing(app: web.Application) -> None:
        await client.close()

    app = web.Application(middlewares=[_auth(token)], client_max_size=MAX_BODY)
    app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(closing)
    return await _start(app, bind, "/metrics", token)


__all__ = [
    "WorkerClient",
    "WorkerCollector",
    "WorkerEndpoint",
    "WorkerMethods",
    "serve_worker_metrics",
    "serve_worker_rpc",
]
