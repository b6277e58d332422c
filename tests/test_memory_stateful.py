"""Random pool/alloc/ref/release sequences against a model of what must happen.

Correct orders leak nothing and raise nothing; every use-after-free and double free is raised at
the first bad touch, never later, and never falsely; a pool released while an object in it is
still referenced raises DanglingReferenceError at that release (after completing it), and only then.
"""

from __future__ import annotations

import contextlib

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from invsess.memory import (
    DanglingReferenceError,
    DoubleFreeError,
    Pool,
    PoolExhaustedError,
    PoolFactory,
    RefCounted,
    ReferenceOwnerError,
    UseAfterFreeError,
)

OWNERS = st.sampled_from(["app", "dialog", "timer"])


@attrs.define(eq=False)
class Obj(RefCounted):
    pool: Pool
    owns_pool: bool
    payload: int = 0
    destroyed: int = 0

    def _on_last_ref(self, reason: str) -> None:
        self.destroyed += 1
        if self.owns_pool and not self.pool.released:
            self.pool.release(reason)


@attrs.define(eq=False)
class PoolModel:
    pool: Pool
    released: bool = False
    objs: list[ObjModel] = attrs.field(factory=list)

    def still_referenced(self) -> bool:
        """Would releasing this pool now leave an object in it referenced?"""
        return any(sum(om.refs.values()) for om in self.objs)


def releasing(pm: PoolModel):
    """The context an action that releases ``pm`` runs in: it raises DanglingReferenceError
    exactly when an object of the pool is still referenced (decided before the action)."""
    if pm.still_referenced():
        return pytest.raises(DanglingReferenceError)
    return contextlib.nullcontext()


@attrs.define(eq=False)
class ObjModel:
    obj: Obj
    pool: PoolModel
    owns_pool: bool
    refs: dict[str, int] = attrs.field(factory=dict)
    destroyed: bool = False


class MemoryMachine(RuleBasedStateMachine):
    pools = Bundle("pools")
    objs = Bundle("objs")

    def __init__(self) -> None:
        super().__init__()
        self.factory = PoolFactory(malloc_debug=True, total_size=1 << 20)
        self.all_pools: list[PoolModel] = []

    @rule(target=pools, capacity=st.integers(8, 256), increment=st.integers(0, 256))
    def create_pool(self, capacity: int, increment: int) -> PoolModel:
        model = PoolModel(self.factory.create_pool(f"p{len(self.all_pools)}", capacity, increment))
        self.all_pools.append(model)
        return model

    @rule(target=objs, pm=pools, owns_pool=st.booleans())
    def alloc(self, pm: PoolModel, owns_pool: bool) -> ObjModel:
        if pm.released:
            with pytest.raises(UseAfterFreeError):
                pm.pool.alloc(Obj, pm.pool, owns_pool)
            return ObjModel(None, pm, owns_pool, destroyed=True)  # type: ignore[arg-type]
        try:
            obj = pm.pool.alloc(Obj, pm.pool, owns_pool)
        except PoolExhaustedError:  # the only failure allowed here
            return ObjModel(None, pm, owns_pool, destroyed=True)  # type: ignore[arg-type]
        om = ObjModel(obj, pm, owns_pool)
        pm.objs.append(om)
        return om

    @precondition(lambda self: True)
    @rule(om=objs, owner=OWNERS)
    def add_ref(self, om: ObjModel, owner: str) -> None:
        if om.obj is None:
            return
        if om.pool.released:
            with pytest.raises(UseAfterFreeError):
                om.obj.add_ref(owner)
        elif om.destroyed:
            with pytest.raises(ReferenceOwnerError):
                om.obj.add_ref(owner)
        else:
            om.obj.add_ref(owner)
            om.refs[owner] = om.refs.get(owner, 0) + 1

    @rule(om=objs, owner=OWNERS)
    def dec_ref(self, om: ObjModel, owner: str) -> None:
        if om.obj is None:
            return
        if om.pool.released:
            with pytest.raises(UseAfterFreeError):
                om.obj.dec_ref(owner)
            return
        total = sum(om.refs.values())
        if om.refs.get(owner, 0) == 0:
            expected = DoubleFreeError if total == 0 else ReferenceOwnerError
            with pytest.raises(expected):
                om.obj.dec_ref(owner)
            return
        om.refs[owner] -= 1
        with releasing(om.pool) if total == 1 and om.owns_pool else contextlib.nullcontext():
            om.obj.dec_ref(owner)
        if total == 1:
            om.destroyed = True
            if om.owns_pool:
                om.pool.released = True
        if not om.pool.released:
            assert om.obj.destroyed == (1 if om.destroyed else 0)

    @rule(pm=pools)
    def release(self, pm: PoolModel) -> None:
        if pm.released:
            with pytest.raises(DoubleFreeError):
                pm.pool.release()
        else:
            with releasing(pm):
                pm.pool.release("test")
            pm.released = True

    @rule(om=objs)
    def touch(self, om: ObjModel) -> None:
        if om.obj is None:
            return
        if om.pool.released:
            with pytest.raises(UseAfterFreeError):
                _ = om.obj.payload
        else:
            om.obj.payload += 1

    @rule(om=consumes(objs))
    def correct_teardown_of_one(self, om: ObjModel) -> None:
        """Drop every reference of one object: raises only if that releases its pool while
        another object in it is still referenced."""
        if om.obj is None or om.pool.released:
            return
        for owner, n in list(om.refs.items()):
            for _ in range(n):
                om.refs[owner] -= 1
                last = sum(om.refs.values()) == 0
                with releasing(om.pool) if last and om.owns_pool else contextlib.nullcontext():
                    om.obj.dec_ref(owner)
                if last:
                    om.destroyed = True
                    if om.owns_pool:
                        om.pool.released = True

    @invariant()
    def statistics_match_model(self) -> None:
        live = [pm for pm in self.all_pools if not pm.released]
        assert {id(p.pool) for p in live} == {id(p) for p in self.factory.pools}
        assert self.factory.statistics().used_size == sum(p.pool.used for p in live)
        assert self.factory.statistics().real_used_size == sum(p.pool.reserved for p in live)

    def teardown(self) -> None:
        for pm in self.all_pools:
            if not pm.released:
                with releasing(pm):
                    pm.pool.release("teardown")
                pm.released = True
        assert not self.factory.leak_report()
        stats = self.factory.statistics()
        assert (stats.used_size, stats.real_used_size, stats.fragments) == (0, 0, 0)


MemoryMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestMemoryMachine = MemoryMachine.TestCase
