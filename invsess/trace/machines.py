"""State diagrams drawn from the transition tables themselves (h11's make-state-diagrams idea).

Every machine in invsess is a table: ``{(state, input): next_state}``, or, in the typed form,
``{(state, Input.X): (next_state, effect)}``. :func:`read_table` reads either shape into
:class:`Transition` rows; :func:`mermaid` draws them as a Mermaid ``stateDiagram-v2`` and
:func:`markdown_table` lists them, so documentation generated from the tables changes when a
table does. Nothing here runs a machine.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class Transition:
    """One row of a table: from ``source`` on ``input`` to ``target`` (doing ``effect``)."""

    source: str
    input: str
    target: str
    effect: str | None = None


def _label(value: Any) -> str:
    """An input or effect as text: an enum member by its value when that is text (its label,
    "send ACK"), else as :func:`_name` gives it."""
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        return value.value
    return _name(value)


def _name(value: Any) -> str:
    """A state as text: an enum member by its name, a function by its name."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str):
        return value
    return str(getattr(value, "__name__", None) or getattr(value, "name", None) or value)


def read_table(table: Mapping[Any, Any]) -> list[Transition]:
    """The rows of ``table``, in its own order. Keys are ``(state, input)`` with a str or enum
    input; values a bare next state or a tuple whose first item is it (and whose second, if
    any, is the effect)."""
    rows = []
    for key, value in table.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"a transition table is keyed by (state, input), not {key!r}")
        state, inp = key
        effect = None
        if isinstance(value, tuple):
            if not value:
                raise ValueError(f"empty transition for {key!r}")
            target = value[0]
            if len(value) > 1 and value[1] is not None:
                effect = _label(value[1])
        else:
            target = value
        rows.append(Transition(_name(state), _label(inp), _name(target), effect))
    return rows


def states_of(table: Mapping[Any, Any]) -> list[str]:
    """The states in their enum's order when the states are enum members (else first seen)."""
    first = next(iter(table), None)
    if first is not None and isinstance(first[0], enum.Enum):
        return [member.name for member in type(first[0])]
    seen: dict[str, None] = {}
    for row in read_table(table):
        seen.setdefault(row.source)
        seen.setdefault(row.target)
    return list(seen)


def _mermaid_text(text: str) -> str:
    # Mermaid reads ':' and ';' in a label as syntax; its entity codes print them.
    return text.replace(";", "#59;").replace(":", "#58;")


def mermaid(table: Mapping[Any, Any], *, initial: str | None = None) -> str:
    """The table as a Mermaid ``stateDiagram-v2``: one edge per (source, target) pair with every
    input that takes it; ``initial`` (default: the first state) gets the start arrow, states
    without a way out the end arrow."""
    rows = read_table(table)
    states = states_of(table)
    used = {r.source for r in rows} | {r.target for r in rows}
    edges: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        plain = row.effect is None or row.effect == "move"  # an edge's ordinary meaning
        label = row.input if plain else f"{row.input} / {row.effect}"
        edges.setdefault((row.source, row.target), []).append(label)
    lines = ["stateDiagram-v2", "    direction LR"]
    lines += [f'    state "{s}" as s_{s}' for s in states if s in used]
    start = initial or next((s for s in states if s in used), None)
    if start is not None:
        lines.append(f"    [*] --> s_{start}")
    for (source, target), labels in edges.items():
        lines.append(f"    s_{source} --> s_{target} : {_mermaid_text(', '.join(labels))}")
    exits = {r.source for r in rows if r.target != r.source}
    lines += [f"    s_{s} --> [*]" for s in states if s in used and s not in exits]
    return "\n".join(lines)


def markdown_table(table: Mapping[Any, Any]) -> str:
    """The table as a Markdown table: state, input, next state (and effect when there are any)."""
    rows = read_table(table)
    with_effects = any(r.effect is not None for r in rows)
    head = "| state | input | next state |" + (" effect |" if with_effects else "")
    rule = "|---|---|---|" + ("---|" if with_effects else "")
    lines = [head, rule]
    for r in rows:
        line = f"| {r.source} | {r.input} | {r.target} |"
        if with_effects:
            line += f" {r.effect or ''} |"
        lines.append(line)
    return "\n".join(lines)


__all__ = ["Transition", "markdown_table", "mermaid", "read_table", "states_of"]
