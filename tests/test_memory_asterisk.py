"""The Asterisk/PJSIP crash in miniature, with the memory layer alone.

res_pjsip_session.c releases the INVITE session reference before the dialog's, because "the
INVITE session uses the dialog pool for memory". Doing it the other way round releases the pool
under the session; under MALLOC_DEBUG the next touch must fail, every time, naming both sites.
"""

from __future__ import annotations

import pytest

from invsess.demo import make_call, run_demo
from invsess.memory import DanglingReferenceError, PoolFactory, UseAfterFreeError


def release_dialog(dialog):
    dialog.dec_ref("app")


def release_session(session):
    session.dec_ref("app")


def test_right_order_frees_everything() -> None:
    factory = PoolFactory(malloc_debug=True)
    dialog, session = make_call(factory, "c1")
    session.disconnect()
    release_session(session)
    release_dialog(dialog)
    assert not factory.leak_report()
    assert factory.statistics().used_size == 0
    assert factory.statistics().real_used_size == 0


def wrong_order_report() -> str:
    factory = PoolFactory(malloc_debug=True)
    dialog, session = make_call(factory, "c2")
    session.disconnect()
    with pytest.raises(DanglingReferenceError) as released:
        release_dialog(dialog)  # the session in the pool is still referenced by "app"
    dangling = released.value.report
    assert dangling.type_name == "DemoSession"
    assert [(h.owner, h.count) for h in dangling.holders] == [("app", 1)]
    assert dangling.holders[0].taken_at[0].function == "make_call"
    assert any(f.function == "release_dialog" for f in dangling.released.stack)
    with pytest.raises(UseAfterFreeError) as info:
        release_session(session)
    report = info.value.report
    assert report.type_name == "DemoSession"
    assert report.access == "read of attribute 'dec_ref'"
    assert report.where[0].function == "release_session"
    assert report.freed is not None
    assert report.freed.reason == "dialog session count 1 -> 0 (dec_ref by 'app')"
    assert any(f.function == "release_dialog" for f in report.freed.stack)
    assert report.allocated_at[0].function == "make_call"
    assert report.context == {"call_id": "c2", "state": "DISCONNECTED"}
    return dangling.format() + "\n" + report.format()


def test_wrong_order_fails_at_first_touch_deterministically() -> None:
    reports = set()
    for _ in range(3):  # one call site, so the stacks can be equal to the letter
        reports.add(wrong_order_report())
    # Same error, same sites, every run (block ids restart with each factory).
    assert len(reports) == 1
    text = reports.pop()
    assert "release_session" in text
    assert "release_dialog" in text


def test_wrong_order_in_normal_mode_runs_on_stale_memory() -> None:
    factory = PoolFactory(malloc_debug=False)
    dialog, session = make_call(factory, "c3")
    session.disconnect()
    release_dialog(dialog)
    release_session(session)  # "works", like C on a caching pool: that is the danger
    assert factory.statistics().used_size == 0
    # ... but the leak report says what happened at the release, as a warning.
    report = factory.leak_report()
    assert report and not report.entries
    line = release_dialog.__code__.co_firstlineno + 1
    assert report.format().splitlines() == [
        "0 leaked blocks",
        f"warning: pool 'dlg-c3' was released at tests/test_memory_asterisk.py:{line} in release_dialog while "
        "DemoSession block #2 was still referenced by 'app' x1 (dialog session count 1 -> 0 (dec_ref by 'app'))",
    ]


def test_demo_prints_both_scenarios() -> None:
    lines: list[str] = []
    assert run_demo(lines.append) == 0
    text = "\n".join(lines)
    assert "0 leaked blocks" in text
    assert "ERROR: use-after-free" in text
    assert "dialog session count 1 -> 0" in text
