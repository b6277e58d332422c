"""The Prometheus exposition of the same figures, through ``prometheus_client``.

Every statistics group of every target (:mod:`invsess.counters`) gives its metric families; they
are merged under one name each with an ``endpoint`` label, so one scrape of a B2BUA shows both
legs. Names follow Prometheus' conventions: ``invsess_`` first, base units (``_bytes``,
``_seconds``), ``_total`` on counters (added by the client library). The process collector adds
``process_resident_memory_bytes`` and friends: the Python heap's view beside the pools' own.

The collector reads the sans-IO core when scraped, so it must run on the thread that drives the
core (the event loop's, which is where the aiohttp server serves the scrape).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from invsess import __version__
from invsess.counters import Family
from invsess.monitor.target import MonitorTarget, groups


class InvsessCollector:
    """A ``prometheus_client`` collector over monitor targets."""

    def __init__(self, targets: Sequence[MonitorTarget]) -> None:
        self.targets = list(targets)

    def collect(self) -> Iterator[Metric]:
        """Every family of every group, merged by name, labelled by endpoint."""
        yield InfoMetricFamily("invsess_build", "invsess version", value={"version": __version__})
        merged: dict[str, tuple[Family, list[tuple[tuple[str, ...], float]]]] = {}
        for target, group in groups(self.targets):
            for family in group.families():
                entry = merged.get(family.name)
                if entry is None:
                    entry = merged[family.name] = (family, [])
                elif entry[0].labels != family.labels or entry[0].kind != family.kind:
                    raise ValueError(f"metric {family.name} declared twice with different shapes")
                entry[1].extend(((target.name, *values), value) for values, value in family.samples)
        for family, samples in merged.values():
            labels = ["endpoint", *family.labels]
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "counter":
                metric = CounterMetricFamily(family.name, family.documentation, labels=labels)
            else:
                metric = GaugeMetricFamily(family.name, family.documentation, labels=labels)
            for values, value in samples:
                metric.add_metric(list(values), value)
            yield metric


class Exposition:
    """A registry with the invsess collector and the process collector; :meth:`render` is the
    body of a scrape."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, targets: Sequence[MonitorTarget]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(InvsessCollector(targets))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The text format (version 0.0.4) of everything now."""
        return generate_latest(self.registry)


__all__ = ["Exposition", "InvsessCollector"]
