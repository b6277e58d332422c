"""Hold a dialog and its session from application code, and release them in the right order.

Run: ``INVSESS_MALLOC_DEBUG=1 python examples/memory_release_order.py``

The rule (the one Asterisk's res_pjsip_session.c follows, and says why): the INVITE session lives
in its dialog's pool, so drop the session reference first and the dialog reference second.
"""

from __future__ import annotations

import attrs

from invsess.memory import Pool, PoolFactory, RefCounted


class Dialog(RefCounted):
    """Owns a pool; released when the last session reference goes."""

    __slots__ = ("pool",)
    ref_label = "dialog session count"

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self.pool = pool

    def _on_last_ref(self, reason: str) -> None:
        self.pool.release(reason)


@attrs.define(eq=False)
class Session(RefCounted):
    """Allocated from the dialog's pool."""

    dialog: Dialog
    state: str = "CONFIRMED"


def main() -> None:
    """Allocate, hold, release in the documented order, and show that nothing leaked."""
    factory = PoolFactory()
    pool = factory.create_pool("dlg-example")
    pool.set_context(lambda: {"call_id": "example-1"})
    dialog = pool.alloc(Dialog, pool)
    session = pool.alloc(Session, dialog)
    dialog.add_ref("my-app")
    session.add_ref("my-app")
    print("live:", factory.statistics().as_dict())

    session.dec_ref("my-app")  # session first ...
    dialog.dec_ref("my-app")  # ... dialog second: this releases the pool
    print("after:", factory.statistics().as_dict())
    print(factory.leak_report().format())


if __name__ == "__main__":
    main()
