"""invsess.collector: what the serving commands do to the cycle collector, and the way out."""

from __future__ import annotations

import gc

from invsess import collector

# conftest's autouse fixture puts the collector back as it was after each test.


def test_tune_freezes_start_up_and_raises_the_thresholds() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert collector.tune({}) is True
    assert gc.get_freeze_count() > 0  # the modules, classes and tables of start-up
    assert gc.get_threshold() == collector.THRESHOLDS
    assert gc.isenabled()  # cycles an application makes are still collected


def test_invsess_gc_default_changes_nothing() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    assert collector.tune({collector.ENV: " Default "}) is False
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
