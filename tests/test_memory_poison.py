"""MALLOC_DEBUG: every touch of a freed block fails at once; normal mode checks nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from invsess.memory import (
    Block,
    Buffer,
    PoolFactory,
    RefCounted,
    UseAfterFreeError,
    is_freed,
)
from invsess.memory.block import header_of


@attrs.define
class Session(RefCounted):
    state: str = "CONFIRMED"
    items: list[int] = attrs.field(factory=lambda: [1, 2, 3])

    def get_state(self) -> str:
        return self.state

    def constant(self) -> int:
        return 42  # touches nothing: only the debug guard can catch a call after free

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)

    def __contains__(self, x: object) -> bool:
        return x in self.items

    def __getitem__(self, i: int) -> int:
        return self.items[i]


class WithDict(Block):
    """A plain class with a __dict__ (no __slots__ of its own)."""

    def __init__(self) -> None:
        self.value = 1

    def read(self) -> int:
        return self.value


def freed_session() -> tuple[Session, Callable[[], Any], PoolFactory]:
    factory = PoolFactory(malloc_debug=True)
    pool = factory.create_pool("dlg-x")
    pool.set_context(
        lambda: {"call_id": "c1", "local_tag": "lt", "remote_tag": "rt", "state": "DISCONNECTED"}
    )
    session = pool.alloc(Session)
    bound = session.constant
    pool.release("dialog session count 1 -> 0")
    return session, bound, factory


TOUCHES: dict[str, Callable[[Session], Any]] = {
    "attribute read": lambda s: s.state,
    "attribute write": lambda s: setattr(s, "state", "X"),
    "attribute delete": lambda s: delattr(s, "state"),
    "method call": lambda s: s.get_state(),
    "repr": repr,
    "str": str,
    "format": lambda s: f"{s}",
    "eq": lambda s: s == s,
    "ne": lambda s: s != object(),
    "hash": hash,
    "len": len,
    "iter": iter,
    "contains": lambda s: 1 in s,
    "getitem": lambda s: s[0],
    "bool": bool,
    "dec_ref": lambda s: s.dec_ref("app"),
    "add_ref": lambda s: s.add_ref("app"),
    "ref_count": lambda s: s.ref_count,
    "dir": dir,
    "copy": copy.copy,
    "vars": vars,
}


@pytest.mark.parametrize("touch", list(TOUCHES), ids=list(TOUCHES))
def test_every_touch_after_free_raises(touch: str) -> None:
    session, _, _ = freed_session()
    with pytest.raises(UseAfterFreeError) as info:
        TOUCHES[touch](session)
    report = info.value.report
    assert report.kind == "use-after-free"
    assert report.type_name == "Session"
    assert report.pool_name == "dlg-x"
    assert any(frame.filename == __file__ for frame in report.where)


def test_bound_method_taken_before_free() -> None:
    _, bound, _ = freed_session()
    with pytest.raises(UseAfterFreeError, match=r"call of constant\(\)"):
        bound()


def test_method_looked_up_on_the_type_of_a_freed_block() -> None:
    session, _, _ = freed_session()
    with pytest.raises(UseAfterFreeError):
        type(session).constant(session)


def test_report_names_alloc_free_reason_and_context() -> None:
    session, _, _ = freed_session()
    with pytest.raises(UseAfterFreeError) as info:
        session.get_state()
    report = info.value.report
    assert report.access == "read of attribute 'get_state'"
    assert report.freed is not None
    assert report.freed.reason == "dialog session count 1 -> 0"
    assert report.freed.stack[0].function == "freed_session"
    assert report.allocated_at[0].function == "freed_session"
    assert report.context == {"call_id": "c1", "local_tag": "lt", "remote_tag": "rt", "state": "DISCONNECTED"}
    text = report.format()
    for needle in (
        "ERROR: use-after-free: read of attribute 'get_state' on Session block #1 in pool 'dlg-x'",
        "freed by release of pool 'dlg-x' (dialog session count 1 -> 0) at:",
        "previously allocated by:",
        "SIP context at free time: call_id=c1, local_tag=lt, remote_tag=rt, state=DISCONNECTED",
        "test_memory_poison.py",
    ):
        assert needle in text


def test_isinstance_and_is_freed_do_not_raise() -> None:
    session, _, _ = freed_session()
    assert isinstance(session, Session)
    assert not isinstance(session, int)
    assert is_freed(session)
    assert not is_freed(object())


def test_pool_drops_its_reference_to_freed_blocks() -> None:
    import gc
    import weakref

    factory = PoolFactory(malloc_debug=True)
    pool = factory.create_pool("p")
    ref = weakref.ref(pool.alloc(Session))
    pool.release()
    gc.collect()
    assert ref() is None  # nobody held it: poisoned and gone
    obj = pool_alloc_and_release(factory)
    header = header_of(obj)
    assert header is not None
    assert header.freed is not None


def pool_alloc_and_release(factory: PoolFactory) -> Session:
    pool = factory.create_pool("q")
    obj = pool.alloc(Session)
    pool.release()
    return obj


def test_dict_based_block_is_poisoned() -> None:
    factory = PoolFactory(malloc_debug=True)
    pool = factory.create_pool("p")
    obj = pool.alloc(WithDict)
    read = obj.read
    assert read() == 1
    pool.release()
    with pytest.raises(UseAfterFreeError):
        read()
    with pytest.raises(UseAfterFreeError):
        obj.value = 2


def test_buffer_poisoned() -> None:
    factory = PoolFactory(malloc_debug=True)
    pool = factory.create_pool("msg")
    buf = pool.alloc(Buffer, b"SIP/2.0 200 OK")
    pool.release()
    with pytest.raises(UseAfterFreeError):
        bytes(buf)
    with pytest.raises(UseAfterFreeError):
        buf[0:3]


def test_normal_mode_stale_data_works_silently() -> None:
    factory = PoolFactory(malloc_debug=False)
    pool = factory.create_pool("dlg")
    session = pool.alloc(Session)
    assert type(session) is Session  # no debug variant, no per-access check
    pool.release()
    assert session.state == "CONFIRMED"
    assert session.get_state() == "CONFIRMED"
    assert not is_freed(session)


def test_debug_variant_keeps_names_and_behaviour() -> None:
    factory = PoolFactory(malloc_debug=True)
    session = factory.create_pool("p").alloc(Session)
    assert type(session).__name__ == "Session"
    assert repr(session).startswith("Session(")
    assert session.get_state.__name__ == "get_state"
    assert len(session) == 3
    assert list(session) == [1, 2, 3]


def test_quarantine_is_bounded() -> None:
    factory = PoolFactory(malloc_debug=True, quarantine_size=3)
    for i in range(5):
        factory.create_pool(f"p{i}").release(f"r{i}")
    assert [r.reason for r in factory.quarantine] == ["r2", "r3", "r4"]


def test_freed_block_report_survives_quarantine_eviction() -> None:
    factory = PoolFactory(malloc_debug=True, quarantine_size=1)
    session, _, _ = freed_session()
    for i in range(3):
        factory.create_pool(f"p{i}").release()
    with pytest.raises(UseAfterFreeError, match="dialog session count"):
        session.state
