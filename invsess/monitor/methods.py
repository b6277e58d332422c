"""The JSON-RPC methods: Kamailio's names and result shapes, and invsess's own.

Kamailio's (``kex`` and core), answered with the same keys and types so that the tools written
for Kamailio read invsess unchanged (tests compare them with a real Kamailio 5.6):

=========================  ==================================================================
``core.version``           ``"invsess 0.1.0 (x86_64/linux)"``
``core.uptime``            ``{now, up_since, uptime}``
``core.shmmem [b|k|m|g]``  ``{total, free, used, real_used, max_used, fragments}``
``pkg.stats [pid|rank|index N]``  one ``{entry, pid, rank, used, free, real_used, total_size,
                           total_frags, desc}`` per pool factory (endpoint)
``stats.get_statistics``   ``all``, ``group:``, ``name`` (or invsess's ``group:name``) ->
                           ``["group:name = value", ...]``
``stats.fetch``            the same -> ``{"group.name": "value"}`` (strings)
``stats.fetchn``           the same -> ``{"group.name": value}`` (numbers)
``system.listMethods``     the method names
``system.methodHelp NAME`` one line of help
=========================  ==================================================================

invsess's: ``invsess.leaks [limit]`` (live blocks by allocation site, with who holds
references), ``invsess.snapshot`` and ``invsess.diff [limit]`` (what grew since the snapshot, by
site), ``invsess.dialogs [limit]`` (live dialogs: state, age, references and their holders, the
session in them). Each method reads the state of the sans-IO core on the event loop's thread,
between two packets: nothing here needs a lock.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from invsess import __version__
from invsess.dialog import Dialog
from invsess.inv import InviteSession
from invsess.memory import LeakEntry, MemorySnapshot, PoolFactory, SiteDiff
from invsess.memory.report import Frame
from invsess.monitor.jsonrpc import SERVER_ERROR, Dispatcher, InvalidParamsError, RpcError
from invsess.monitor.target import MonitorTarget, distinct_factories, summed_values

#: ``core.shmmem``'s unit parameter -> right shift (Kamailio's: b, k, m, g, with an optional b).
_UNITS = {"b": 0, "k": 10, "m": 20, "g": 30}


def version_string() -> str:
    """What ``core.version`` answers (Kamailio: ``kamailio 5.6.3 (x86_64/linux)``)."""
    return f"invsess {__version__} ({platform.machine() or 'unknown'}/{sys.platform})"


class MonitorMethods:
    """The methods over ``targets``; :meth:`dispatcher` registers them all."""

    def __init__(self, targets: Sequence[MonitorTarget], *, started: float | None = None) -> None:
        if not targets:
            raise ValueError("nothing to monitor: give at least one target")
        self.targets = list(targets)
        #: Wall-clock start (``core.uptime``): the monitoring layer may read the clock, the core may not.
        self.started = time.time() if started is None else started
        self._snapshots: dict[int, tuple[MemorySnapshot, float]] = {}
        self._dispatcher: Dispatcher | None = None

    def dispatcher(self) -> Dispatcher:
        """A dispatcher with every method registered (made once)."""
        if self._dispatcher is None:
            d = Dispatcher()
            for name, fn in (
                ("core.version", self.core_version),
                ("core.uptime", self.core_uptime),
                ("core.shmmem", self.core_shmmem),
                ("pkg.stats", self.pkg_stats),
                ("stats.get_statistics", self.stats_get_statistics),
                ("stats.fetch", self.stats_fetch),
                ("stats.fetchn", self.stats_fetchn),
                ("system.listMethods", self.list_methods),
                ("system.methodHelp", self.method_help),
                ("invsess.leaks", self.leaks),
                ("invsess.snapshot", self.snapshot),
                ("invsess.diff", self.diff),
                ("invsess.dialogs", self.dialogs),
            ):
                d.add(name, fn)
            self._dispatcher = d
        return self._dispatcher

    # -- Kamailio's --------------------------------------------------------------------------

    def core_version(self) -> str:
        """Returns the version string of the server."""
        return version_string()

    def core_uptime(self) -> dict[str, Any]:
        """Returns uptime of the server."""
        now = time.time()
        return {
            "now": time.ctime(now),
            "up_since": time.ctime(self.started),
            "uptime": int(now - self.started),
        }

    def core_shmmem(self, unit: str = "b") -> dict[str, int]:
        """Returns the pool factories' memory info; optional unit b|k|m|g."""
        if (
            not isinstance(unit, str)
            or not unit
            or unit[0].lower() not in _UNITS
            or unit[1:].lower() not in ("", "b")
        ):
            raise InvalidParamsError("bad param, (use b|k|m|g)")
        shift = _UNITS[unit[0].lower()]
        shm = summed_values(self.targets).get("shmem", {})
        return {
            "total": shm.get("total_size", 0) >> shift,
            "free": shm.get("free_size", 0) >> shift,
            "used": shm.get("used_size", 0) >> shift,
            "real_used": shm.get("real_used_size", 0) >> shift,
            "max_used": shm.get("max_used_size", 0) >> shift,
            "fragments": shm.get("fragments", 0),
        }

    def pkg_stats(self, mode: str | None = None, value: int | None = None) -> list[dict[str, Any]]:
        """Returns the memory of each endpoint's pool factory; optional filter pid|rank|index N."""
        entries = []
        pid = os.getpid()
        for i, (factory, users) in enumerate(distinct_factories(self.targets)):
            s = factory.statistics()
            entries.append(
                {
                    "entry": i,
                    "pid": pid,
                    "rank": i,
                    "used": s.used_size,
                    "free": s.free_size,
                    "real_used": s.real_used_size,
                    "total_size": s.total_size,
                    "total_frags": s.fragments,
                    "desc": ", ".join(t.name for t in users),
                }
            )
        if mode is None:
            return entries
        if mode not in ("pid", "rank", "index"):
            raise InvalidParamsError("Invalid filter type (use pid|rank|index)")
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidParamsError("One more parameter expected: an integer")
        key = "entry" if mode == "index" else mode
        picked = [e for e in entries if e[key] == value]
        if not picked and mode != "rank":
            raise InvalidParamsError(f"No such {mode}")
        return picked

    def stats_get_statistics(self, *names: str) -> list[str]:
        """Returns statistics: all, a group (group:), or names, as "group:name = value"."""
        return [f"{g}:{n} = {v}" for g, n, v in self._select(names)]

    def stats_fetch(self, *names: str) -> dict[str, str]:
        """Returns statistics as {"group.name": "value"} (values as strings)."""
        return {f"{g}.{n}": str(v) for g, n, v in self._select(names)}

    def stats_fetchn(self, *names: str) -> dict[str, int]:
        """Returns statistics as {"group.name": value} (values as numbers)."""
        return {f"{g}.{n}": v for g, n, v in self._select(names)}

    def _select(self, names: Sequence[str]) -> list[tuple[str, str, int]]:
        if not names:
            raise InvalidParamsError("Please provide which stats to retrieve")
        values = summed_values(self.targets)
        picked: dict[tuple[str, str], int] = {}
        for spec in names:
            if not isinstance(spec, str):
                raise InvalidParamsError(f"statistic names are strings, not {spec!r}")
            if spec == "all":
                for group in sorted(values):
                    for name in sorted(values[group]):
                        picked.setdefault((group, name), values[group][name])
            elif spec.endswith(":"):
                group = spec[:-1]
                for name in sorted(values.get(group, {})):
                    picked.setdefault((group, name), values[group][name])
            elif ":" in spec:  # invsess's own form; Kamailio answers it with nothing
                group, _, name = spec.partition(":")
                if name in values.get(group, {}):
                    picked.setdefault((group, name), values[group][name])
            else:
                for group in sorted(values):
                    if spec in values[group]:
                        picked.setdefault((group, spec), values[group][spec])
        return [(g, n, v) for (g, n), v in picked.items()]

    def list_methods(self) -> list[str]:
        """Lists the methods of this server."""
        return self.dispatcher().names()

    def method_help(self, name: str) -> str:
        """Returns the help of a method."""
        if not isinstance(name, str):
            raise InvalidParamsError("Method Name Expected")
        method = self.dispatcher().method(name)
        if method is None:
            raise InvalidParamsError("command not found")
        return method.help

    # -- invsess's ---------------------------------------------------------------------------

    def leaks(self, limit: int = 20) -> list[dict[str, Any]]:
        """Live blocks grouped by allocation site, largest first, with who holds references."""
        _check_limit(limit)
        out = []
        for factory, users in distinct_factories(self.targets):
            report = factory.leak_report()
            entries = report.entries[:limit]
            pools = len(report.pools)
            head = f"{report.total_blocks} live blocks, {report.total_size} bytes, in {pools} live pools"
            out.append(
                {
                    "endpoint": ", ".join(t.name for t in users),
                    "blocks": report.total_blocks,
                    "bytes": report.total_size,
                    "pools": len(report.pools),
                    "sites": [_leak_entry(e) for e in entries],
                    "report": "\n".join([head, *(_leak_line(e) for e in entries)]),
                }
            )
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """Takes a snapshot of live blocks by site, for invsess.diff."""
        out = []
        for factory, users in distinct_factories(self.targets):
            snap = factory.snapshot()
            self._snapshots[id(factory)] = (snap, time.monotonic())
            out.append(
                {
                    "endpoint": ", ".join(t.name for t in users),
                    "sites": len(snap.sites),
                    "blocks": sum(s.count for s in snap.sites.values()),
                    "used_size": snap.statistics.used_size,
                }
            )
        return out

    def diff(self, limit: int = 20) -> list[dict[str, Any]]:
        """What grew (or shrank) by allocation site since invsess.snapshot."""
        _check_limit(limit)
        out = []
        for factory, users in distinct_factories(self.targets):
            taken = self._snapshots.get(id(factory))
            if taken is None:
                raise RpcError(SERVER_ERROR, "no snapshot to compare with: call invsess.snapshot first")
            old, when = taken
            now = factory.snapshot()
            diffs = list(now.compare_to(old))
            out.append(
                {
                    "endpoint": ", ".join(t.name for t in users),
                    "seconds": round(time.monotonic() - when, 3),
                    "used_size_diff": now.statistics.used_size - old.statistics.used_size,
                    "sites": [_site_diff(d) for d in diffs[:limit]],
                    "report": "\n".join(str(d) for d in diffs[:limit]),
                }
            )
        return out

    def dialogs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Live dialogs: state, age, references and who holds them, the session in them."""
        _check_limit(limit)
        found: list[tuple[float, dict[str, Any]]] = []
        for factory, users in distinct_factories(self.targets):
            now = users[0].clock()
            name = ", ".join(t.name for t in users)
            for dialog, session in _live_dialogs(factory):
                age = None if dialog.created is None else round(now - dialog.created, 3)
                found.append(
                    (
                        dialog.created if dialog.created is not None else float("inf"),
                        {
                            "endpoint": name,
                            "call_id": dialog.call_id,
                            "local_tag": dialog.local_tag,
                            "remote_tag": dialog.remote_tag,
                            "role": dialog.role.name,
                            "state": dialog.state.name,
                            "age": age,
                            "references": dialog.ref_owners,
                            "transactions": dialog.tsx_count,
                            "session": None
                            if session is None
                            else {"state": session.state.name, "references": session.ref_owners},
                            "pool": dialog.pool.name,
                            "pool_used": dialog.pool.used,
                        },
                    )
                )
        found.sort(key=lambda item: item[0])
        return [entry for _, entry in found[:limit]]


def _check_limit(limit: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidParamsError(f"limit must be a positive integer, not {limit!r}")


def _frame(frame: Frame) -> dict[str, Any]:
    return {"site": str(frame), "file": frame.filename, "line": frame.lineno, "function": frame.function}


def _leak_entry(entry: LeakEntry) -> dict[str, Any]:
    return {
        **_frame(entry.site),
        "type": entry.type_name,
        "count": entry.count,
        "bytes": entry.size,
        "pools": len(entry.pools),
        "owners": dict(entry.owners),
    }


def _leak_line(entry: LeakEntry) -> str:
    owners = ""
    if entry.owners:
        owners = "; references held by " + ", ".join(f"{o} x{n}" for o, n in entry.owners.items())
    return f"  {entry.site}: {entry.count} x {entry.type_name}, {entry.size} bytes{owners}"


def _site_diff(diff: SiteDiff) -> dict[str, Any]:
    return {
        **_frame(diff.site),
        "type": diff.type_name,
        "size": diff.size,
        "size_diff": diff.size_diff,
        "count": diff.count,
        "count_diff": diff.count_diff,
    }


def _live_dialogs(factory: PoolFactory) -> list[tuple[Dialog, InviteSession | None]]:
    """Every live dialog of ``factory`` (the first block of its pool: see Dialog) and the session
    allocated from the same pool, if any — reached through memory, not the session layer's
    tables, so that a dialog nobody routes to any more (leaked) is listed too."""
    out = []
    for pool in factory.pools:
        blocks = pool.blocks()
        if not blocks or not isinstance(blocks[0], Dialog):
            continue
        session = next((b for b in blocks if isinstance(b, InviteSession)), None)
        out.append((blocks[0], session))
    return out


__all__ = ["MonitorMethods", "version_string"]
