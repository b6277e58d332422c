"""The limits' statistics in one place: current values, configured maxima, rejections by reason.

The endpoint (transactions, calls, per-source rates) and the asyncio transports (connections,
buffered bytes, TLS handshakes, read deadlines) report into one :class:`LimitStats`, reachable
as ``endpoint.limit_stats``. Its flat form uses Kamailio's ``group:name`` shape so monitoring reads
it like ``stats.get_statistics``:

* ``limits:<gauge>``            the current value (``transactions``, ``calls``, ``connections``, ...)
* ``limits:<gauge>_max``        the configured limit (absent when unlimited)
* ``limits:rejected_<reason>``  how many times that limit refused something (:class:`Rejection`)
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable

import attrs

from invsess.counters import Family


class Rejection(enum.StrEnum):
    """Why something was refused; each has a ``limits:rejected_<value>`` counter."""

    TRANSACTIONS = "transactions"  # 503: concurrent server transactions at max_transactions
    CALLS = "calls"  # 503: live calls at max_calls
    RATE = "rate"  # ignored: the source is over its rate (RateLimit)
    SHED = "shed"  # dropped unparsed: the UDP reader was behind and this was new work
    MEMORY = "memory"  # dropped: the pool factory's total limit
    CONNECTIONS = "connections"  # a connection closed at accept: max_connections
    CONNECTIONS_PER_IP = "connections_per_ip"  # ... max_connections_per_ip
    HANDSHAKES = "handshakes"  # ... too many TLS handshakes under way
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # a TLS handshake not done within handshake_timeout
    READ_TIMEOUT = "read_timeout"  # a message not complete read_timeout after its first byte
    IDLE_TIMEOUT = "idle_timeout"  # a connection silent for idle_timeout (closed)
    BUFFER = "buffer"  # unfinished messages over max_buffered in total (largest closed)
    WRITE_BUFFER = "write_buffer"  # a peer not reading what we send (over max_write_buffer)
    OVERSIZE = "oversize"  # 513: a streamed message over max_message_size (then closed)
    FRAMING = "framing"  # a stream that cannot be framed (closed)
    ACCEPT_PAUSED = "accept_paused"  # accept paused: out of file descriptors


@attrs.define
class LimitStats:
    """Counters and gauges of every limit; see the module docstring for the names."""

    rejected: Counter[Rejection] = attrs.field(factory=Counter)
    #: Current values, read when asked: name -> a function returning the value.
    gauges: dict[str, Callable[[], int]] = attrs.field(factory=dict)
    #: Configured limits by gauge name (only those that are bounded).
    maxima: dict[str, int] = attrs.field(factory=dict)

    def reject(self, reason: Rejection, count: int = 1) -> None:
        """Count ``count`` refusals for ``reason``."""
        self.rejected[reason] += count

    def gauge(self, name: str, read: Callable[[], int], maximum: int | None = None) -> None:
        """Register a current value (and its limit, when bounded)."""
        self.gauges[name] = read
        if maximum is None:
            self.maxima.pop(name, None)
        else:
            self.maxima[name] = maximum

    def current(self) -> dict[str, int]:
        """Every gauge's value now."""
        return {name: read() for name, read in self.gauges.items()}

    def statistics(self) -> dict[str, int]:
        """The flat ``limits:*`` form: gauges, maxima, and every rejection counter (zeros too)."""
        out: dict[str, int] = {}
        for name, value in self.current().items():
            out[f"limits:{name}"] = value
            if name in self.maxima:
                out[f"limits:{name}_max"] = self.maxima[name]
        for reason in Rejection:
            out[f"limits:rejected_{reason.value}"] = self.rejected[reason]
        return out


class LimitsGroup:
    """:class:`LimitStats` as the ``limits`` statistics group (``endpoint.counters``): the same
    names without the group, and three Prometheus families — rejections by limit, the current
    values, the configured maxima."""

    name = "limits"

    def __init__(self, stats: LimitStats) -> None:
        self._stats = stats

    @property
    def source(self) -> object:
        """The limits' own statistics."""
        return self._stats

    def values(self) -> dict[str, int]:
        """``limits:*`` without the group."""
        return {key.partition(":")[2]: value for key, value in self._stats.statistics().items()}

    def families(self) -> list[Family]:
        """``invsess_limit_rejections`` (counter), ``invsess_limit_current``, ``invsess_limit_max``."""
        stats = self._stats
        current = stats.current()
        return [
            Family(
                "invsess_limit_rejections",
                "counter",
                "Requests, connections or datagrams refused by a limit",
                ("limit",),
                tuple(((reason.value,), float(stats.rejected[reason])) for reason in Rejection),
            ),
            Family(
                "invsess_limit_current",
                "gauge",
                "What each limit counts now",
                ("limit",),
                tuple(((name,), float(value)) for name, value in current.items()),
            ),
            Family(
                "invsess_limit_max",
                "gauge",
                "The configured limits (bounded ones only)",
                ("limit",),
                tuple(((name,), float(value)) for name, value in stats.maxima.items()),
            ),
        ]


__all__ = ["LimitStats", "LimitsGroup", "Rejection"]
