"""What ``invsess call`` and ``invsess answer`` count and print: progress, summaries, statistics.

No I/O here: the commands feed the counters as calls move and print the lines these classes
make, so a test can check every line without a socket. Setup time is INVITE sent -> 2xx received
(the call CONFIRMED: our ACK goes out with it), in milliseconds, as SIPp reports response times.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence

import attrs

#: The percentiles of the call-setup time in a summary.
PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank (the value at or below which p % of them lie)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} x{n}" for key, n in sorted(counter.items()))


@attrs.define
class CallerStats:
    """``invsess call``: calls started, up, ended, how they failed, and how long setup took."""

    started_at: float
    started: int = 0
    up: int = 0  # confirmed and not yet ended
    succeeded: int = 0
    failures: Counter[str] = attrs.field(factory=Counter)
    #: The words behind each failure code (a transport error says what failed).
    causes: dict[str, str] = attrs.field(factory=dict)
    setup_ms: list[float] = attrs.field(factory=list)
    actions: Counter[str] = attrs.field(factory=Counter)
    _starts: deque[float] = attrs.field(factory=deque)

    @property
    def ended(self) -> int:
        """Calls over, whatever the outcome."""
        return self.succeeded + sum(self.failures.values())

    def call_started(self, now: float) -> None:
        """An INVITE went out."""
        self.started += 1
        self._starts.append(now)

    def call_up(self, setup: float) -> None:
        """A call was answered and confirmed ``setup`` seconds after its INVITE."""
        self.up += 1
        self.setup_ms.append(setup * 1000.0)

    def call_ended(self, outcome: int | str, *, was_up: bool, cause: str = "") -> None:
        """A call is over: 200 (held and hung up as asked) or what made it fail."""
        if was_up:
            self.up -= 1
        if outcome == 200:
            self.succeeded += 1
            return
        key = str(outcome)
        self.failures[key] += 1
        if cause:
            self.causes.setdefault(key, cause)

    def rate(self, now: float, window: float = 1.0) -> float:
        """Calls started per second over the last ``window`` seconds."""
        while self._starts and self._starts[0] < now - window:
            self._starts.popleft()
        return len(self._starts) / window

    def progress(self, now: float) -> str:
        """One line for a long run: where it stands now."""
        failed = sum(self.failures.values())
        detail = f" ({_counts(self.failures)})" if failed else ""
        return (
            f"[{now - self.started_at:7.1f}s] calls: {self.started} started, {self.up} up, "
            f"{self.ended} ended, {failed} failed{detail}; {self.rate(now):.1f} calls/s"
        )

    def summary(self, calls: int, elapsed: float) -> list[str]:
        """The final report: outcomes, why calls failed, setup-time percentiles."""
        failed = calls - self.succeeded
        detail = f" ({_counts(self.failures)})" if self.failures else ""
        lines = [f"{calls} calls: {self.succeeded} succeeded, {failed} failed{detail}"]
        lines += [f"  {code}: {text}" for code, text in sorted(self.causes.items())]
        if self.setup_ms:
            marks = ", ".join(f"p{p} {percentile(self.setup_ms, p):.1f}" for p in PERCENTILES)
            lines.append(
                f"setup time (INVITE -> 200) ms: {marks}; min {min(self.setup_ms):.1f}, "
                f"max {max(self.setup_ms):.1f} over {len(self.setup_ms)} calls"
            )
        if self.actions:
            lines.append(f"in-call requests: {_counts(self.actions)}")
        rate = f", {self.started / elapsed:.1f} calls/s started" if self.started > 1 and elapsed > 0 else ""
        lines.append(f"elapsed {elapsed:.2f} s{rate}")
        return lines


@attrs.define
class AnswererStats:
    """``invsess answer``: what came in, how it was answered, how it ended."""

    received: int = 0
    answered: Counter[str] = attrs.field(factory=Counter)  # final answers sent, by code
    cancelled: int = 0
    causes: Counter[str] = attrs.field(factory=Counter)  # why calls ended
    actions: Counter[str] = attrs.field(factory=Counter)
    up: int = 0
    most_up: int = 0

    @property
    def ended(self) -> int:
        """Calls over."""
        return sum(self.causes.values())

    def call_received(self) -> None:
        """An INVITE came."""
        self.received += 1

    def call_up(self) -> None:
        """A call was confirmed."""
        self.up += 1
        self.most_up = max(self.most_up, self.up)

    def call_ended(self, cause: int | None, *, was_up: bool, answered: int | None, cancelled: bool) -> None:
        """A call is over (``answered``: our final answer, if we sent one)."""
        if was_up:
            self.up -= 1
        if answered is not None:
            self.answered[str(answered)] += 1
        if cancelled:
            self.cancelled += 1
        self.causes[str(cause) if cause is not None else "none"] += 1

    @classmethod
    def merged(cls, parts: Iterable[AnswererStats]) -> AnswererStats:
        """The sum of several processes' statistics (``most_up``: the sum of their peaks, an
        upper bound of the peak of the sum)."""
        out = cls()
        for part in parts:
            out.received += part.received
            out.answered.update(part.answered)
            out.cancelled += part.cancelled
            out.causes.update(part.causes)
            out.actions.update(part.actions)
            out.up += part.up
            out.most_up += part.most_up
        return out

    def summary(
        self, endpoint_stats: Iterable[tuple[str, int]], memory: str, *, peak: str = "at most {} up at once"
    ) -> list[str]:
        """The statistics printed at exit."""
        causes = f" (cause {_counts(self.causes)})" if self.causes else ""
        answered = _counts(self.answered) or "none"
        lines = [
            f"calls ended: {self.ended}{causes}; received {self.received}, answered {answered}, "
            f"cancelled by the caller {self.cancelled}, {peak.format(self.most_up)}"
        ]
        if self.actions:
            lines.append(f"in-call requests: {_counts(self.actions)}")
        counters = ", ".join(f"{name} {n}" for name, n in sorted(endpoint_stats))
        if counters:
            lines.append(f"endpoint: {counters}")
        lines.append(f"memory: {memory}")
        return lines


@attrs.define
class AnswerWorkerReport:
    """What one worker of ``invsess answer --workers N`` reports at exit (pickled to the
    supervisor): its statistics and lines, its memory and CPU."""

    rank: int
    pid: int
    stats: AnswererStats
    endpoint: dict[str, int]
    max_used_size: int
    used_size: int
    leaked_blocks: int
    #: Its summary lines, then its exit lines (calls still up, limits, leak report).
    summary: list[str]
    extra: list[str]
    cpu_seconds: float = 0.0
    max_rss_kib: int = 0

    def lines(self) -> list[str]:
        """This worker's lines, each prefixed with who it is."""
        who = f"worker {self.rank} (pid {self.pid}): "
        out = [who + line for line in self.summary]
        out.append(f"{who}cpu {self.cpu_seconds:.2f} s, peak RSS {self.max_rss_kib / 1024:.1f} MiB")
        for line in self.extra:
            head, *rest = line.splitlines() or [""]
            out.append(who + head)
            out += [f"    {more}" for more in rest]
        return out

    @staticmethod
    def combined(reports: Sequence[AnswerWorkerReport]) -> list[str]:
        """The sum over the workers that reported, then the total of leaked blocks (the last
        line, as a single process's report ends)."""
        if not reports:
            return ["no worker reported"]
        stats = AnswererStats.merged(r.stats for r in reports)
        endpoint: Counter[str] = Counter()
        for r in reports:
            endpoint.update(r.endpoint)
        leaked = sum(r.leaked_blocks for r in reports)
        memory = (
            f"max_used_size {sum(r.max_used_size for r in reports)} bytes (sum of the workers' peaks), "
            f"used_size {sum(r.used_size for r in reports)}, {leaked} leaked blocks"
        )
        who = f"all {len(reports)} workers: "
        lines = stats.summary(
            endpoint.items(), memory, peak="at most {} up at once (sum of the workers' peaks)"
        )
        out = [who + line for line in lines]
        cpu = sum(r.cpu_seconds for r in reports)
        out.append(f"{who}cpu {cpu:.2f} s")
        out.append(f"{leaked} leaked blocks")
        return out


