"""Statistics, leak reports and snapshots, with Kamailio's names.

The factory-level figures are Kamailio's ``shmem:*`` statistics; the per-pool rows have the
shape of Kamailio's ``pkg.stats`` entries; a leak report groups live blocks by allocation site
like Kamailio's ``mem_summary``; snapshots diff like :meth:`tracemalloc.Snapshot.compare_to`.
Everything here is a frozen value: computing one never changes the pools.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

import attrs

from invsess.memory.report import DanglingReference, Frame


@attrs.frozen
class MemoryStatistics:
    """Factory-wide figures, named as Kamailio names its ``shmem`` statistics.

    ``used_size`` is the sum of live block sizes; ``real_used_size`` what the pools reserved
    (their chunks, with the unused tails); ``free_size`` is ``total_size - real_used_size``;
    ``fragments`` the number of chunks held by live pools.
    """

    total_size: int
    used_size: int
    real_used_size: int
    max_used_size: int
    free_size: int
    fragments: int

    def as_dict(self) -> dict[str, int]:
        """``{"total_size": ..., ...}``."""
        return attrs.asdict(self)

    def kamailio_statistics(self, group: str = "shmem") -> list[str]:
        """Lines as Kamailio's ``stats.get_statistics`` prints them: ``shmem:used_size = N``."""
        return [f"{group}:{name} = {value}" for name, value in sorted(self.as_dict().items())]

    def core_shmmem(self) -> dict[str, int]:
        """The shape of Kamailio's ``core.shmmem`` RPC result."""
        return {
            "total": self.total_size,
            "free": self.free_size,
            "used": self.used_size,
            "real_used": self.real_used_size,
            "max_used": self.max_used_size,
            "fragments": self.fragments,
        }


@attrs.frozen
class PoolStatistics:
    """One pool, shaped like an entry of Kamailio's ``pkg.stats``."""

    entry: int
    pid: int
    rank: int
    used: int
    free: int
    real_used: int
    total_size: int
    total_frags: int
    desc: str

    def as_dict(self) -> dict[str, int | str]:
        """The ``pkg.stats`` entry as a dict."""
        return attrs.asdict(self)


@attrs.frozen
class SiteStatistics:
    """Live blocks allocated at one site, of one type."""

    site: Frame
    type_name: str
    count: int
    size: int


@attrs.frozen
class LeakEntry:
    """One row of a leak report: a site, its live blocks, and who still holds references."""

    site: Frame
    type_name: str
    count: int
    size: int
    pools: tuple[str, ...]
    owners: Mapping[str, int]


@attrs.frozen
class LeakReport:
    """Live blocks grouped by allocation site, largest first, and the warnings of releases
    that left blocks referenced (``dangling``, recorded without MALLOC_DEBUG, which raises).

    Falsy when nothing leaked and nothing dangled, so ``assert not factory.leak_report()``
    reads naturally.
    """

    entries: tuple[LeakEntry, ...]
    pools: tuple[str, ...]
    dangling: tuple[DanglingReference, ...] = ()

    @property
    def total_blocks(self) -> int:
        """Number of leaked blocks."""
        return sum(e.count for e in self.entries)

    @property
    def total_size(self) -> int:
        """Bytes held by leaked blocks."""
        return sum(e.size for e in self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries) or bool(self.pools) or bool(self.dangling)

    def format(self) -> str:
        """A human-readable summary, one line per site, then one warning per dangling reference."""
        if not self.entries and not self.pools:
            lines = ["0 leaked blocks"]
        else:
            lines = [
                f"{self.total_blocks} leaked blocks, {self.total_size} bytes, "
                f"in {len(self.pools)} live pools: {', '.join(self.pools)}"
            ]
        for e in self.entries:
            owners = ""
            if e.owners:
                owners = "; references held by " + ", ".join(f"{o} x{n}" for o, n in e.owners.items())
            lines.append(f"  {e.site}: {e.count} x {e.type_name}, {e.size} bytes{owners}")
        lines += [f"warning: {d.summary()}" for d in self.dangling]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@attrs.frozen
