"""What a monitoring server watches: one or more endpoints (with their session layers) of this
process, and how their figures add up.

A user agent is one target; a B2BUA or the soak bench has two. Kamailio's ``pkg.stats`` has one
entry per process; invsess's has one per pool factory (an endpoint's memory), and the
``stats.*`` figures are the sums over the targets — with a factory shared by two endpoints
counted once, the way Kamailio's shared memory is one figure for all its processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from invsess.counters import Group
from invsess.endpoint import Endpoint
from invsess.memory import PoolFactory


@attrs.frozen
class MonitorTarget:
    """One endpoint to watch: a ``name`` for the figures (``desc`` in ``pkg.stats``, the
    ``endpoint`` label in Prometheus), the endpoint (its counters, and its memory, where the
    dialogs and sessions are found: a session layer registers its counters with its endpoint),
    and the clock its core is driven with (for ages: ``loop.time`` under asyncio)."""

    name: str
    endpoint: Endpoint
    clock: Callable[[], float] = time.monotonic

    @property
    def factory(self) -> PoolFactory:
        """The pool factory of the endpoint."""
        return self.endpoint.factory


def distinct_factories(targets: Sequence[MonitorTarget]) -> list[tuple[PoolFactory, list[MonitorTarget]]]:
    """Each pool factory once, with the targets that use it, in target order."""
    out: dict[int, tuple[PoolFactory, list[MonitorTarget]]] = {}
    for target in targets:
        out.setdefault(id(target.factory), (target.factory, []))[1].append(target)
    return list(out.values())


def groups(targets: Sequence[MonitorTarget]) -> Iterator[tuple[MonitorTarget, Group]]:
    """Every statistics group of every target, a group whose source was already seen skipped."""
    seen: set[int] = set()
    for target in targets:
        for group in target.endpoint.counters.groups():
            key = id(group.source)
            if key in seen:
                continue
            seen.add(key)
            yield target, group


def summed_values(targets: Sequence[MonitorTarget]) -> dict[str, dict[str, int]]:
    """``{group: {name: value}}`` summed over the targets (each source once)."""
    out: dict[str, dict[str, int]] = {}
    for _, group in groups(targets):
        acc = out.setdefault(group.name, {})
        for name, value in group.values().items():
            acc[name] = acc.get(name, 0) + value
    # With several factories, shmem:max_used_size is the sum of their high-water marks: an upper
    # bound of the high-water mark of the sum (docs/monitoring.md).
    return out


__all__ = ["MonitorTarget", "distinct_factories", "groups", "summed_values"]