@attrs.define
class B2buaWorkerReport:
    """What one worker of ``invsess b2bua --workers N`` reports at exit."""

    rank: int
    pid: int
    started: int
    outcomes: dict[int, int]
    leaked_blocks: int
    leak_report: str
    cpu_seconds: float = 0.0
    max_rss_kib: int = 0

    def lines(self) -> list[str]:
        """This worker's lines, prefixed with who it is."""
        who = f"worker {self.rank} (pid {self.pid}): "
        head, *rest = self.leak_report.splitlines() or [""]
        return [
            f"{who}calls bridged: {self.started}; outcomes: {_outcomes(self.outcomes)}",
            f"{who}cpu {self.cpu_seconds:.2f} s, peak RSS {self.max_rss_kib / 1024:.1f} MiB",
            who + head,
            *(f"    {line}" for line in rest),
        ]

    @staticmethod
    def combined(reports: Sequence[B2buaWorkerReport]) -> list[str]:
        """The sums, then the total of leaked blocks (the last line)."""
        outcomes: Counter[int] = Counter()
        for r in reports:
            outcomes.update(r.outcomes)
        who = f"all {len(reports)} workers: "
        leaked = sum(r.leaked_blocks for r in reports)
        return [
            f"{who}calls bridged: {sum(r.started for r in reports)}; outcomes: {_outcomes(outcomes)}",
            f"{who}cpu {sum(r.cpu_seconds for r in reports):.2f} s",
            f"{leaked} leaked blocks",
        ]


def _outcomes(outcomes: dict[int, int]) -> str:
    return ", ".join(f"{code} x{n}" for code, n in sorted(outcomes.items())) or "none"


__all__ = [
    "PERCENTILES",
    "AnswerWorkerReport",
    "AnswererStats",
    "B2buaWorkerReport",
    "CallerStats",
    "percentile",
]
