"""Stacks, free records and the AddressSanitizer-shaped reports of memory errors.

This module owns what a memory error *says*: where something was allocated, who freed it and
why, and where the bad touch happened. It never decides whether a touch is bad; the pool and
the poisoning code do that and hand it the facts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import CodeType, FrameType
from typing import Any

import attrs

from invsess.errors import InvsessError, UsageError

#: Frames from files in this folder are the allocator itself: a report starts below them.
_MEMORY_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: The folder holding the ``invsess`` package: its frames print as ``invsess/...`` wherever it is
#: installed, so a report reads the same from a checkout, a wheel, or another working directory.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
_PACKAGE_DIR = _PACKAGE_PARENT + "invsess" + os.sep


@attrs.frozen
class Frame:
    """One line of a captured stack: ``file:line in function``."""

    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f"{_short_path(self.filename)}:{self.lineno} in {self.function}"


def _short_path(path: str) -> str:
    """How a report prints a file: ``invsess/...`` for the library's own files wherever it is
    installed; other files relative to the working directory when they are below it."""
    absolute = os.path.abspath(path)
    if absolute.startswith(_PACKAGE_DIR):
        return absolute[len(_PACKAGE_PARENT) :].replace(os.sep, "/")
    try:
        rel = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel


#: Per code object: should a captured stack leave this frame out? (the allocator, the guards)
#: Keyed by id(): code objects hash by content, which costs more than the whole look-up should.
#: The codes marked True belong to this package's modules and live as long as the process.
_skip_code: dict[int, bool] = {}


def hide_from_stacks(code: CodeType) -> None:
    """Leave frames running ``code`` out of every captured stack (for wrappers)."""
    _skip_code[id(code)] = True


def _skipped(code: CodeType) -> bool:
    skip = _skip_code[id(code)] = code.co_filename.startswith(_MEMORY_DIR)
    return skip


#: A frame as captured on a hot path: the code object and the line; resolved to a Frame on report.
RawFrame = tuple[CodeType, int]


def capture_raw_stack(limit: int, depth: int = 2) -> tuple[RawFrame, ...]:
    """Up to ``limit`` (code, line) pairs, innermost first, starting outside :mod:`invsess.memory`."""
    frame: FrameType | None = sys._getframe(depth)
    out: list[RawFrame] = []
    skip = _skip_code
    left = limit
    while frame is not None:
        code = frame.f_code
        hidden = skip.get(id(code))
        if hidden is None:
            hidden = _skipped(code)
        if not hidden:
            out.append((code, frame.f_lineno))
            left -= 1
            if not left:
                break
        frame = frame.f_back
    return tuple(out)


def resolve(raw: tuple[RawFrame, ...]) -> tuple[Frame, ...]:
    """Turn captured (code, line) pairs into printable frames."""
    return tuple(Frame(code.co_filename, line, code.co_name) for code, line in raw)


def capture_stack(limit: int, depth: int = 3) -> tuple[Frame, ...]:
    """Up to ``limit`` frames, innermost first, starting outside :mod:`invsess.memory`."""
    return resolve(capture_raw_stack(limit, depth))


@attrs.frozen
class FreeRecord:
    """What happened when a pool was released: the stack, the reason and the SIP context."""

    event: str
    reason: str
    stack: tuple[Frame, ...]
    context: Mapping[str, Any]


@attrs.frozen
class MemoryErrorReport:
    """A use-after-free or double-free, told the way AddressSanitizer tells it.

    ``access`` says what the bad touch did (``read of attribute 'state'``); ``where`` is the
    stack of that touch; ``allocated_at`` and ``freed`` say where the block came from and who
    released it and why. ``context`` is the SIP context captured when the block was freed
    (Call-ID, tags, state), filled by the layer that owns the pool.
    """

    kind: str
    access: str
    type_name: str
    block_id: int | None
    pool_name: str
    where: tuple[Frame, ...]
    allocated_at: tuple[Frame, ...]
    freed: FreeRecord | None

    @property
    def context(self) -> Mapping[str, Any]:
        """SIP context at free time (empty when the owner of the pool gave none)."""
        return self.freed.context if self.freed is not None else {}

    def format(self) -> str:
        """The multi-line report."""
        block = f" block #{self.block_id}" if self.block_id is not None else ""
        lines = [
            f"==invsess== ERROR: {self.kind}: {self.access} on {self.type_name}{block}"
            f" in pool {self.pool_name!r}",
        ]
        lines += _stack_lines(self.where)
        if self.freed is not None:
            what = "freed" if self.kind == "use-after-free" else "first freed"
            lines.append(f"{what} by {self.freed.event} ({self.freed.reason}) at:")
            lines += _stack_lines(self.freed.stack)
        if self.allocated_at:
            lines.append("previously allocated by:")
            lines += _stack_lines(self.allocated_at)
        if self.context:
            ctx = ", ".join(f"{k}={v}" for k, v in self.context.items())
            lines.append(f"SIP context at free time: {ctx}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _stack_lines(stack: tuple[Frame, ...]) -> list[str]:
    return [f"    #{i} {frame}" for i, frame in enumerate(stack)]


def first_outside_library(stack: tuple[Frame, ...]) -> Frame | None:
    """The innermost frame that is not invsess's own (the application's line), else the first."""
    for frame in stack:
        if not os.path.abspath(frame.filename).startswith(_PACKAGE_DIR):
            return frame
    return stack[0] if stack else None


@attrs.frozen
class ReferenceHolder:
    """An owner still holding references on a block: how many, and (MALLOC_DEBUG) where the
    last one was taken."""

    owner: str
    count: int
    taken_at: tuple[Frame, ...]


@attrs.frozen
class DanglingReference:
    """A block that was still referenced when its pool was released: whoever holds those
    references now holds freed memory (the wrong-order release, caught at the release itself).

    ``released`` is the release (its stack, reason and SIP context); ``holders`` who still
    held references, and under MALLOC_DEBUG where they took them.
    """

    type_name: str
    block_id: int
    pool_name: str
    holders: tuple[ReferenceHolder, ...]
    allocated_at: tuple[Frame, ...]
    released: FreeRecord

    def _held_by(self) -> str:
        return ", ".join(f"{h.owner!r} x{h.count}" for h in self.holders)

    def format(self) -> str:
        """The multi-line report, shaped like a use-after-free report."""
        lines = [
            f"==invsess== ERROR: dangling-reference: pool {self.pool_name!r} released while "
            f"{self.type_name} block #{self.block_id} in it is still referenced by {self._held_by()}",
        ]
        lines += _stack_lines(self.released.stack)
        lines.append(f"release reason: {self.released.reason}")
        for holder in self.holders:
            if holder.taken_at:
                lines.append(f"reference {holder.owner!r} x{holder.count} taken at:")
                lines += _stack_lines(holder.taken_at)
            else:
                lines.append(
                    f"reference {holder.owner!r} x{holder.count} (where it was taken: run with MALLOC_DEBUG)"
                )
        if self.allocated_at:
            lines.append("previously allocated by:")
            lines += _stack_lines(self.allocated_at)
        if self.released.context:
            ctx = ", ".join(f"{k}={v}" for k, v in self.released.context.items())
            lines.append(f"SIP context at free time: {ctx}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line, for the warnings of a leak report."""
        where = first_outside_library(self.released.stack)
        at = f" at {where}" if where is not None else ""
        return (
            f"pool {self.pool_name!r} was released{at} while {self.type_name} block #{self.block_id} "
            f"was still referenced by {self._held_by()} ({self.released.reason})"
        )

    def __str__(self) -> str:
        return self.format()


