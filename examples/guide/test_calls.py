"""The regression-testing guide's tests (docs/guides/regression-testing.md shows them).

Run: ``pytest examples/guide/test_calls.py`` — the invsess plugin provides every fixture.
"""

# --8<-- [start:first]
from __future__ import annotations

import pytest

from invsess.inv import InviteState as S
from invsess.inv import TimerSettings
from invsess.memory import DanglingReferenceError, UseAfterFreeError
from invsess.testing import LinkProfile

BOB = ("127.0.0.2", 5060)


def test_bob_answers(ua_factory, call_driver):
    alice, bob = ua_factory(user="alice"), ua_factory(user="bob")  # 127.0.0.1, 127.0.0.2
    call_driver.answer(bob, 180, 200)  # Bob rings, then answers, every call
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=call_driver.now)
    call_driver.run(1.0)  # one virtual second: milliseconds of real time
    assert call_driver.states(call) == [S.CALLING, S.EARLY, S.CONNECTING, S.CONFIRMED]

    alice.hangup(call, call_driver.now)
    call_driver.settle()  # until every transaction has ended
    assert call_driver.record(call).cause == 200


# --8<-- [end:first]


# --8<-- [start:wrong-order]
def test_the_dialog_first_is_caught(ua_factory, call_driver):
    alice, bob = ua_factory(), ua_factory()
    call_driver.answer(bob, 200)
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=call_driver.now)
    dialog = call.dialog
    call.add_ref("app")
    dialog.add_ref("app")
    call_driver.run(1.0)
    alice.hangup(call, call_driver.now)
    call_driver.settle()  # the BYE's transaction must end first: it keeps the dialog alive too
    with pytest.raises(DanglingReferenceError):
        dialog.dec_ref("app")  # wrong order: the pool holding the session goes now
    with pytest.raises(UseAfterFreeError):
        call.dec_ref("app")


# --8<-- [end:wrong-order]


# --8<-- [start:faults]
@pytest.mark.virtual_time  # half an hour of call: only in virtual time
def test_a_refreshed_half_hour_through_loss(ua_factory, call_driver, sip_network):
    sip_network.default = LinkProfile(latency=0.02, jitter=0.01, loss=0.1)
    alice = ua_factory(timer=TimerSettings(session_expires=340))
    bob = ua_factory(timer=TimerSettings())
    call_driver.answer(bob, 200)
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=BOB, now=call_driver.now)
    call_driver.run(1800)  # ten refreshes, in milliseconds
    assert call_driver.states(call)[-1] is S.CONFIRMED
    alice.hangup(call, call_driver.now)
    call_driver.settle()
    assert call_driver.record(call).states[-1] is S.DISCONNECTED


# --8<-- [end:faults]
