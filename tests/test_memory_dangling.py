"""A pool released while a block in it is still referenced: an error under MALLOC_DEBUG (at the
release, naming who holds the references and where they took them), a warning in the leak
report otherwise. The release itself completes either way."""

from __future__ import annotations

import attrs
import pytest

from invsess.memory import (
    DanglingReferenceError,
    DoubleFreeError,
    PoolFactory,
    RefCounted,
    UseAfterFreeError,
    is_freed,
)


@attrs.define(eq=False)
class Session(RefCounted):
    state: str = "CONFIRMED"


def take(session: RefCounted, owner: str) -> None:
    session.add_ref(owner)  # the site a dangling-reference report names


def release(pool) -> None:
    pool.release("dialog session count 1 -> 0")


def test_debug_raises_at_the_release_naming_holders_and_sites() -> None:
    factory = PoolFactory(malloc_debug=True)
    pool = factory.create_pool("dlg-1")
    pool.set_context(lambda: {"call_id": "c1"})
    session = pool.alloc(Session)
    take(session, "app")
    take(session, "app")
    take(session, "timer")
    with pytest.raises(DanglingReferenceError) as info:
        release(pool)
    assert pool.released and is_freed(session)  # the release went through before the error
    assert factory.statistics().used_size == 0
    report = info.value.report
    assert info.value.reports == (report,)
    assert (report.type_name, report.pool_name) == ("Session", "dlg-1")
    assert [(h.owner, h.count) for h in report.holders] == [("app", 2), ("timer", 1)]
    assert all(h.taken_at[0].function == "take" for h in report.holders)
    assert report.allocated_at[0].function == "test_debug_raises_at_the_release_naming_holders_and_sites"
    assert report.released.stack[0].function == "release"
    text = report.format()
    assert text.splitlines()[0] == (
        "==invsess== ERROR: dangling-reference: pool 'dlg-1' released while Session block #1 in it is "
        "still referenced by 'app' x2, 'timer' x1"
    )
    assert "release reason: dialog session count 1 -> 0" in text
    assert "reference 'timer' x1 taken at:" in text
    assert text.endswith("SIP context at free time: call_id=c1")
    # Under MALLOC_DEBUG the error is the report: nothing is left for the leak gate to fail on.
    assert not factory.leak_report()
    with pytest.raises(UseAfterFreeError):
        session.dec_ref("app")


def test_normal_mode_releases_and_warns_in_the_leak_report() -> None:
    factory = PoolFactory(malloc_debug=False)
    pool = factory.create_pool("dlg-2")
    session = pool.alloc(Session)
    take(session, "app")
    release(pool)  # no error without MALLOC_DEBUG ...
    report = factory.leak_report()
    assert report and not report.entries and report.total_blocks == 0  # ... but a warning
    assert len(factory.dangling) == 1
    assert factory.dangling[0].holders[0].taken_at == ()  # sites are MALLOC_DEBUG's
    line = release.__code__.co_firstlineno + 1
    assert report.format().splitlines() == [
        "0 leaked blocks",
        f"warning: pool 'dlg-2' was released at tests/test_memory_dangling.py:{line} in release while "
        "Session block #1 was still referenced by 'app' x1 (dialog session count 1 -> 0)",
    ]
    assert "(where it was taken: run with MALLOC_DEBUG)" in factory.dangling[0].format()


@pytest.mark.parametrize("debug", [False, True])
def test_references_dropped_before_the_release_are_no_warning(debug: bool) -> None:
    factory = PoolFactory(malloc_debug=debug)
    pool = factory.create_pool("dlg-3")
    session = pool.alloc(Session)
    take(session, "app")
    session.dec_ref("app")  # the right order: the session's references first
    release(pool)
    assert not factory.leak_report()
    assert factory.dangling == []


def test_a_site_is_forgotten_when_its_owner_lets_go() -> None:
    factory = PoolFactory(malloc_debug=True)
    pool = factory.create_pool("dlg-4")
    session = pool.alloc(Session)
    take(session, "app")
    take(session, "timer")
    session.dec_ref("app")
    assert [h.owner for h in session.reference_holders()] == ["timer"]
    session.dec_ref("timer")
    assert session.reference_holders() == ()


@attrs.define(eq=False)
class Owner(RefCounted):
    """Owns a pool of its own (as an INVITE session owns its SDP pools), released by its destructor."""

    own: object
    destroyed: list[str] = attrs.field(factory=list)

    def _on_last_ref(self, reason: str) -> None:
        self.destroyed.append(reason)
        self.own.release("owner destroyed")  # type: ignore[attr-defined]


@pytest.mark.parametrize("debug", [False, True])
def test_a_block_released_under_its_references_is_destroyed_with_its_pool(debug: bool) -> None:
    # What it owns goes too (no cascade of leaks behind the reported error), exactly once.
    factory = PoolFactory(malloc_debug=debug)
    pool = factory.create_pool("dlg-5")
    owner = pool.alloc(Owner, factory.create_pool("sdp-5"))
    destroyed = owner.destroyed
    take(owner, "app")
    if debug:
        with pytest.raises(DanglingReferenceError):
            release(pool)
        with pytest.raises(UseAfterFreeError):
            owner.dec_ref("app")
    else:
        release(pool)
        owner.dec_ref("app")  # stale, "works" in normal mode: the destructor does not run twice
    assert destroyed == ["pool 'dlg-5' released under it (dialog session count 1 -> 0)"]
    assert factory.pools == []
    assert factory.leak_report().entries == ()


def test_a_destructor_releasing_the_same_pool_during_its_release_is_not_a_double_free() -> None:
    factory = PoolFactory(malloc_debug=False)
    pool = factory.create_pool("dlg-6")
    owner = pool.alloc(Owner, pool)  # owns the very pool it lives in (as a dialog does)
    take(owner, "app")
    release(pool)
    assert owner.destroyed and pool.released
    with pytest.raises(DoubleFreeError):
        pool.release("again, later")
