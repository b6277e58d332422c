"""Leak reports grouped by allocation site, and snapshot diffs."""

from __future__ import annotations

import attrs
import pytest

from invsess.memory import Block, PoolFactory, RefCounted


@attrs.define(eq=False)
class Msg(Block):
    text: str = ""


@attrs.define(eq=False)
class Held(RefCounted):
    pass


def leak_messages(pool, n):  # one allocation site for all n
    out = []
    for i in range(n):
        out.append(pool.alloc(Msg, str(i)))
    return out


@pytest.mark.parametrize("debug", [False, True])
def test_leak_report_groups_by_site_with_owners(debug: bool) -> None:
    factory = PoolFactory(malloc_debug=debug)
    pool = factory.create_pool("tsx-1")
    leak_messages(pool, 3)
    held = pool.alloc(Held)
    held.add_ref("app")
    held.add_ref("timer")
    report = factory.leak_report()
    assert report
    assert report.total_blocks == 4
    assert report.pools == ("tsx-1",)
    by_type = {e.type_name: e for e in report.entries}
    assert by_type["Msg"].count == 3
    assert by_type["Msg"].site.function == "leak_messages"
    assert by_type["Held"].owners == {"app": 1, "timer": 1}
    text = report.format()
    assert "4 leaked blocks" in text
    assert "3 x Msg" in text
    assert "references held by app x1, timer x1" in text


def test_no_leaks_is_falsy() -> None:
    factory = PoolFactory()
    pool = factory.create_pool("p")
    leak_messages(pool, 2)
    pool.release()
    report = factory.leak_report()
    assert not report
    assert report.format() == "0 leaked blocks"


def test_ignore_filter() -> None:
    factory = PoolFactory()
    factory.create_pool("endpoint")
    assert not factory.leak_report(ignore=lambda p: p.name == "endpoint")
    assert factory.leak_report()


def test_snapshot_diff_shows_growth_per_site() -> None:
    factory = PoolFactory()
    pool = factory.create_pool("p")
    leak_messages(pool, 1)
    before = factory.snapshot()
    leak_messages(pool, 4)
    other = factory.create_pool("q")
    other.alloc(Held)
    after = factory.snapshot()
    diffs = after.compare_to(before)
    assert [(d.type_name, d.count_diff) for d in diffs] == [("Msg", 4), ("Held", 1)]
    assert diffs[0].count == 5
    assert diffs[0].size_diff == 4 * diffs[0].size // 5
    assert "leak_messages" in str(diffs[0])
    other.release()
    assert [d.count_diff for d in factory.snapshot().compare_to(after)] == [-1]
    assert after.statistics.used_size > before.statistics.used_size


def test_snapshot_diff_formats_like_a_leak_report() -> None:
    factory = PoolFactory()
    pool = factory.create_pool("p")
    before = factory.snapshot()
    leak_messages(pool, 2)
    held = pool.alloc(Held)
    diff = factory.snapshot().compare_to(before)
    assert len(diff) == 2 and diff  # a sequence of SiteDiff, truthy when something changed
    assert [d.type_name for d in diff] == ["Msg", "Held"]
    lines = diff.format().splitlines()
    assert (
        lines[0]
        == f"used_size 0 -> {diff.after.used_size} (+{diff.after.used_size} bytes, +3 blocks) at 2 sites"
    )
    assert lines[1].startswith("  tests/test_memory_leaks.py:") and "in leak_messages: Msg" in lines[1]
    assert "(+2)" in lines[1]
    assert diff.format(limit=1).splitlines()[-1] == "  ... 1 more sites"
    assert str(diff) == diff.format()
    assert not factory.snapshot().compare_to(factory.snapshot())
    del held


def test_library_frames_print_from_the_package_wherever_it_lives(tmp_path, monkeypatch) -> None:
    import invsess
    from invsess.memory.report import Frame

    package_file = invsess.__file__
    monkeypatch.chdir(tmp_path)  # a working directory the library is not under
    assert str(Frame(package_file, 3, "f")) == "invsess/__init__.py:3 in f"
    outside = tmp_path / "app.py"
    assert str(Frame(str(outside), 7, "main")) == "app.py:7 in main"
    assert str(Frame("/elsewhere/lib.py", 1, "g")) == "/elsewhere/lib.py:1 in g"