class PoolError(InvsessError):
    """Base of the memory layer's errors."""


class PoolExhaustedError(PoolError):
    """An allocation would go past a pool's or the factory's limit.

    Callers turn it into a SIP 503 or 500; it is never a :class:`MemoryError`.
    """

    def __init__(self, message: str, *, pool_name: str, requested: int) -> None:
        super().__init__(message)
        self.pool_name = pool_name
        self.requested = requested


class MemoryCorruptionError(PoolError):
    """A touch of memory that the rules forbid; carries a :class:`MemoryErrorReport`."""

    def __init__(self, report: MemoryErrorReport) -> None:
        super().__init__(report.format())
        self.report = report


class UseAfterFreeError(MemoryCorruptionError):
    """A block was touched after its pool was released."""


class DoubleFreeError(MemoryCorruptionError):
    """A released pool was released again, or a reference count went below zero."""


class DanglingReferenceError(PoolError):
    """MALLOC_DEBUG: a pool was released while blocks in it were still referenced.

    Raised by :meth:`Pool.release` after the release is complete (the pool is freed, its blocks
    poisoned): whoever holds those references holds freed memory. ``report`` is the first
    :class:`DanglingReference`, ``reports`` all of them. Without MALLOC_DEBUG the same facts
    become warnings of the factory's leak report instead.
    """

    def __init__(self, reports: tuple[DanglingReference, ...]) -> None:
        super().__init__("\n".join(r.format() for r in reports))
        self.reports = reports
        self.report = reports[0]


class ReferenceOwnerError(UsageError):
    """``dec_ref(owner)`` by an owner that holds no reference (while others still do)."""