class SiteDiff:
    """Growth at one site between two snapshots (``tracemalloc.StatisticDiff``'s model)."""

    site: Frame
    type_name: str
    size: int
    size_diff: int
    count: int
    count_diff: int

    def __str__(self) -> str:
        return (
            f"{self.site}: {self.type_name} size={self.size} ({self.size_diff:+d}) "
            f"count={self.count} ({self.count_diff:+d})"
        )


@attrs.frozen
class MemorySnapshot:
    """Live blocks per (site, type) at one moment, and the factory statistics then."""

    sites: Mapping[tuple[Frame, str], SiteStatistics]
    statistics: MemoryStatistics

    def compare_to(self, old: MemorySnapshot) -> SnapshotDiff:
        """What changed since ``old``, largest absolute size change first; unchanged sites
        omitted. The result is a sequence of :class:`SiteDiff` with a :meth:`~SnapshotDiff.format`."""
        out: list[SiteDiff] = []
        for key in self.sites.keys() | old.sites.keys():
            new_s = self.sites.get(key)
            old_s = old.sites.get(key)
            size = new_s.size if new_s else 0
            count = new_s.count if new_s else 0
            size_diff = size - (old_s.size if old_s else 0)
            count_diff = count - (old_s.count if old_s else 0)
            if size_diff or count_diff:
                out.append(SiteDiff(key[0], key[1], size, size_diff, count, count_diff))
        out.sort(key=lambda d: (-abs(d.size_diff), str(d.site), d.type_name))
        return SnapshotDiff(tuple(out), old.statistics, self.statistics)


@attrs.frozen
class SnapshotDiff(Sequence[SiteDiff]):
    """What grew or shrank between two snapshots, per allocation site, largest change first.

    A sequence of :class:`SiteDiff` (index it, iterate it, ``len()`` it); falsy when nothing
    changed; :meth:`format` prints it the way a leak report prints.
    """

    diffs: tuple[SiteDiff, ...]
    before: MemoryStatistics
    after: MemoryStatistics

    @overload
    def __getitem__(self, index: int) -> SiteDiff: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[SiteDiff, ...]: ...
    def __getitem__(self, index: int | slice) -> SiteDiff | tuple[SiteDiff, ...]:
        return self.diffs[index]

    def __len__(self) -> int:
        return len(self.diffs)

    def __iter__(self) -> Iterator[SiteDiff]:
        return iter(self.diffs)

    def __bool__(self) -> bool:
        return bool(self.diffs)

    def format(self, limit: int | None = None) -> str:
        """A summary line (``used_size`` before and after), then one line per site (the first
        ``limit`` of them when given)."""
        delta = self.after.used_size - self.before.used_size
        blocks = sum(d.count_diff for d in self.diffs)
        lines = [
            f"used_size {self.before.used_size} -> {self.after.used_size} ({delta:+d} bytes, "
            f"{blocks:+d} blocks) at {len(self.diffs)} sites"
        ]
        shown = self.diffs if limit is None else self.diffs[:limit]
        lines += [f"  {d}" for d in shown]
        if len(shown) < len(self.diffs):
            lines.append(f"  ... {len(self.diffs) - len(shown)} more sites")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def group_sites(rows: Iterable[tuple[Frame, str, int]]) -> dict[tuple[Frame, str], SiteStatistics]:
    """Sum ``(site, type_name, size)`` rows into per-site statistics."""
    counts: dict[tuple[Frame, str], list[int]] = {}
    for site, type_name, size in rows:
        acc = counts.setdefault((site, type_name), [0, 0])
        acc[0] += 1
        acc[1] += size
    return {key: SiteStatistics(key[0], key[1], c, s) for key, (c, s) in counts.items()}
