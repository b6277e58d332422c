"""``invsess demo``: the memory model shown end to end.

Until the SIP layers land this plays the dialog/session life cycle with the memory layer alone:
a dialog owns a pool, its "INVITE session" is allocated from that pool, both are reference
counted. First the documented release order (session first, dialog second), which frees
everything; then the wrong order (dialog first) under MALLOC_DEBUG, which fails at the release
itself (the session in the pool is still referenced) and again at the first touch of the freed
session, each time with a full report.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from invsess.memory import DanglingReferenceError, PoolFactory, RefCounted, UseAfterFreeError
from invsess.memory.pool import Pool


class DemoDialog(RefCounted):
    """A dialog in miniature: owns its pool, released when its session count reaches zero."""

    __slots__ = ("call_id", "pool", "state")
    ref_label = "dialog session count"

    def __init__(self, pool: Pool, call_id: str) -> None:
        super().__init__()
        self.pool = pool
        self.call_id = call_id
        self.state = "CONFIRMED"
        pool.set_context(lambda: {"call_id": self.call_id, "state": self.state})

    def _on_last_ref(self, reason: str) -> None:
        self.pool.release(reason)


@attrs.define(eq=False)
class DemoSession(RefCounted):
    """An INVITE session in miniature, allocated from its dialog's pool."""

    dialog: DemoDialog
    state: str = "CONFIRMED"
    ref_label = "session reference count"

    def disconnect(self) -> None:
        """Enter DISCONNECTED: drop the session's hold on the dialog and its internal reference."""
        self.state = "DISCONNECTED"
        self.dialog.state = "DISCONNECTED"
        self.dialog.dec_ref("inv-session")
        self.dec_ref("inv-session")


def make_call(factory: PoolFactory, call_id: str) -> tuple[DemoDialog, DemoSession]:
    """A dialog and its session, each referenced by the session and by the application."""
    pool = factory.create_pool(f"dlg-{call_id}")
    dialog = pool.alloc(DemoDialog, pool, call_id)
    session = pool.alloc(DemoSession, dialog)
    dialog.add_ref("inv-session")
    session.add_ref("inv-session")
    dialog.add_ref("app")
    session.add_ref("app")
    return dialog, session


def run_demo(echo: Callable[[str], None] = print) -> int:
    """Print both scenarios; returns the number of leaked blocks of the correct one (0)."""
    echo("== The memory model: a dialog and its session, released in the documented order ==")
    factory = PoolFactory(malloc_debug=True)
    before = factory.statistics()
    echo(f"before: {before.as_dict()}")
    dialog, session = make_call(factory, "a84b4c76e66710")
    echo(f"during: {factory.statistics().as_dict()}")
    session.disconnect()
    session.dec_ref("app")
    dialog.dec_ref("app")
    after = factory.statistics()
    echo(f"after:  {after.as_dict()}")
    leaks = factory.leak_report()
    echo(leaks.format())

    echo("")
    echo("== ... and in the wrong order (the Asterisk crash), under MALLOC_DEBUG ==")
    factory = PoolFactory(malloc_debug=True)
    dialog, session = make_call(factory, "3848276298220188511")
    session.disconnect()
    try:
        dialog.dec_ref("app")  # wrong: the pool holding the session is released here
    except DanglingReferenceError as err:
        echo(err.report.format())  # caught at the release: the session is still referenced
    echo("")
    echo("-- and the next touch of the session, had the program gone on --")
    try:
        session.dec_ref("app")
    except UseAfterFreeError as err:
        echo(err.report.format())
    return leaks.total_blocks
