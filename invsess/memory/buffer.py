"""Byte buffers as pool blocks: received messages and bodies are accounted where they live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import overload

from invsess.memory.block import Block


class Buffer(Block):
    """Immutable bytes allocated from a pool; its accounted size is its length.

    Under MALLOC_DEBUG a released buffer is poisoned like any block, so a parser that keeps a
    view into a freed message buffer fails at the first touch.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def block_size(self) -> int:
        """Header plus payload, as a C allocator would charge it."""
        return 16 + len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def __iter__(self) -> Iterator[int]:
        return iter(self.data)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> bytes: ...
    def __getitem__(self, index: int | slice) -> int | bytes:
        return self.data[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Buffer):
            return self.data == other.data
        if isinstance(other, (bytes, bytearray, memoryview)):
            return self.data == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        return f"Buffer({self.data[:32]!r}{'...' if len(self.data) > 32 else ''})"
