"""The HTTP side: JSON-RPC 2.0 at ``/RPC`` and the Prometheus text format at ``/metrics``.

aiohttp serves both, on the event loop that drives the endpoints: a request is answered between
two packets, reading the sans-IO core directly, with no thread and no lock (the standard
library's ``http.server`` would have needed a thread, and every read of the core to hop back to
the loop). Off unless asked for; loopback unless told otherwise; with a token, every request
must carry ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from invsess.logs import get_logger
from invsess.monitor.bind import BindAddress
from invsess.monitor.methods import MonitorMethods
from invsess.monitor.prometheus import Exposition
from invsess.monitor.target import MonitorTarget

log = get_logger("invsess.monitor")

#: The largest request body read (a JSON-RPC request is a few hundred bytes; a batch a few KB).
MAX_BODY = 64 * 1024


class HttpService:
    """One listening HTTP server; :meth:`close` stops it."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite, address: tuple[str, int], path: str) -> None:
        self._runner = runner
        self._site = site
        #: The bound (host, port): the port is the real one when 0 was asked for.
        self.address = address
        self.path = path

    @property
    def url(self) -> str:
        """``http://HOST:PORT/PATH``."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{self.path}"

    async def close(self) -> None:
        """Stop listening and end the open connections."""
        await self._runner.cleanup()


def _auth(token: str | None) -> Middleware:
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.Response(
                    status=401,
                    text="401: a bearer token is required\n",
                    headers={"WWW-Authenticate": 'Bearer realm="invsess"'},
                )
        return await handler(request)

    return check


async def _start(app: web.Application, bind: BindAddress, path: str, token: str | None) -> HttpService:
    if not bind.loopback and token is None:
        log.warning("monitoring served beyond loopback without a token", host=bind.host, port=bind.port)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bind.host, bind.port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses  # the bound sockets: the real port when 0 was asked for
    port = int(addresses[0][1]) if addresses else bind.port
    log.info("monitoring", url=f"http://{bind.host}:{port}{path}")
    return HttpService(runner, site, (bind.host, port), path)


async def serve_rpc(
    targets: Sequence[MonitorTarget] | MonitorMethods,
    bind: BindAddress | str = "127.0.0.1:0",
    *,
    token: str | None = None,
) -> HttpService:
    """Serve the JSON-RPC methods over ``targets`` at ``http://bind/RPC`` (POST; ``/`` too)."""
    methods = targets if isinstance(targets, MonitorMethods) else MonitorMethods(targets)
    dispatcher = methods.dispatcher()
    if isinstance(bind, str):
        bind = BindAddress.parse(bind)

    async def rpc(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status, answer = dispatcher.handle(body)
        if answer is None:
            return web.Response(status=status)
        return web.Response(status=status, body=answer, content_type="application/json")

    app = web.Application(middlewares=[_auth(token)], client_max_size=MAX_BODY)
    app.router.add_post("/RPC", rpc)
    app.router.add_post("/", rpc)
    return await _start(app, bind, "/RPC", token)


async def serve_metrics(
    targets: Sequence[MonitorTarget],
    bind: BindAddress | str = "127.0.0.1:0",
    *,
    token: str | None = None,
) -> HttpService:
    """Serve the Prometheus text format over ``targets`` at ``http://bind/metrics`` (GET)."""
    exposition = Exposition(targets)
    if isinstance(bind, str):
        bind = BindAddress.parse(bind)

    async def metrics(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=exposition.render())
        response.headers["Content-Type"] = exposition.content_type
        return response

    app = web.Application(middlewares=[_auth(token)], client_max_size=MAX_BODY)
    app.router.add_get("/metrics", metrics)
    return await _start(app, bind, "/metrics", token)


__all__ = ["MAX_BODY", "BindAddress", "HttpService", "serve_metrics", "serve_rpc"]
