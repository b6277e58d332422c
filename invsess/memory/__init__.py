"""The memory model: pools, blocks, explicit reference counts, MALLOC_DEBUG, leak reports.

Semantics follow PJSIP (``pjlib/pool*.c``, ``sip_dialog.c``, ``sip_inv.c``): every dialog owns
a pool, its INVITE session is allocated from that pool, and both live under explicit reference
counts. In MALLOC_DEBUG mode a freed block is poisoned, so a wrong-order release fails at the
first touch with a report that says what was touched, where it was allocated, who freed it and
why. See ``docs/memory.md``.
"""

from invsess.memory.block import ALIGNMENT, Block, BlockHeader, RefCounted, align, is_freed
from invsess.memory.buffer import Buffer
from invsess.memory.pool import (
    DEFAULT_CAPACITY,
    DEFAULT_INCREMENT,
    DEFAULT_TOTAL_SIZE,
    Pool,
    PoolFactory,
    malloc_debug_from_env,
)
from invsess.memory.report import (
    DanglingReference,
    DanglingReferenceError,
    DoubleFreeError,
    Frame,
    FreeRecord,
    MemoryCorruptionError,
    MemoryErrorReport,
    PoolError,
    PoolExhaustedError,
    ReferenceHolder,
    ReferenceOwnerError,
    UseAfterFreeError,
)
from invsess.memory.stats import (
    LeakEntry,
    LeakReport,
    MemorySnapshot,
    MemoryStatistics,
    PoolStatistics,
    SiteDiff,
    SiteStatistics,
    SnapshotDiff,
)

__all__ = [
    "ALIGNMENT",
    "DEFAULT_CAPACITY",
    "DEFAULT_INCREMENT",
    "DEFAULT_TOTAL_SIZE",
    "Block",
    "BlockHeader",
    "Buffer",
    "DanglingReference",
    "DanglingReferenceError",
    "DoubleFreeError",
    "Frame",
    "FreeRecord",
    "LeakEntry",
    "LeakReport",
    "MemoryCorruptionError",
    "MemoryErrorReport",
    "MemorySnapshot",
    "MemoryStatistics",
    "Pool",
    "PoolError",
    "PoolExhaustedError",
    "PoolFactory",
    "PoolStatistics",
    "ReferenceHolder",
    "ReferenceOwnerError",
    "RefCounted",
    "SiteDiff",
    "SiteStatistics",
    "SnapshotDiff",
    "UseAfterFreeError",
    "align",
    "is_freed",
    "malloc_debug_from_env",
]
