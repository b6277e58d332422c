"""Recording what happened: every message sent or received and every state change, timestamped.

A :class:`Trace` is a list of events that round-trips through JSON lines (one event per line,
message bytes kept exactly, in base64, beside a readable first line), so a trace written by a
test, a live endpoint or the simulated network can be drawn later with ``invsess ladder``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from invsess.address import Address, format_address, parse_address


@attrs.frozen
class MessageEvent:
    """One SIP message on the wire (``fate``: delivered, lost, duplicated, partitioned...)."""

    time: float
    source: Address
    destination: Address
    transport: str
    data: bytes
    fate: str = "delivered"

    @property
    def first_line(self) -> str:
        """The start line."""
        return self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form."""
        return {
            "kind": "message",
            "time": self.time,
            "source": format_address(self.source),
            "destination": format_address(self.destination),
            "transport": self.transport,
            "fate": self.fate,
            "line": self.first_line,
            "data": base64.b64encode(self.data).decode("ascii"),
        }


@attrs.frozen
class StateEvent:
    """A state change of some machine (a transaction, a session) at one participant."""

    time: float
    where: Address
    what: str
    old: str
    new: str

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form."""
        return {
            "kind": "state",
            "time": self.time,
            "where": format_address(self.where),
            "what": self.what,
            "old": self.old,
            "new": self.new,
        }


TraceEvent = MessageEvent | StateEvent


def _event(obj: dict[str, Any]) -> TraceEvent:
    if obj["kind"] == "message":
        data = base64.b64decode(obj["data"], validate=True)
        source, destination = parse_address(obj["source"]), parse_address(obj["destination"])
        return MessageEvent(
            float(obj["time"]), source, destination, obj["transport"], data, obj.get("fate", "delivered")
        )
    if obj["kind"] == "state":
        return StateEvent(
            float(obj["time"]), parse_address(obj["where"]), obj["what"], obj["old"], obj["new"]
        )
    raise ValueError(f"unknown kind {obj['kind']!r}")


@attrs.define
class Trace:
    """An ordered list of trace events."""

    events: list[TraceEvent] = attrs.field(factory=list)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def message(  # noqa: PLR0917 - the fields of a message event, in their natural order
        self,
        time: float,
        source: Address,
        destination: Address,
        transport: str,
        data: bytes,
        fate: str = "delivered",
    ) -> None:
        """Record a message."""
        self.events.append(MessageEvent(time, source, destination, transport, bytes(data), fate))

    def state(self, time: float, where: Address, what: str, old: str, new: str) -> None:
        """Record a state change."""
        self.events.append(StateEvent(time, where, what, old, new))

    def messages(self) -> list[MessageEvent]:
        """The message events only."""
        return [e for e in self.events if isinstance(e, MessageEvent)]

    def participants(self) -> list[Address]:
        """Every address that appears, in order of first appearance."""
        seen: dict[Address, None] = {}
        for e in self.events:
            for addr in (e.source, e.destination) if isinstance(e, MessageEvent) else (e.where,):
                seen.setdefault(addr, None)
        return list(seen)

    def dumps(self) -> str:
        """JSON lines."""
        return "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in self.events)

    def write(self, path: str | Path) -> None:
        """Write JSON lines to ``path``."""
        Path(path).write_text(self.dumps(), encoding="utf-8")

    @classmethod
    def loads(cls, text: str) -> Trace:
        """Read JSON lines (raises ValueError with the line number on bad input)."""
        trace = cls()
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    trace.events.append(_event(json.loads(line)))
                except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
                    raise ValueError(f"trace line {number}: {exc}") from None
        return trace

    @classmethod
    def read(cls, path: str | Path) -> Trace:
        """Read JSON lines from ``path``."""
        return cls.loads(Path(path).read_text(encoding="utf-8"))
