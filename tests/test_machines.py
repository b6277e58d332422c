"""State diagrams read from the transition tables, in today's shape and in the typed one."""

from __future__ import annotations

import enum

import pytest

from invsess.inv import TRANSITIONS
from invsess.sdp import SdpNegotiator
from invsess.trace.machines import Transition, markdown_table, mermaid, read_table, states_of
from invsess.transaction import ClientInviteTransaction


class S(enum.Enum):
    IDLE = "IDLE"
    BUSY = "BUSY"
    DONE = "DONE"


class Input(enum.Enum):
    START = enum.auto()
    FINISH = enum.auto()


def start_work() -> None:
    """An effect."""


BARE = {(S.IDLE, "start"): S.BUSY, (S.BUSY, "finish"): S.DONE, (S.BUSY, "tick"): S.BUSY}
TYPED = {(S.IDLE, Input.START): (S.BUSY, start_work), (S.BUSY, Input.FINISH): (S.DONE, None)}


def test_both_table_shapes_read_alike() -> None:
    assert read_table(BARE) == [
        Transition("IDLE", "start", "BUSY"),
        Transition("BUSY", "finish", "DONE"),
        Transition("BUSY", "tick", "BUSY"),
    ]
    assert read_table(TYPED) == [
        Transition("IDLE", "START", "BUSY", "start_work"),
        Transition("BUSY", "FINISH", "DONE", None),
    ]
    assert states_of(TYPED) == ["IDLE", "BUSY", "DONE"]


def test_mermaid_draws_every_transition_start_and_end() -> None:
    text = mermaid(BARE)
    assert text.splitlines()[0] == "stateDiagram-v2"
    assert "    [*] --> s_IDLE" in text
    assert "    s_IDLE --> s_BUSY : start" in text
    assert "    s_BUSY --> s_BUSY : tick" in text
    assert "    s_DONE --> [*]" in text
    assert "s_BUSY --> [*]" not in text
    assert "s_IDLE --> s_BUSY : START / start_work" in mermaid(TYPED)


def test_markdown_table_has_an_effect_column_only_when_needed() -> None:
    assert markdown_table(BARE).splitlines()[:3] == [
        "| state | input | next state |",
        "|---|---|---|",
        "| IDLE | start | BUSY |",
    ]
    assert markdown_table(TYPED).splitlines()[2] == "| IDLE | START | BUSY | start_work |"


def test_malformed_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="keyed by"):
        read_table({S.IDLE: S.BUSY})
    with pytest.raises(ValueError, match="empty"):
        read_table({(S.IDLE, "x"): ()})


@pytest.mark.parametrize(
    "table", [TRANSITIONS, SdpNegotiator.TRANSITIONS, ClientInviteTransaction.TRANSITIONS]
)
def test_the_real_tables_draw_every_edge(table) -> None:
    text = mermaid(table)
    for row in read_table(table):
        edge = f"s_{row.source} --> s_{row.target} : "
        line = next(line for line in text.splitlines() if line.strip().startswith(edge))
        assert row.input.replace(":", "#58;") in line
