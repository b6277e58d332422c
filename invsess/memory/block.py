"""Blocks: the objects that live in a pool, and how a freed one is poisoned.

A :class:`Block` is any object allocated from a :class:`~invsess.memory.Pool`. Its header
(block id, pool, size, allocation site) rides in one slot as a plain tuple, built in nanoseconds;
:class:`BlockHeader` is its readable form, made only when someone asks. Under MALLOC_DEBUG the pool builds
the object from a *debug variant* of its class whose methods first check that the block is not
freed (so a bound method taken before the free still fails), and on release it swaps the
object's class for a *poisoned variant* whose every attribute access and special method raises
:class:`~invsess.memory.UseAfterFreeError`. Normal mode uses the plain class: no check is ever
made on an access, which is the "costs nothing when off" rule.

Poisoning swaps the class and keeps the header, which the report needs; the pool drops its own
reference at release, so a freed block lives only as long as a stale holder keeps it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

import attrs

from invsess.memory.report import (
    DoubleFreeError,
    Frame,
    FreeRecord,
    MemoryErrorReport,
    RawFrame,
    ReferenceHolder,
    ReferenceOwnerError,
    UseAfterFreeError,
    capture_raw_stack,
    capture_stack,
    hide_from_stacks,
    resolve,
)

if TYPE_CHECKING:
    from invsess.memory.pool import Pool

#: Every block's accounted size is a multiple of this, as in C allocators.
ALIGNMENT = 8

_T = TypeVar("_T")
_getframe = sys._getframe


#: A block's header, read out of its slots: (block id, pool, size, site code, site line, stack).
RawHeader = tuple[int, "Pool", int, Any, int, tuple[RawFrame, ...]]
#: Where a block was allocated: (code, line, debug stack); one tuple shared by every block
#: allocated at the same place (see :func:`shared_site`).
Site = tuple[Any, int, tuple[RawFrame, ...]]


@attrs.frozen
class BlockHeader:
    """Book-keeping for one block, readable; reachable even after the block is poisoned."""

    block_id: int
    pool: Pool
    type_name: str
    size: int
    site: Frame
    alloc_stack: tuple[Frame, ...]

    @property
    def freed(self) -> FreeRecord | None:
        """The release that freed this block, if it is freed (blocks die with their pool)."""
        return self.pool.free_record


def align(size: int) -> int:
    """Round ``size`` up to :data:`ALIGNMENT`."""
    return (size + ALIGNMENT - 1) & ~(ALIGNMENT - 1)


class Block:
    """Base class of everything allocated from a pool.

    Subclasses may be attrs classes or plain classes. ``block_size()`` gives the accounted size,
    deterministic for the same input; override it for objects whose size depends on content.
    """

    # The header lives in slots of the block itself (a tuple per block would cost more than the
    # block); the site is shared. Read it with header_of(): it stays readable when poisoned.
    __slots__ = ("_blk_id", "_blk_pool", "_blk_site", "_blk_size")
    _blk_id: int
    _blk_pool: Pool
    _blk_size: int
    _blk_site: Site
    #: True only on poisoned variants; the debug guards read it from the type, never the instance.
    _invsess_freed_: ClassVar[bool] = False
    #: True on MALLOC_DEBUG variants (and their poisoned subclasses).
    _invsess_debug_: ClassVar[bool] = False

    def block_size(self) -> int:
        """Accounted size in bytes: the instance layout of the class, aligned."""
        return align(type(self).__basicsize__)

    @property
    def block_header(self) -> BlockHeader:
        """The allocation header (id, pool, size, site)."""
        header = header_of(self)
        if header is None:
            raise AttributeError(f"{type(self).__name__} was not allocated from a pool")
        return header


def header_of(obj: object) -> BlockHeader | None:
    """The readable header of a block, freed or not, without touching it; None if not a block."""
    try:
        block_id, pool, size, code, line, stack = raw_header(obj)
    except AttributeError:
        return None
    site = Frame(code.co_filename, line, code.co_name)
    return BlockHeader(block_id, pool, type(obj).__name__, size, site, resolve(stack))


def raw_header(obj: object) -> RawHeader:
    """The header's fields, read past any poisoning (for the pool's own book-keeping)."""
    get = object.__getattribute__
    code, line, stack = get(obj, "_blk_site")
    return get(obj, "_blk_id"), get(obj, "_blk_pool"), get(obj, "_blk_size"), code, line, stack


def shared(table: dict[Any, Any], value: _T, bound: int) -> _T:
    """One object for every equal ``value`` kept in ``table`` (an allocation site, a stack): the
    blocks and pools made at the same place share it. Past ``bound`` distinct values (a program
    with unbounded distinct stacks), each keeps its own."""
    kept: _T | None = table.get(value)
    if kept is None:
        if len(table) >= bound:
            return value
        table[value] = kept = value
    return kept


_sites: dict[Any, Site] = {}
_MAX_SITES = 16384


def frame_key(code: CodeType, line: int) -> int:
    """A look-up key for (code, line) that is cheap to hash: code objects hash by content
    (hundreds of nanoseconds each), their ids in nanoseconds. Keys stay unique because the
    tables keyed by them keep the code objects alive."""
    return id(code) << 32 | line


def shared_site(site: Site) -> Site:
    """The one tuple of an allocation site (and stack)."""
    code, line, stack = site
    return site_of(code, line, stack)


def site_of(code: CodeType, line: int, stack: tuple[RawFrame, ...] = ()) -> Site:
    """The one tuple of the allocation site (``code``, ``line``) with its debug ``stack``,
    shared by every block allocated there (built once: the hot path of every allocation)."""
    key: Any = id(code) << 32 | line
    if stack:
        key = (key, *[id(c) << 32 | n for c, n in stack])
    kept = _sites.get(key)
    if kept is None:
        kept = (code, line, stack)
        if len(_sites) < _MAX_SITES:
            _sites[key] = kept
    return kept


_fixed_sizes: dict[type, int] = {}


def block_size_of(obj: Block) -> int:
    """The accounted size of ``obj``: cached per class unless the class overrides block_size."""
    cls = type(obj)
    size = _fixed_sizes.get(cls)
    if size is None:
        size = (obj.block_size() + ALIGNMENT - 1) & -ALIGNMENT
        if cls.block_size is Block.block_size:  # not overridden: the size depends on the class only
            _fixed_sizes[cls] = size
    return size


class RefCounted(Block):
    """A block with explicit, named reference counts.

    ``add_ref(owner)`` / ``dec_ref(owner)``: the object is destroyed (``_on_last_ref`` runs)
    exactly when the count reaches zero. A ``dec_ref`` when the count is already zero is a double
    free; a ``dec_ref`` by an owner that holds none, while others do, is a usage error. Destroying
    does not free memory: that happens when the pool the object lives in is released.
    """

    __slots__ = ("_ref_count", "_ref_destroyed", "_ref_owners", "_ref_taken")
    _ref_count: int
    #: One entry per reference held, naming its owner: a tuple of a few names is a fraction of
    #: the size of a dict, and every session and dialog has one.
    _ref_owners: tuple[str, ...]
    _ref_destroyed: tuple[str, tuple[RawFrame, ...]] | None
    #: MALLOC_DEBUG only: where each owner took its latest reference (for dangling-reference reports).
    _ref_taken: dict[str, tuple[RawFrame, ...]] | None
    #: How reports name this count, e.g. "dialog session count".
    ref_label: ClassVar[str] = "reference count"

    def __init__(self) -> None:
        self.__attrs_pre_init__()

    def __attrs_pre_init__(self) -> None:
        # attrs subclasses do not call super().__init__(); attrs calls this hook instead.
        self._ref_count = 0
        self._ref_owners = ()
        self._ref_destroyed = None
        self._ref_taken = None

    @property
    def ref_count(self) -> int:
        """The number of references held, by all owners."""
        return self._ref_count

    @property
    def ref_owners(self) -> dict[str, int]:
        """Who holds references, and how many each (a new dict)."""
        owners: dict[str, int] = {}
        for owner in self._ref_owners:
            owners[owner] = owners.get(owner, 0) + 1
        return owners

    def reference_holders(self) -> tuple[ReferenceHolder, ...]:
        """Who holds references now, and (under MALLOC_DEBUG) where each took its latest one."""
        taken = self._ref_taken or {}
        return tuple(
            ReferenceHolder(owner, n, resolve(taken.get(owner, ()))) for owner, n in self.ref_owners.items()
        )

    def add_ref(self, owner: str) -> int:
        """Take a reference on behalf of ``owner``; returns the new count."""
        if self._ref_destroyed is not None:
            raise ReferenceOwnerError(
                f"add_ref({owner!r}) on {type(self).__name__} that was already destroyed "
                f"({self.ref_label} reached 0)"
            )
        self._ref_owners = (*self._ref_owners, owner)
        self._ref_count += 1
        if type(self)._invsess_debug_:
            taken = self._ref_taken
            if taken is None:
                taken = self._ref_taken = {}
            taken[owner] = capture_raw_stack(_TAKEN_STACK_DEPTH, depth=1)
        return self._ref_count

    def dec_ref(self, owner: str) -> int:
        """Drop a reference held by ``owner``; destroys the object when the count reaches 0."""
        if owner not in self._ref_owners:
            if self._ref_count == 0:
                first = None
                if self._ref_destroyed is not None:
                    why, raw = self._ref_destroyed
                    first = FreeRecord(f"destruction of {type(self).__name__}", why, resolve(raw), {})
                raise_double_free(self, f"dec_ref({owner!r}) with {self.ref_label} 0", first)
            raise ReferenceOwnerError(
                f"{owner!r} holds no reference to {type(self).__name__}; held by {self.ref_owners}"
            )
        owners = self._ref_owners
        i = owners.index(owner)
        self._ref_owners = owners = owners[:i] + owners[i + 1 :]
        if self._ref_taken is not None and owner not in owners:
            self._ref_taken.pop(owner, None)
        old = self._ref_count
        self._ref_count = old - 1
        if old == 1 and self._ref_destroyed is None:  # (set already: destroyed with its pool)
            reason = f"{self.ref_label} 1 -> 0 (dec_ref by {owner!r})"
            self._ref_destroyed = _destroy_record(self, reason)
            self._on_last_ref(reason)
        return old - 1

    def destroy_with_pool(self, reason: str) -> None:
        """The pool this object lives in is being released while it is still referenced: it is
        destroyed with it (``_on_last_ref`` runs now, so what it owns goes too, instead of
        leaking behind the freed object), and never again by a stale ``dec_ref``."""
        if self._ref_destroyed is None:
            self._ref_destroyed = _destroy_record(self, reason)
            self._on_last_ref(reason)

    def _on_last_ref(self, reason: str) -> None:
        """Called once, when the count reaches zero; subclasses release what they hold."""


#: Frames kept for "first freed at" of a reference count: the pool release keeps the full stack.
_DESTROY_STACK_DEPTH = 2
#: Frames kept for where a reference was taken: the caller of add_ref and its caller.
_TAKEN_STACK_DEPTH = 2


def _destroy_record(obj: RefCounted, reason: str) -> tuple[str, tuple[RawFrame, ...]]:
    # Kept raw: this runs on every object's last dec_ref; the FreeRecord is built only on report.
    if type(obj)._invsess_debug_:
        return reason, capture_raw_stack(_DESTROY_STACK_DEPTH, depth=3)
    frame = _getframe(2)  # the caller of dec_ref: no guard frame in between in normal mode
    return reason, ((frame.f_code, frame.f_lineno),)


# ---------------------------------------------------------------------------------------------
# Debug and poisoned variants

_debug_variants: dict[type, type] = {}
_poisoned_variants: dict[type, type] = {}
# Construction happens before any free, and block_size runs inside alloc: guarding them buys nothing.
_NOT_GUARDED = frozenset(
    {
        "__init__",
        "__init_subclass__",
        "__class_getitem__",
        "__new__",
        "__attrs_pre_init__",
        "__attrs_post_init__",
        "block_size",
    }
)

#: Special methods that Python looks up on the type, bypassing __getattribute__.
_SPECIAL_METHODS = (
    "__repr__", "__str__", "__format__", "__bytes__", "__bool__", "__len__", "__length_hint__",
    "__iter__", "__next__", "__reversed__", "__contains__", "__getitem__", "__setitem__",
    "__delitem__", "__missing__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "__hash__", "__call__", "__enter__", "__exit__", "__await__", "__aiter__", "__anext__",
    "__aenter__", "__aexit__", "__int__", "__float__", "__index__", "__add__", "__radd__",
    "__copy__", "__deepcopy__", "__reduce__", "__reduce_ex__", "__getstate__", "__setstate__",
    "__sizeof__", "__dir__", "__fspath__", "__buffer__",
)  # fmt: skip


def debug_variant(cls: type[_T]) -> type[_T]:
    """The subclass of ``cls`` whose methods refuse to run on a freed block (cached)."""
    variant = _debug_variants.get(cls)
    if variant is None:
        ns: dict[str, Any] = {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "_invsess_debug_": True,
        }
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, FunctionType) and name not in _NOT_GUARDED:
                    ns[name] = _guard(attr)
        variant = type(cls.__name__, (cls,), ns)
        _debug_variants[cls] = variant
    return variant


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = fn.__name__

    def guarded(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        if type(self)._invsess_freed_:
            raise_use_after_free(self, f"call of {name}()")
        return fn(self, *args, **kwargs)

    guarded.__name__ = name
    guarded.__qualname__ = fn.__qualname__
    guarded.__doc__ = fn.__doc__
    guarded.__wrapped__ = fn  # type: ignore[attr-defined]
    return guarded


hide_from_stacks(_guard(len).__code__)


def _poisoned_variant(cls: type) -> type:
    variant = _poisoned_variants.get(cls)
    if variant is None:
        ns: dict[str, Any] = {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "_invsess_freed_": True,
            "__getattribute__": _poisoned_getattribute,
            "__setattr__": _poisoned_setattr,
            "__delattr__": _poisoned_delattr,
        }
        for special in _SPECIAL_METHODS:
            ns[special] = _poisoned_special(special)
        variant = type(cls.__name__, (cls,), ns)
        _poisoned_variants[cls] = variant
    return variant


def _poisoned_getattribute(self: Any, name: str) -> Any:  # noqa: RET503 - the raise never returns
    if name == "__class__":  # isinstance() falls back to it; that is not a touch of the block
        return type(self)
    raise_use_after_free(self, f"read of attribute {name!r}")


def _poisoned_setattr(self: Any, name: str, value: Any) -> None:
    raise_use_after_free(self, f"write of attribute {name!r}")


def _poisoned_delattr(self: Any, name: str) -> None:
    raise_use_after_free(self, f"delete of attribute {name!r}")


def _poisoned_special(name: str) -> Callable[..., Any]:
    def special(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise_use_after_free(self, f"{name}()")

    special.__name__ = name
    return special


def poison(block: Block) -> None:
    """Mark ``block`` freed: swap its class for the poisoned variant; every later touch raises.

    The state is left in place, unreachable through Python's attribute machinery: the pool has
    dropped its own reference, so the memory goes as soon as the last stale holder lets go.
    """
    object.__setattr__(block, "__class__", _poisoned_variant(type(block)))


def _report(obj: Any, kind: str, access: str, first: FreeRecord | None = None) -> MemoryErrorReport:
    header = header_of(obj)
    depth = header.pool.factory.stack_depth if header is not None else 16
    where = capture_stack(depth, depth=4)
    if header is None:
        return MemoryErrorReport(kind, access, type(obj).__name__, None, "?", where, (), first)
    alloc = header.alloc_stack or (header.site,)
    return MemoryErrorReport(
        kind, access, header.type_name, header.block_id, header.pool.name, where, alloc, header.freed or first
    )


def raise_use_after_free(obj: Any, access: str) -> NoReturn:
    """Raise :class:`UseAfterFreeError` for a touch of the freed block ``obj``."""
    raise UseAfterFreeError(_report(obj, "use-after-free", access))


def raise_double_free(obj: Any, access: str, first: FreeRecord | None) -> NoReturn:
    """Raise :class:`DoubleFreeError` for a second release of ``obj``; ``first`` is the first."""
    raise DoubleFreeError(_report(obj, "double-free", access, first))


def is_freed(obj: object) -> bool:
    """True if ``obj`` is a poisoned block (never raises, never touches the block)."""
    return bool(getattr(type(obj), "_invsess_freed_", False))


__all__ = [
    "ALIGNMENT",
    "Block",
    "BlockHeader",
    "RefCounted",
    "align",
    "block_size_of",
    "debug_variant",
    "header_of",
    "shared",
    "shared_site",
    "site_of",
    "frame_key",
    "is_freed",
    "poison",
    "raise_double_free",
    "raise_use_after_free",
]
