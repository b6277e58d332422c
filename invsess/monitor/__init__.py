"""Watching a running process: Kamailio-compatible JSON-RPC, Prometheus, ``invsess stats``.

The figures are kept by the core as things happen (:mod:`invsess.counters`); this package serves
them. :class:`MonitorTarget` names what is watched; :class:`MonitorMethods` are the JSON-RPC
methods (Kamailio's names and shapes, and invsess's own); :func:`serve_rpc` and
:func:`serve_metrics` put them on HTTP (``UserAgent.serve_rpc`` and ``--rpc``/``--metrics`` on the
command line do it for you). The HTTP side needs the ``monitor`` extra
(``pip install 'invsess[monitor]'``: aiohttp, prometheus_client, rich); everything else here is
the standard library. See docs/monitoring.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from invsess.monitor.bind import BindAddress
from invsess.monitor.jsonrpc import Dispatcher, InvalidParamsError, RpcError
from invsess.monitor.methods import MonitorMethods, version_string
from invsess.monitor.target import MonitorTarget

if TYPE_CHECKING:
    from invsess.monitor.server import HttpService

#: What to install when an optional module is missing.
EXTRA_HINT = "pip install 'invsess[monitor]'"


def require(module: str) -> Any:
    """Import ``module`` of the monitor extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this needs the monitor extra ({EXTRA_HINT}): {exc}") from exc


async def serve_rpc(
    targets: Sequence[MonitorTarget] | MonitorMethods,
    bind: BindAddress | str = "127.0.0.1:0",
    *,
    token: str | None = None,
) -> HttpService:
    """JSON-RPC 2.0 over ``targets`` at ``http://bind/RPC`` (see :mod:`invsess.monitor.server`)."""
    server = require("invsess.monitor.server")
    service: HttpService = await server.serve_rpc(targets, bind, token=token)
    return service


async def serve_metrics(
    targets: Sequence[MonitorTarget],
    bind: BindAddress | str = "127.0.0.1:0",
    *,
    token: str | None = None,
) -> HttpService:
    """The Prometheus text format over ``targets`` at ``http://bind/metrics``."""
    server = require("invsess.monitor.server")
    service: HttpService = await server.serve_metrics(targets, bind, token=token)
    return service


__all__ = [
    "EXTRA_HINT",
    "BindAddress",
    "Dispatcher",
    "InvalidParamsError",
    "MonitorMethods",
    "MonitorTarget",
    "RpcError",
    "require",
    "serve_metrics",
    "serve_rpc",
    "version_string",
]
