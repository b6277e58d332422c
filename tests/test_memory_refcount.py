"""Explicit, named reference counts."""

from __future__ import annotations

import attrs
import pytest

from invsess.memory import DoubleFreeError, PoolFactory, RefCounted, ReferenceOwnerError


@attrs.define(eq=False)
class Obj(RefCounted):
    destroyed: list[str] = attrs.field(factory=list)

    def _on_last_ref(self, reason: str) -> None:
        self.destroyed.append(reason)


class Plain(RefCounted):
    __slots__ = ("hits",)

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def _on_last_ref(self, reason: str) -> None:
        self.hits += 1


@pytest.fixture(params=[False, True], ids=["normal", "debug"])
def factory(request: pytest.FixtureRequest) -> PoolFactory:
    return PoolFactory(malloc_debug=request.param)


def test_destroyed_exactly_at_zero(factory: PoolFactory) -> None:
    obj = factory.create_pool("p").alloc(Obj)
    assert obj.add_ref("a") == 1
    assert obj.add_ref("b") == 2
    assert obj.add_ref("a") == 3
    assert obj.ref_owners == {"a": 2, "b": 1}
    assert obj.dec_ref("a") == 2
    assert obj.dec_ref("b") == 1
    assert obj.destroyed == []
    assert obj.dec_ref("a") == 0
    assert obj.destroyed == ["reference count 1 -> 0 (dec_ref by 'a')"]
    assert obj.ref_count == 0


def test_plain_class_subclass(factory: PoolFactory) -> None:
    obj = factory.create_pool("p").alloc(Plain)
    obj.add_ref("x")
    obj.dec_ref("x")
    assert obj.hits == 1


def test_below_zero_is_double_free_naming_first_free(factory: PoolFactory) -> None:
    obj = factory.create_pool("p").alloc(Obj)
    obj.add_ref("app")
    obj.dec_ref("app")
    with pytest.raises(DoubleFreeError) as info:
        obj.dec_ref("app")
    report = info.value.report
    assert report.kind == "double-free"
    assert report.freed is not None
    assert "1 -> 0" in report.freed.reason
    assert report.freed.stack[0].filename == __file__
    assert obj.destroyed == ["reference count 1 -> 0 (dec_ref by 'app')"]  # not destroyed twice


def test_never_referenced_dec_ref_is_double_free(factory: PoolFactory) -> None:
    obj = factory.create_pool("p").alloc(Obj)
    with pytest.raises(DoubleFreeError):
        obj.dec_ref("nobody")


def test_wrong_owner_is_usage_error(factory: PoolFactory) -> None:
    obj = factory.create_pool("p").alloc(Obj)
    obj.add_ref("app")
    with pytest.raises(ReferenceOwnerError, match="'dialog' holds no reference"):
        obj.dec_ref("dialog")
    assert obj.ref_count == 1  # nothing changed


def test_add_ref_after_destruction(factory: PoolFactory) -> None:
    obj = factory.create_pool("p").alloc(Obj)
    obj.add_ref("app")
    obj.dec_ref("app")
    with pytest.raises(ReferenceOwnerError, match="already destroyed"):
        obj.add_ref("app")
