"""What ``invsess stats`` shows: the statistics and top allocation sites of a running process,
as ``rich`` tables, with rates computed between two readings (``--watch`` refreshes in place).

It reads with the methods Kamailio has too (``core.version``, ``core.uptime``, ``stats.fetchn``,
``pkg.stats``) plus ``invsess.leaks`` when the server has it, so it watches a Kamailio as well
(without the allocation sites).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import attrs
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from invsess.monitor.client import RpcCallError, RpcClient

#: Groups with a table of their own; the others are listed (their non-zero values) together.
_OWN_TABLES = frozenset({"shmem", "inv", "dialog", "tm", "core"})


@attrs.frozen
class Reading:
    """One round of calls: when (monotonic), and what came back (``sites`` None when the server
    has no ``invsess.leaks``)."""

    at: float
    version: str
    uptime: int
    stats: dict[str, int]
    pkg: list[dict[str, Any]]
    sites: list[dict[str, Any]] | None
    live: tuple[int, int] | None  # (blocks, bytes) of the live memory, with the sites

    def get(self, name: str) -> int:
        """A statistic by its ``group.name`` (0 when absent)."""
        return self.stats.get(name, 0)

    def group(self, group: str) -> dict[str, int]:
        """The statistics of one group, by name."""
        prefix = f"{group}."
        return {k[len(prefix) :]: v for k, v in self.stats.items() if k.startswith(prefix)}


def read(client: RpcClient, *, top: int = 10) -> Reading:
    """Call the server once for everything the screen shows."""
    version = str(client.call("core.version")).strip()
    uptime = client.call("core.uptime")
    stats = client.call("stats.fetchn", "all")
    pkg = client.call("pkg.stats")
    sites: list[dict[str, Any]] | None = None
    live = None
    try:
        leaks = client.call("invsess.leaks", top)
    except RpcCallError as error:
        if not error.method_missing:
            raise
    else:
        sites = [s for entry in leaks for s in entry["sites"]]
        sites.sort(key=lambda s: -int(s["bytes"]))
        sites = sites[:top]
        live = (sum(int(e["blocks"]) for e in leaks), sum(int(e["bytes"]) for e in leaks))
    return Reading(
        at=time.monotonic(),
        version=version,
        uptime=int(uptime.get("uptime", 0)) if isinstance(uptime, dict) else 0,
        stats={str(k): int(v) for k, v in (stats or {}).items()},
        pkg=list(pkg or []),
        sites=sites,
        live=live,
    )


def _duration(seconds: int) -> str:
    minutes, secs = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _delta(now: int, before: int | None) -> str:
    if before is None or now == before:
        return ""
    return f"{now - before:+d}"


def _rate(now: int, before: int | None, seconds: float) -> str:
    if before is None or seconds <= 0:
        return ""
    return f"{(now - before) / seconds:.1f}/s"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False, pad_edge=False, box=None)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    return table


def render(url: str, now: Reading, before: Reading | None = None, *, interval: float | None = None) -> Group:
    """The screen: a header line, then memory, calls, messages, the other groups, the sites."""
    seconds = now.at - before.at if before is not None else 0.0

    def prev(name: str) -> int | None:
        return before.get(name) if before is not None else None

    refresh = f" - every {interval:g} s" if interval else ""
    parts: list[RenderableType] = [
        Text(f"{now.version} - {url} - up {_duration(now.uptime)}{refresh}", style="bold"),
    ]

    memory = _table("memory (shmem)", "", "bytes", "change")
    for name in ("used_size", "real_used_size", "max_used_size", "free_size", "total_size", "fragments"):
        key = f"shmem.{name}"
        memory.add_row(name, f"{now.get(key):,}", _delta(now.get(key), prev(key)))
    pkg = _table("pkg.stats", "entry", "used", "real_used", "free", "frags", "desc")
    for row in now.pkg:
        pkg.add_row(
            str(row.get("entry")),
            f"{row.get('used', 0):,}",
            f"{row.get('real_used', 0):,}",
            f"{row.get('free', 0):,}",
            str(row.get("total_frags")),
            str(row.get("desc", ""))[:40],
        )
    parts += [memory, pkg]

    calls = _table("sessions, dialogs, transactions", "", "now", "change")
    for group in ("inv", "dialog", "tm"):
        for name, value in sorted(now.group(group).items()):
            key = f"{group}.{name}"
            if value or name in ("sessions_confirmed", "active_dialogs", "current"):
                calls.add_row(f"{group}:{name}", f"{value:,}", _delta(value, prev(key)))
    if calls.row_count:
        parts.append(calls)

    messages = _table("messages (core)", "", "total", "rate")
    for name, value in sorted(now.group("core").items()):
        if value and (name.count("_") <= 2 or name.startswith(("snd_requests_", "rcv_requests_"))):
            messages.add_row(f"core:{name}", f"{value:,}", _rate(value, prev(f"core.{name}"), seconds))
    if messages.row_count:
        parts.append(messages)

    others = _table("other statistics (non-zero)", "", "value", "change")
    for key in sorted(now.stats):
        group = key.partition(".")[0]
        value = now.stats[key]
        if group not in _OWN_TABLES and value:
            others.add_row(key.replace(".", ":", 1), f"{value:,}", _delta(value, prev(key)))
    if others.row_count:
        parts.append(others)

    if now.sites is not None:
        blocks, size = now.live or (0, 0)
        sites = _table(
            f"top allocation sites ({blocks:,} live blocks, {size:,} bytes)",
            "site",
            "type",
            "count",
            "bytes",
            "change",
        )
        earlier = {(s["site"], s["type"]): int(s["count"]) for s in (before.sites or [])} if before else {}
        for site in now.sites:
            count = int(site["count"])
            was = earlier.get((site["site"], site["type"])) if before is not None else None
            sites.add_row(
                str(site["site"]),
                str(site["type"]),
                f"{count:,}",
                f"{int(site['bytes']):,}",
                _delta(count, was),
            )
        parts.append(sites)
    return Group(*_spaced(parts))


def _spaced(parts: Iterable[RenderableType]) -> list[RenderableType]:
    out: list[RenderableType] = []
    for part in parts:
        if out:
            out.append(Text(""))
        out.append(part)
    return out


__all__ = ["Reading", "read", "render"]
