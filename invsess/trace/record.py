"""Recording what happened: every message sent or received and every state change, timestamped.

A :class:`Trace` is a list of events that round-trips through JSON lines (one event per line,
message bytes kept exactly, in base64, beside a readable first line), so a trace written by a
test, a live endpoint or the simulated network can be drawn later with ``invsess ladder``.
"""

from __future__ import annotations

import base64
import json
import re
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

    @property
    def call_id(self) -> str | None:
        """The Call-ID (``i:`` too) of the message, read without parsing the rest of it."""
        head = self.data.split(b"\r\n\r\n", 1)[0]
        match = _CALL_ID.search(head)
        return match.group(1).decode("utf-8", "replace") if match else None

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
    #: The call whose machine it is (a session's), when there is one.
    call_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form."""
        out: dict[str, Any] = {
            "kind": "state",
            "time": self.time,
            "where": format_address(self.where),
            "what": self.what,
            "old": self.old,
            "new": self.new,
        }
        if self.call_id is not None:
            out["call_id"] = self.call_id
        return out


TraceEvent = MessageEvent | StateEvent
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def _event(obj: dict[str, Any]) -> TraceEvent:
    if obj["kind"] == "message":
        data = base64.b64decode(obj["data"], validate=True)
        source, destination = parse_address(obj["source"]), parse_address(obj["destination"])
        return MessageEvent(
            float(obj["time"]), source, destination, obj["transport"], data, obj.get("fate", "delivered")
        )
    if obj["kind"] == "state":
        where, call_id = parse_address(obj["where"]), obj.get("call_id")
        return StateEvent(float(obj["time"]), where, obj["what"], obj["old"], obj["new"], call_id)
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

    def state(  # noqa: PLR0917 - the fields of a state event, in their natural order
        self, time: float, where: Address, what: str, old: str, new: str, call_id: str | None = None
    ) -> None:
        """Record a state change (of ``call_id``'s session, when given)."""
        self.events.append(StateEvent(time, where, what, old, new, call_id))

    def messages(self) -> list[MessageEvent]:
        """The message events only."""
        return [e for e in self.events if isinstance(e, MessageEvent)]

    def call_ids(self) -> list[str]:
        """The Call-IDs of the messages, in order of first appearance."""
        seen: dict[str, None] = {}
        for e in self.events:
            call_id = e.call_id
            if call_id is not None:
                seen.setdefault(call_id, None)
        return list(seen)

    def for_call(self, call_id: str) -> Trace:
        """The events of one call: its messages and its session's state changes."""
        return Trace([e for e in self.events if e.call_id == call_id])

    def rebased(self) -> Trace:
        """The same events, timed from the first one (which is at 0.000)."""
        if not self.events:
            return Trace()
        origin = self.events[0].time
        return Trace([attrs.evolve(e, time=e.time - origin) for e in self.events])

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
