"""A leak, found by site: the leak report and a snapshot diff of an application that keeps a
little of every call (the docs' memory page shows this program's output).

Run: ``python examples/reports/leaky_app.py``. Each call gets a dialog pool, released when the
call ends (no leak there); but the application also keeps each Call-ID in a long-lived pool of
its own and one reference it forgot on a per-call object: the snapshot diff shows the growth per
call, and the leak report names both sites and who holds the reference.
"""

from __future__ import annotations

import attrs

from invsess.memory import Buffer, Pool, PoolFactory, RefCounted


@attrs.define(eq=False)
class CallState(RefCounted):
    """Per-call application state."""

    call_id: str


def handle_call(factory: PoolFactory, history: Pool, n: int) -> None:
    """One call: its pool goes at the end; what the application kept does not."""
    call_id = f"call-{n}@example.com"
    dialog = factory.create_pool(f"dlg-{call_id}")
    dialog.alloc(Buffer, b"INVITE sip:bob@example.com SIP/2.0 ...")
    history.alloc(Buffer, call_id.encode())  # kept for a call history nobody reads
    if n == 2:
        state = history.alloc(CallState, call_id)
        state.add_ref("stats-timer")  # taken, never dropped
    dialog.release("call ended")


# --8<-- [start:main]
def main() -> None:
    """Three calls, a snapshot before and after, then the leak report."""
    factory = PoolFactory()
    history = factory.create_pool("app-history")
    before = factory.snapshot()
    for n in range(3):
        handle_call(factory, history, n)
    print(factory.snapshot().compare_to(before).format())
    print()
    print(factory.leak_report().format())


# --8<-- [end:main]


if __name__ == "__main__":
    main()
