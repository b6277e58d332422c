"""Pools and the pool factory (PJSIP's ``pj_pool_t`` and caching pool; Kamailio's allocator).

A :class:`Pool` is a region owned by one object (endpoint, dialog, transaction, SDP
negotiation). Objects are allocated *from* it and become its blocks; blocks are never freed one
by one, :meth:`Pool.release` frees them all at once. The :class:`PoolFactory` hands pools their
chunks, enforces the total limit and keeps the statistics.

Accounting is deterministic: a block's size depends only on its class and content, and a pool
reserves whole chunks (``capacity`` first, then ``increment`` at a time) exactly as PJSIP's pool
grows, so the same input always gives the same figures.

Single-threaded by design, like the sans-IO core that uses it.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from invsess.memory.block import (
    ALIGNMENT,
    Block,
    RawHeader,
    RefCounted,
    _fixed_sizes,  # the hot path reads the size cache directly
    _sites,  # the hot path reads the site table directly
    block_size_of,
    debug_variant,
    poison,
    raw_header,
    site_of,
)
from invsess.memory.report import (
    DanglingReference,
    DanglingReferenceError,
    DoubleFreeError,
    Frame,
    FreeRecord,
    MemoryErrorReport,
    PoolExhaustedError,
    RawFrame,
    UseAfterFreeError,
    _skip_code,  # the hot paths read which frames are the allocator's own directly
    capture_raw_stack,
    capture_stack,
    resolve,
)
from invsess.memory.stats import (
    LeakEntry,
    LeakReport,
    MemorySnapshot,
    MemoryStatistics,
    PoolStatistics,
    group_sites,
)

_B = TypeVar("_B", bound=Block)
_getframe = sys._getframe
# The header slots' own setters: they work on frozen attrs classes too, and cost less than
# object.__setattr__ (no look-up by name).
_set_id = Block.__dict__["_blk_id"].__set__
_set_pool = Block.__dict__["_blk_pool"].__set__
_set_size = Block.__dict__["_blk_size"].__set__
_set_site = Block.__dict__["_blk_site"].__set__

#: Kamailio's default shared memory size.
DEFAULT_TOTAL_SIZE = 64 * 1024 * 1024
DEFAULT_CAPACITY = 1024
DEFAULT_INCREMENT = 1024


def malloc_debug_from_env() -> bool:
    """True when ``INVSESS_MALLOC_DEBUG`` is set to 1/true/yes/on."""
    return os.environ.get("INVSESS_MALLOC_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class Pool:
    """A named region of memory; see the module docstring.

    Create pools with :meth:`PoolFactory.create_pool`, allocate with :meth:`alloc`, free every
    block with :meth:`release`. ``set_context`` gives the pool a function whose result (Call-ID,
    tags, state, ...) is recorded when the pool is freed and shown in any later report.
    """

    __slots__ = (
        "_blocks",
        "_chunks",
        "_context",
        "_created",
        "_next",
        "_prev",
        "_released",
        "_releasing",
        "_reserved",
        "_serial",
        "_tail_free",
        "_used",
        "capacity",
        "factory",
        "increment",
        "max_size",
        "name",
    )

    def __init__(
        self,
        factory: PoolFactory,
        name: str,
        *,
        capacity: int,
        increment: int,
        max_size: int | None,
        serial: int,
        created: tuple[RawFrame, ...] | None = None,
    ) -> None:
        self.name = name
        self.factory = factory
        self.capacity = capacity
        self.increment = increment
        self.max_size = max_size
        self._blocks: list[Block] = []
        self._chunks = 1
        self._reserved = capacity
        self._used = 0
        self._tail_free = capacity
        # None while live; a FreeRecord, or in normal mode the raw facts it is built from
        # (reason, raw stack, context) until someone asks (free_record).
        self._released: FreeRecord | tuple[str, tuple[RawFrame, ...], dict[str, Any]] | None = None
        self._releasing = False
        self._context: Callable[[], Mapping[str, Any]] | None = None
        self._serial = serial
        # The factory's list of live pools runs through the pools themselves (PJSIP's caching
        # pool keeps its used list the same way): two slots instead of a table entry per pool.
        self._prev: Pool | None = None
        self._next: Pool | None = None
        # Kept raw (code objects and lines), resolved into frames only if a report needs them,
        # and shared: the pools of every call are made at the same few places.
        if created is None:
            created = _shared_stack(capture_raw_stack(factory.stack_depth if factory.malloc_debug else 1))
        self._created = created

    def __repr__(self) -> str:
        state = "released" if self._released else f"{len(self._blocks)} blocks, {self._used} bytes"
        return f"<Pool {self.name!r} {state}>"

    @property
    def released(self) -> bool:
        """True once :meth:`release` has run."""
        return self._released is not None

    @property
    def free_record(self) -> FreeRecord | None:
        """How this pool was released (reason, stack, SIP context), or None while it is live."""
        released = self._released
        if released is None or isinstance(released, FreeRecord):
            return released
        # Normal mode keeps the facts raw at the release (its hot path); built when asked.
        reason, raw, context = released
        record = self._released = FreeRecord(f"release of pool {self.name!r}", reason, resolve(raw), context)
        return record

    @property
    def used(self) -> int:
        """Bytes in live blocks."""
        return self._used

    @property
    def reserved(self) -> int:
        """Bytes of chunks this pool holds (what it costs the factory)."""
        return self._reserved

    @property
    def block_count(self) -> int:
        """Number of live blocks."""
        return len(self._blocks)

    def blocks(self) -> list[Block]:
        """The live blocks, oldest first (a copy)."""
        return list(self._blocks)

    def set_context(self, provider: Callable[[], Mapping[str, Any]] | None) -> None:
        """Set the function whose result is recorded as the SIP context when this pool is freed."""
        self._context = provider

    def alloc(self, cls: type[_B], /, *args: Any, **kwargs: Any) -> _B:
        """Construct ``cls(*args, **kwargs)`` as a block of this pool.

        Raises :class:`PoolExhaustedError` when the pool or the factory has no room, and
        :class:`UseAfterFreeError` when the pool was already released.
        """
        if self._released is not None:
            raise UseAfterFreeError(self._report("use-after-free", f"alloc({cls.__name__})"))
        factory = self.factory
        if factory.malloc_debug:
            obj = debug_variant(cls)(*args, **kwargs)
            stack = capture_raw_stack(factory.stack_depth)
            site = site_of(stack[0][0], stack[0][1], stack)
        else:
            # The hot path: one frame look-up, one dict look-up by an int; nothing is
            # resolved until a report.
            obj = cls(*args, **kwargs)
            frame = _getframe(1)
            code, line = frame.f_code, frame.f_lineno
            site = _sites.get(id(code) << 32 | line) or site_of(code, line)
        size = _fixed_sizes.get(cls)
        if size is None:  # a size that depends on the content (a message, a buffer)
            size = block_size_of(obj)
        if size <= self._tail_free:
            self._tail_free -= size
            self._used += size
            factory._used += size
        else:
            self._charge(size)
        factory._next_block_id += 1
        _set_id(obj, factory._next_block_id)
        _set_pool(obj, self)
        _set_size(obj, size)
        _set_site(obj, site)
        self._blocks.append(obj)
        return obj

    def _charge(self, size: int) -> None:
        """Charge a block that does not fit in the current chunk: grow by one chunk."""
        if self.increment <= 0:
            raise PoolExhaustedError(
                f"pool {self.name!r} cannot grow (increment 0): {size} bytes requested, "
                f"{self._tail_free} free",
                pool_name=self.name,
                requested=size,
            )
        grow = max(self.increment, size)
        if self.max_size is not None and self._reserved + grow > self.max_size:
            raise PoolExhaustedError(
                f"pool {self.name!r} would exceed its max_size {self.max_size}: "
                f"{size} bytes requested, {self._reserved} reserved",
                pool_name=self.name,
                requested=size,
            )
        self.factory._reserve(grow, self.name)
        self._reserved += grow
        self._chunks += 1
        self._tail_free = grow - size
        self._used += size
        self.factory._used += size

    def release(self, reason: str = "pool released") -> None:
        """Free every block at once and return the chunks to the factory.

        Releasing twice raises :class:`DoubleFreeError` naming the first release. Under
        MALLOC_DEBUG every block is poisoned, so any later touch raises
        :class:`UseAfterFreeError` whose report carries ``reason`` and the context.
        """
        factory = self.factory
        if self._released is not None:
            if self._releasing:  # a destructor run by this very release asks for it again
                return
            raise DoubleFreeError(self._report("double-free", f"release ({reason})"))
        context = dict(self._context()) if self._context is not None else {}
        # A block still referenced is memory someone will touch after this free: the wrong
        # order of release. Found here, it is reported at the release rather than at a touch
        # that may never come (a test would pass silently).
        referenced = [b for b in self._blocks if isinstance(b, RefCounted) and b._ref_count]
        if factory.malloc_debug or referenced:
            depth = factory.stack_depth if factory.malloc_debug or referenced else 1
            record: FreeRecord | None = FreeRecord(
                f"release of pool {self.name!r}", reason, capture_stack(depth), context
            )
            self._released = record
        else:  # the common case: the facts are kept raw, the record is built if ever asked for
            record = None
            frame = _getframe(1)
            code = frame.f_code
            if _skip_code.get(id(code)) is False:  # a caller outside this package: the usual
                raw: tuple[RawFrame, ...] = ((code, frame.f_lineno),)
            else:
                raw = capture_raw_stack(1)
            self._released = (reason, raw, context)
        dangling = tuple(self._dangling(b, record) for b in referenced) if record is not None else ()
        self._context = None  # it refers to the pool's owner: no cycle may outlive the release
        blocks, self._blocks = self._blocks, []
        factory._pool_released(self, record)
        try:
            self._releasing = True
            for held in referenced:
                held.destroy_with_pool(f"pool {self.name!r} released under it ({reason})")
        finally:
            self._releasing = False
            if factory.malloc_debug:
                for block in blocks:
                    poison(block)
        self._used = 0
        self._reserved = 0
        self._chunks = 0
        self._tail_free = 0
        if dangling:
            if factory.malloc_debug:
                raise DanglingReferenceError(dangling)
            factory._dangling.extend(dangling)

    def _dangling(self, block: RefCounted, record: FreeRecord) -> DanglingReference:
        header = block.block_header
        return DanglingReference(
            header.type_name,
            header.block_id,
            self.name,
            block.reference_holders(),
            header.alloc_stack or (header.site,),
            record,
        )

    def _report(self, kind: str, access: str) -> MemoryErrorReport:
        where = capture_stack(self.factory.stack_depth, depth=3)
        created = resolve(self._created)
        return MemoryErrorReport(kind, access, "Pool", None, self.name, where, created, self.free_record)

    def statistics(self, entry: int = 0) -> PoolStatistics:
        """This pool as a Kamailio ``pkg.stats`` entry."""
        limit = self.max_size if self.max_size is not None else self._reserved
        return PoolStatistics(
            entry=entry,
            pid=os.getpid(),
            rank=self._serial,
            used=self._used,
            free=max(limit - self._reserved, 0) + self._tail_free,
            real_used=self._reserved,
            total_size=limit,
            total_frags=self._chunks,
            desc=self.name,
        )


_stacks: dict[Any, tuple[RawFrame, ...]] = {}
_MAX_SHARED_STACKS = 4096


def _shared_stack(raw: tuple[RawFrame, ...]) -> tuple[RawFrame, ...]:
    """One tuple for every equal stack (keyed by code ids: see :func:`frame_key`)."""
    if len(raw) == 1:
        code, line = raw[0]
        key: Any = id(code) << 32 | line
    else:
        key = tuple([id(c) << 32 | n for c, n in raw])
    kept = _stacks.get(key)
    if kept is None:
        kept = raw
        if len(_stacks) < _MAX_SHARED_STACKS:
            _stacks[key] = raw
    return kept


def _site(raw: RawHeader) -> Frame:
    code = raw[3]
    return Frame(code.co_filename, raw[4], code.co_name)


class PoolFactory:
    """Creates pools, enforces the total limit, and keeps statistics (one per endpoint).

    ``malloc_debug`` defaults to the ``INVSESS_MALLOC_DEBUG`` environment variable.
    ``stack_depth`` is how many frames a debug report keeps for each stack;
    ``quarantine_size`` how many recent frees :attr:`quarantine` remembers.
    """

    def __init__(
        self,
        *,
        total_size: int = DEFAULT_TOTAL_SIZE,
        malloc_debug: bool | None = None,
        stack_depth: int = 4,
        quarantine_size: int = 1024,
    ) -> None:
        if total_size <= 0:
            raise ValueError("total_size must be positive")
        if stack_depth < 1:
            raise ValueError("stack_depth must be at least 1")
        self.total_size = total_size
        self.malloc_debug = malloc_debug_from_env() if malloc_debug is None else malloc_debug
        self.stack_depth = stack_depth
        #: The most recent frees (pool name, reason, stack, context), newest last.
        self.quarantine: deque[FreeRecord] = deque(maxlen=quarantine_size)
        # Live pools in creation order, an intrusive doubly linked list (Pool._prev/_next).
        self._first: Pool | None = None
        self._last: Pool | None = None
        self._live = 0
        self._serial = 0
        self._next_block_id = 0
        self._used = 0
        self._reserved = 0
        self._max_reserved = 0
        self._fragments = 0
        #: Without MALLOC_DEBUG: pools released while blocks in them were still referenced
        #: (the newest ``quarantine_size``); the leak report shows them as warnings.
        self._dangling: deque[DanglingReference] = deque(maxlen=quarantine_size)

    def __repr__(self) -> str:
        mode = "MALLOC_DEBUG" if self.malloc_debug else "normal"
        return f"<PoolFactory {mode} {self._live} pools, {self._used} bytes used>"

    def create_pool(
        self,
        name: str,
        capacity: int = DEFAULT_CAPACITY,
        increment: int = DEFAULT_INCREMENT,
        *,
        max_size: int | None = None,
    ) -> Pool:
        """A new pool with ``capacity`` bytes reserved now, growing by ``increment`` (0: never).

        Raises :class:`PoolExhaustedError` if the factory cannot reserve ``capacity``.
        """
        if capacity <= 0 or increment < 0:
            raise ValueError("capacity must be positive and increment non-negative")
        if max_size is not None and max_size < capacity:
            raise ValueError("max_size must be at least capacity")
        capacity = (capacity + ALIGNMENT - 1) & -ALIGNMENT  # align(), inline: one pool per message
        reserved = self._reserved + capacity
        if reserved > self.total_size:
            self._reserve(capacity, name)  # raises PoolExhaustedError
        self._reserved = reserved
        self._fragments += 1
        self._max_reserved = max(self._max_reserved, reserved)
        self._serial += 1
        created: tuple[RawFrame, ...] | None
        if self.malloc_debug:
            created = _shared_stack(capture_raw_stack(self.stack_depth))
        else:  # the hot path: where the caller is, looked up by an int (see _shared_stack)
            frame = _getframe(1)
            code, line = frame.f_code, frame.f_lineno
            created = _stacks.get(id(code) << 32 | line) if _skip_code.get(id(code)) is False else None
            if created is None:
                created = _shared_stack(capture_raw_stack(1))
        pool = Pool(
            self,
            name,
            capacity=capacity,
            increment=(increment + ALIGNMENT - 1) & -ALIGNMENT,
            max_size=max_size,
            serial=self._serial,
            created=created,
        )
        last = self._last
        pool._prev = last
        if last is None:
            self._first = pool
        else:
            last._next = pool
        self._last = pool
        self._live += 1
        return pool

    def _iter_pools(self) -> Iterator[Pool]:
        pool = self._first
        while pool is not None:
            nxt = pool._next  # read first: a caller may release the pool it is given
            yield pool
            pool = nxt

    def _reserve(self, nbytes: int, pool_name: str) -> None:
        if self._reserved + nbytes > self.total_size:
            raise PoolExhaustedError(
                f"factory limit {self.total_size} reached: pool {pool_name!r} asked for "
                f"{nbytes} bytes, {self.total_size - self._reserved} free",
                pool_name=pool_name,
                requested=nbytes,
            )
        self._reserved += nbytes
        self._fragments += 1
        self._max_reserved = max(self._max_reserved, self._reserved)

    def _pool_released(self, pool: Pool, record: FreeRecord | None) -> None:
        prev, nxt = pool._prev, pool._next
        if prev is None:
            self._first = nxt
        else:
            prev._next = nxt
        if nxt is None:
            self._last = prev
        else:
            nxt._prev = prev
        pool._prev = pool._next = None
        self._live -= 1
        self._used -= pool._used
        self._reserved -= pool._reserved
        self._fragments -= pool._chunks
        if self.malloc_debug and record is not None:
            self.quarantine.append(record)

    @property
    def pools(self) -> list[Pool]:
        """The live pools, oldest first."""
        return list(self._iter_pools())

    def statistics(self) -> MemoryStatistics:
        """Factory-wide figures with Kamailio's ``shmem`` names."""
        return MemoryStatistics(
            total_size=self.total_size,
            used_size=self._used,
            real_used_size=self._reserved,
            max_used_size=self._max_reserved,
            free_size=self.total_size - self._reserved,
            fragments=self._fragments,
        )

    def pool_statistics(self) -> list[PoolStatistics]:
        """One Kamailio ``pkg.stats``-shaped row per live pool."""
        return [pool.statistics(i) for i, pool in enumerate(self._iter_pools())]

    def snapshot(self) -> MemorySnapshot:
        """Live blocks grouped by allocation site now, for :meth:`MemorySnapshot.compare_to`."""
        rows = (
            (_site(raw_header(b)), type(b).__name__, raw_header(b)[2])
            for pool in self._iter_pools()
            for b in pool._blocks
        )
        return MemorySnapshot(group_sites(rows), self.statistics())

    def leak_report(self, *, ignore: Callable[[Pool], bool] | None = None) -> LeakReport:
        """Live pools and their blocks grouped by allocation site, with reference holders.

        ``ignore`` excludes pools that are alive on purpose (e.g. the endpoint's own).
        """
        pools = [p for p in self._iter_pools() if ignore is None or not ignore(p)]
        grouped: dict[tuple[Any, str], tuple[list[int], set[str], dict[str, int]]] = {}
        for pool in pools:
            for block in pool._blocks:
                raw = raw_header(block)
                acc = grouped.setdefault((_site(raw), type(block).__name__), ([0, 0], set(), {}))
                acc[0][0] += 1
                acc[0][1] += raw[2]
                acc[1].add(pool.name)
                if isinstance(block, RefCounted):
                    for owner, n in block.ref_owners.items():
                        acc[2][owner] = acc[2].get(owner, 0) + n
        entries = [
            LeakEntry(site, type_name, cs[0], cs[1], tuple(sorted(names)), owners)
            for (site, type_name), (cs, names, owners) in grouped.items()
        ]
        entries.sort(key=lambda e: (-e.size, str(e.site), e.type_name))
        return LeakReport(tuple(entries), tuple(p.name for p in pools), tuple(self._dangling))

    @property
    def dangling(self) -> list[DanglingReference]:
        """Releases that left blocks referenced (recorded without MALLOC_DEBUG, which raises)."""
        return list(self._dangling)
