"""Every transition of the session table, of the negotiator table and of the incoming-offer table
is taken by some test.

The session, PRACK and session-timer tests (and the negotiator's) are run again here with a
recorder on the tables' one entry point; a transition nobody takes is either dead (remove it) or
untested (test it). Either way this test names it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from invsess.inv import TRANSITIONS, InviteSession
from invsess.inv.offer import INCOMING_TRANSITIONS, IncomingOffer
from invsess.sdp import SdpNegotiator

from . import test_inv, test_inv_api, test_prack, test_sdp_negotiator, test_session_timer


def _runs() -> Iterator[Callable[[], Any]]:
    """Every case of those modules' tests that take no fixture: plain ones, and each parameter
    set of the parametrized ones."""
    for module in (test_inv, test_prack, test_session_timer, test_sdp_negotiator, test_inv_api):
        for name, func in vars(module).items():
            if not name.startswith("test_") or not callable(func):
                continue
            params = [m for m in getattr(func, "pytestmark", []) if m.name == "parametrize"]
            if not params:
                if not inspect.signature(func).parameters:
                    yield func
                continue
            names, values = params[0].args
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            for case in values:
                value = case.values if hasattr(case, "values") else case
                args = dict(zip(names, value if len(names) > 1 else (value,), strict=True))
                if set(inspect.signature(func).parameters) == set(args):
                    yield functools.partial(func, **args)


class _Recording(dict[Any, Any]):
    """A transition table that remembers what was looked up (``go``/``_go`` read it by get)."""

    def __init__(self, table: dict[Any, Any]) -> None:
        super().__init__(table)
        self.taken: set[tuple[str, str]] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        state, event = key
        if key in self:
            self.taken.add((state.name, event.name))
        return super().get(key, default)


@pytest.mark.virtual_time
def test_every_transition_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tables are patched, not the methods: under MALLOC_DEBUG a session is an instance of a
    # debug variant of InviteSession whose methods were wrapped when it was first made.
    sessions, negotiators = _Recording(TRANSITIONS), _Recording(SdpNegotiator.TRANSITIONS)
    offers = _Recording(INCOMING_TRANSITIONS)
    monkeypatch.setattr(InviteSession, "TRANSITIONS", sessions)
    monkeypatch.setattr(SdpNegotiator, "TRANSITIONS", negotiators)
    monkeypatch.setattr(IncomingOffer, "TRANSITIONS", offers)
    for test in _runs():
        test()
    missing = sorted((s.name, e.name) for s, e in TRANSITIONS if (s.name, e.name) not in sessions.taken)
    assert not missing, f"session transitions no test takes: {missing}"
    neg_missing = sorted(
        (s.name, e.name) for s, e in SdpNegotiator.TRANSITIONS if (s.name, e.name) not in negotiators.taken
    )
    assert not neg_missing, f"negotiator transitions no test takes: {neg_missing}"
    offer_missing = sorted(
        (s.name, e.name) for s, e in INCOMING_TRANSITIONS if (s.name, e.name) not in offers.taken
    )
    assert not offer_missing, f"incoming-offer transitions no test takes: {offer_missing}"
