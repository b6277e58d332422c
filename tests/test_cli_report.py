"""The counters and lines of ``invsess call`` and ``invsess answer``, without sockets."""

from __future__ import annotations

import pytest

from invsess.cli_report import AnswererStats, CallerStats, percentile


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_caller_progress_and_summary() -> None:
    stats = CallerStats(started_at=100.0)
    for t in (100.0, 100.5, 101.2):
        stats.call_started(t)
    stats.call_up(0.010)
    stats.call_up(0.030)
    assert stats.progress(101.5) == "[    1.5s] calls: 3 started, 2 up, 0 ended, 0 failed; 2.0 calls/s"
    stats.call_ended(200, was_up=True)
    stats.call_ended(408, was_up=True, cause="session timer expired")
    stats.call_ended(503, was_up=False, cause="transport error: refused")
    stats.actions["re-INVITE done"] += 2
    assert stats.progress(103.0) == (
        "[    3.0s] calls: 3 started, 0 up, 3 ended, 2 failed (408 x1, 503 x1); 0.0 calls/s"
    )
    assert stats.summary(3, 3.0) == [
        "3 calls: 1 succeeded, 2 failed (408 x1, 503 x1)",
        "  408: session timer expired",
        "  503: transport error: refused",
        "setup time (INVITE -> 200) ms: p50 10.0, p95 30.0, p99 30.0; min 10.0, max 30.0 over 2 calls",
        "in-call requests: re-INVITE done x2",
        "elapsed 3.00 s, 1.0 calls/s started",
    ]


def test_a_caller_summary_without_any_answered_call() -> None:
    stats = CallerStats(started_at=0.0)
    stats.call_started(0.0)
    stats.call_ended("timeout", was_up=False, cause="not answered within 2 s (cancelled)")
    assert stats.summary(1, 2.0) == [
        "1 calls: 0 succeeded, 1 failed (timeout x1)",
        "  timeout: not answered within 2 s (cancelled)",
        "elapsed 2.00 s",
    ]


def test_answerer_statistics() -> None:
    stats = AnswererStats()
    for _ in range(3):
        stats.call_received()
    stats.call_up()
    stats.call_up()
    stats.call_ended(200, was_up=True, answered=200, cancelled=False)
    stats.call_ended(200, was_up=True, answered=200, cancelled=False)
    stats.call_ended(487, was_up=False, answered=None, cancelled=True)
    stats.actions["BYE sent"] += 1
    assert stats.summary([("stray ACKs", 1)], "max_used_size 1 bytes") == [
        "calls ended: 3 (cause 200 x2, 487 x1); received 3, answered 200 x2, cancelled by the caller 1, "
        "at most 2 up at once",
        "in-call requests: BYE sent x1",
        "endpoint: stray ACKs 1",
        "memory: max_used_size 1 bytes",
    ]
    assert AnswererStats().summary([], "m")[0].startswith("calls ended: 0; received 0, answered none")
