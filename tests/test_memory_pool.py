"""Pool and factory accounting, limits and statistics."""

from __future__ import annotations

import os

import attrs
import pytest

from invsess.memory import (
    Block,
    Buffer,
    DoubleFreeError,
    PoolExhaustedError,
    PoolFactory,
    UseAfterFreeError,
    align,
    malloc_debug_from_env,
)


@attrs.define
class Thing(Block):
    a: int = 0
    b: str = ""


class Sized(Block):
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def block_size(self) -> int:
        return self.n


@pytest.fixture(params=[False, True], ids=["normal", "debug"])
def factory(request: pytest.FixtureRequest) -> PoolFactory:
    return PoolFactory(malloc_debug=request.param)


def test_sizes_are_deterministic_and_aligned(factory: PoolFactory) -> None:
    pool = factory.create_pool("p")
    first = pool.alloc(Thing, 1, "x").block_header.size
    second = pool.alloc(Thing, 2, "a much longer string").block_header.size
    assert first == second
    assert first % 8 == 0
    assert pool.alloc(Sized, 13).block_header.size == 16
    assert pool.alloc(Buffer, b"abc").block_header.size == align(16 + 3)


def test_same_input_same_statistics() -> None:
    def run() -> dict[str, int]:
        f = PoolFactory()
        pool = f.create_pool("p", 64, 64)
        for i in range(10):
            pool.alloc(Sized, 8 * i + 1)
        return f.statistics().as_dict()

    assert run() == run()


def test_pool_grows_by_increment_and_accounts_chunks(factory: PoolFactory) -> None:
    pool = factory.create_pool("p", capacity=64, increment=128)
    assert factory.statistics().real_used_size == 64
    assert factory.statistics().fragments == 1
    pool.alloc(Sized, 64)  # fills the first chunk exactly
    assert pool.reserved == 64
    pool.alloc(Sized, 8)  # needs a new chunk of `increment`
    assert pool.reserved == 64 + 128
    pool.alloc(Sized, 256)  # bigger than increment: a chunk of its own size
    assert pool.reserved == 64 + 128 + 256
    stats = factory.statistics()
    assert stats.used_size == 64 + 8 + 256
    assert stats.real_used_size == 64 + 128 + 256
    assert stats.fragments == 3
    assert stats.free_size == stats.total_size - stats.real_used_size


def test_release_returns_everything(factory: PoolFactory) -> None:
    start = factory.statistics()
    pool = factory.create_pool("p", 64, 64)
    for _ in range(20):
        pool.alloc(Thing)
    pool.release("done")
    end = factory.statistics()
    assert (end.used_size, end.real_used_size, end.fragments) == (
        start.used_size,
        start.real_used_size,
        start.fragments,
    )
    assert end.max_used_size >= 64
    assert pool.released
    assert not factory.pools


def test_pool_without_increment_is_exhausted(factory: PoolFactory) -> None:
    pool = factory.create_pool("fixed", capacity=32, increment=0)
    pool.alloc(Sized, 32)
    with pytest.raises(PoolExhaustedError, match="cannot grow") as info:
        pool.alloc(Sized, 8)
    assert info.value.pool_name == "fixed"
    assert info.value.requested == 8
    assert pool.used == 32  # the failed allocation charged nothing


def test_pool_max_size(factory: PoolFactory) -> None:
    pool = factory.create_pool("capped", capacity=64, increment=64, max_size=128)
    pool.alloc(Sized, 64)
    pool.alloc(Sized, 64)
    with pytest.raises(PoolExhaustedError, match="max_size"):
        pool.alloc(Sized, 8)


def test_factory_limit_on_create_and_on_growth() -> None:
    factory = PoolFactory(total_size=256)
    pool = factory.create_pool("a", 128, 128)
    with pytest.raises(PoolExhaustedError, match="factory limit"):
        factory.create_pool("b", 256)
    pool.alloc(Sized, 128)
    pool.alloc(Sized, 128)
    with pytest.raises(PoolExhaustedError, match="factory limit"):
        pool.alloc(Sized, 8)
    assert not isinstance(PoolExhaustedError("x", pool_name="p", requested=1), MemoryError)
    pool.release()
    assert factory.statistics().real_used_size == 0
    factory.create_pool("b", 256).release()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="total_size"):
        PoolFactory(total_size=0)
    with pytest.raises(ValueError, match="stack_depth"):
        PoolFactory(stack_depth=0)
    factory = PoolFactory()
    with pytest.raises(ValueError, match="capacity"):
        factory.create_pool("p", 0)
    with pytest.raises(ValueError, match="max_size"):
        factory.create_pool("p", 64, max_size=32)


def test_release_twice_is_double_free(factory: PoolFactory) -> None:
    pool = factory.create_pool("p")
    pool.release("first")
    with pytest.raises(DoubleFreeError) as info:
        pool.release("second")
    text = str(info.value)
    assert "double-free" in text
    assert "first freed by release of pool 'p' (first)" in text
    assert "test_memory_pool.py" in text


def test_alloc_from_released_pool(factory: PoolFactory) -> None:
    pool = factory.create_pool("p")
    pool.release()
    with pytest.raises(UseAfterFreeError, match=r"alloc\(Thing\)"):
        pool.alloc(Thing)


def test_pkg_stats_rows(factory: PoolFactory) -> None:
    pool = factory.create_pool("dlg-1", 128, 128)
    pool.alloc(Sized, 40)
    factory.create_pool("tsx-1", 64, 0)
    rows = [r.as_dict() for r in factory.pool_statistics()]
    assert [r["desc"] for r in rows] == ["dlg-1", "tsx-1"]
    assert rows[0]["used"] == 40
    assert rows[0]["real_used"] == 128
    assert rows[0]["total_frags"] == 1
    assert rows[0]["pid"] == os.getpid()
    assert set(rows[0]) == {
        "entry",
        "pid",
        "rank",
        "used",
        "free",
        "real_used",
        "total_size",
        "total_frags",
        "desc",
    }


def test_kamailio_statistics_shapes(factory: PoolFactory) -> None:
    factory.create_pool("p", 64).alloc(Sized, 8)
    stats = factory.statistics()
    lines = stats.kamailio_statistics()
    assert "shmem:used_size = 8" in lines
    assert "shmem:real_used_size = 64" in lines
    assert len(lines) == 6
    assert stats.core_shmmem() == {
        "total": stats.total_size,
        "free": stats.total_size - 64,
        "used": 8,
        "real_used": 64,
        "max_used": 64,
        "fragments": 1,
    }


def test_buffer_behaves_like_bytes(factory: PoolFactory) -> None:
    buf = factory.create_pool("p").alloc(Buffer, b"INVITE sip:a@b SIP/2.0")
    assert len(buf) == 22
    assert bytes(buf) == b"INVITE sip:a@b SIP/2.0"
    assert buf[0:6] == b"INVITE"
    assert buf[0] == ord("I")
    assert buf == b"INVITE sip:a@b SIP/2.0"
    assert list(buf)[:2] == [73, 78]
    assert hash(buf) == hash(b"INVITE sip:a@b SIP/2.0")
    assert "INVITE" in repr(buf)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_malloc_debug_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("INVSESS_MALLOC_DEBUG", value)
    assert malloc_debug_from_env() is expected
    assert PoolFactory().malloc_debug is expected
    assert PoolFactory(malloc_debug=not expected).malloc_debug is (not expected)
