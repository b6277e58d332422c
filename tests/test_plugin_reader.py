"""The plugin from a new user's side: what their suite sees (run in a pytester subprocess, with
no configuration of theirs, exactly as a fresh project would)."""

from __future__ import annotations

import pytest

GATE_TEST = """
def test_left_ringing(ua_factory, sip_network):
    alice, bob = ua_factory(), ua_factory()
    alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=sip_network.now)
    sip_network.run_until(1.0)
    while bob.next_event() is not None:
        pass  # read, never answered
"""


def test_the_leak_gate_names_the_session_still_up_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GATE_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    gate = out[out.index("invsess leak gate") :]
    lines = gate.splitlines()
    assert lines[1].startswith("user agent 127.0.0.1:5060: session ")
    assert lines[1].endswith(
        "(UAC) still CALLING (no answer yet: hang it up (CANCEL) or let the callee answer)"
    )
    assert lines[2].startswith("user agent 127.0.0.2:5060: session ")
    assert lines[2].endswith("(UAS) still INCOMING (never answered)")
    assert "the references held by 'inv-session' below are the session layer's own" in lines[3]
    assert gate.index("still INCOMING") < gate.index("leaked blocks")


DRIVER_TEST = """
import pytest
from invsess.inv import InviteState
from invsess.memory import DanglingReferenceError, UseAfterFreeError

S = InviteState


def test_a_call_driven(ua_factory, call_driver):
    alice, bob = ua_factory(), ua_factory()
    call_driver.answer(bob, 180, 200)
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=call_driver.now)
    call_driver.run(1.0)
    assert call_driver.states(call) == [S.CALLING, S.EARLY, S.CONNECTING, S.CONFIRMED]
    alice.hangup(call, call_driver.now)
    call_driver.settle()
    record = call_driver.record(call)
    assert record.states[-1] is S.DISCONNECTED and record.cause == 200 and record.released
    callee = call_driver.record(record.call_id, role="UAS")
    assert callee.states == [S.INCOMING, S.EARLY, S.CONNECTING, S.CONFIRMED, S.DISCONNECTED]
    assert alice.sessions == [] and bob.sessions == []


def test_a_rejected_call(ua_factory, call_driver):
    alice, bob = ua_factory(), ua_factory()
    call_driver.answer(bob, 486)
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=call_driver.now)
    call_driver.settle()
    assert call_driver.states(call) == [S.CALLING, S.DISCONNECTED]
    assert call_driver.record(call).cause == 486


def test_the_wrong_order_recipe(ua_factory, call_driver):
    # Hold the session and its dialog, then release them dialog first: no allow_leaks, no
    # hand-written event loop.
    alice, bob = ua_factory(), ua_factory()
    call_driver.answer(bob, 200)
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=call_driver.now)
    dialog = call.dialog
    call.add_ref("app")
    dialog.add_ref("app")
    call_driver.run(1.0)
    alice.hangup(call, call_driver.now)
    call_driver.settle()  # the BYE's transaction ends: only the app's references are left
    with pytest.raises(DanglingReferenceError) as info:
        dialog.dec_ref("app")
    assert [h.owner for h in info.value.report.holders] == ["app"]
    with pytest.raises(UseAfterFreeError):
        call.dec_ref("app")
"""


def test_call_driver_and_the_wrong_order_recipe(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DRIVER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


QUIET_TEST = """
import asyncio
import pytest


@pytest.mark.asyncio
async def test_an_async_test_of_theirs():
    await asyncio.sleep(0)


def test_a_call_logs_nothing(ua_factory, call_driver):
    alice, bob = ua_factory(), ua_factory()
    call_driver.answer(bob, 200)
    call = alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=call_driver.now)
    call_driver.run(1.0)
    alice.hangup(call, call_driver.now)
    call_driver.settle()
    print("CALL DONE")
"""


def test_a_users_suite_gets_no_library_noise_and_no_deprecation_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(QUIET_TEST)
    # No ini file at all; warnings as errors: pytest-asyncio's deprecation would fail the run.
    result = pytester.runpytest_subprocess("-s", "-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "CALL DONE" in out
    assert "session state" not in out  # the library's info logs are dropped
    assert "warnings summary" not in out and "DeprecationWarning" not in out


def test_a_suite_that_configures_structlog_keeps_its_logs(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import logging, structlog\n"
        "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))\n"
    )
    pytester.makepyfile(QUIET_TEST)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "session state" in result.stdout.str()


LONG_WAIT_TEST = """
def test_written_for_virtual_time(ua_factory, sip_network):
    ua_factory()
    sip_network.run_until(sip_network.now + 1800)  # half an hour: fine in virtual time only
"""


def test_loopback_refuses_a_wait_of_half_an_hour(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LONG_WAIT_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sip-network=loopback")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*--sip-network=loopback: run_until(1800*) would wait 1800.0 s of real time*@pytest.mark.virtual_time*"
        ]
    )
    assert result.duration < 60  # refused, not waited
