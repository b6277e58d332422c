"""The harness: the simulated network in virtual time, and the pytest plugin (via pytester)."""

from __future__ import annotations

import pytest

from invsess.sip import NameAddress, make_request, parse_uri
from invsess.testing import LinkProfile, SimNetwork
from invsess.testing.plugin import EndpointFactory


def options(endpoint, target, call_id):
    return make_request(
        "OPTIONS",
        f"sip:x@{target[0]}:{target[1]}",
        via=endpoint.via("udp"),
        from_=NameAddress(parse_uri("sip:a@127.0.0.1"), None, (("tag", endpoint.new_tag()),)),
        to=NameAddress(parse_uri("sip:x@127.0.0.1")),
        call_id=call_id,
        cseq=1,
    )


def run_transactions(
    seed: int, profile: LinkProfile, count: int = 100
) -> tuple[list[tuple[str, object]], SimNetwork]:
    net = SimNetwork(seed, default=profile)
    factory = EndpointFactory(net)
    a = factory(("127.0.0.1", 5060))
    factory(("127.0.0.2", 5060))
    for i in range(count):
        a.send_request(options(a, ("127.0.0.2", 5060), f"c{i}"), ("127.0.0.2", 5060), "udp", net.now)
    net.run_until_idle()
    outcomes = []
    while (event := a.next_event()) is not None:
        detail = getattr(getattr(event, "response", None), "status_code", None) or getattr(
            event, "reason", None
        )
        outcomes.append((type(event).__name__, detail))
    for endpoint, _ in factory.endpoints:
        assert not endpoint.close()
    return outcomes, net


def test_lossy_network_every_transaction_ends_and_nothing_leaks() -> None:
    profile = LinkProfile(latency=0.02, jitter=0.01, loss=0.2, duplicate=0.05, reorder=0.05)
    outcomes, net = run_transactions(7, profile)
    finals = [d for t, d in outcomes if t == "ResponseReceived"]
    ended = [d for t, d in outcomes if t == "TransactionTerminated"]
    assert len(ended) == 100  # every transaction reached Terminated, by Timer K or F
    assert finals.count(200) + ended.count("timer F") >= 100
    assert {e.fate for e in net.trace} >= {"delivered", "lost", "duplicated"}
    assert net.now < 60  # virtual: 64*T1 at most per transaction, run in milliseconds


def test_same_seed_same_trace() -> None:
    profile = LinkProfile(latency=0.02, jitter=0.03, loss=0.2, duplicate=0.05, reorder=0.1)
    first = [(e.time, e.fate, e.data) for e in run_transactions(11, profile, 20)[1].trace]
    again = [(e.time, e.fate, e.data) for e in run_transactions(11, profile, 20)[1].trace]
    other = [(e.time, e.fate, e.data) for e in run_transactions(12, profile, 20)[1].trace]
    assert first == again
    assert first != other


def test_partition_and_heal() -> None:
    net = SimNetwork()
    factory = EndpointFactory(net)
    a = factory(("127.0.0.1", 5060))
    factory(("127.0.0.2", 5060))
    net.partition(("127.0.0.1", 5060), ("127.0.0.2", 5060))
    a.send_request(options(a, ("127.0.0.2", 5060), "p1"), ("127.0.0.2", 5060), "udp", net.now)
    net.run_until(2.0)
    assert all(e.fate == "partitioned" for e in net.trace)
    net.heal()
    net.run_until_idle()
    assert any(e.fate == "delivered" and e.first_line.startswith("SIP/2.0 200") for e in net.trace)
    assert "OPTIONS sip:x@127.0.0.2:5060 SIP/2.0 [partitioned]" in net.ladder()
    for endpoint, _ in factory.endpoints:
        assert not endpoint.close()


def test_link_profile_validation() -> None:
    with pytest.raises(ValueError, match="probability"):
        LinkProfile(loss=1.5)
    with pytest.raises(ValueError, match="negative"):
        LinkProfile(latency=-1)


PLUGIN_TEST = """
import os
import pytest
from invsess.memory import PoolFactory

def test_malloc_debug_is_on_by_default():
    assert os.environ.get("INVSESS_MALLOC_DEBUG") == "1"
    assert PoolFactory().malloc_debug

def test_endpoints_on_the_network(endpoint_factory, sip_network):
    a = endpoint_factory()
    b = endpoint_factory()
    assert sip_network.now == 0.0

def test_a_leak_fails(endpoint_factory):
    ep = endpoint_factory()
    ep.factory.create_pool("forgotten")  # a pool nobody releases

@pytest.mark.allow_leaks
def test_a_leak_on_purpose(endpoint_factory):
    ep = endpoint_factory()
    ep.factory.create_pool("on purpose")
"""


def test_plugin_fixtures_and_leak_gate(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest("--strict-markers")  # the plugin loads through its pytest11 entry point
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*invsess leak gate: memory still held after the test*", "*live pools: forgotten*"]
    )


UA_TEST = """
import pytest
from invsess.inv import InviteState, IncomingCall, TimerSettings


def _call(ua_factory, sip_network, **options):
    alice, bob = ua_factory(**options), ua_factory(**options)
    host, port = bob.endpoint.listeners["udp"]
    session = alice.invite(f"sip:bob@{host}:{port}", destination=(host, port), now=sip_network.now)
    sip_network.run_until(sip_network.now + 0.2)
    incoming = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall))
    bob.answer(incoming.session, 183, sip_network.now)
    bob.answer(incoming.session, 200, sip_network.now)
    sip_network.run_until(sip_network.now + 0.3)
    while alice.next_event() is not None:
        pass
    assert session.state is InviteState.CONFIRMED
    alice.hangup(session, sip_network.now)
    sip_network.run_until(sip_network.now + 0.3)
    for layer in (alice, bob):
        while layer.next_event() is not None:
            pass
    from invsess.testing.loopback import LoopbackNetwork

    return "LoopbackNetwork" if isinstance(sip_network, LoopbackNetwork) else type(sip_network).__name__


def test_a_call(ua_factory, sip_network):
    print("NETWORK", _call(ua_factory, sip_network, rel100="supported", timer=TimerSettings()))


@pytest.mark.virtual_time
def test_half_an_hour(ua_factory, sip_network):
    _call(ua_factory, sip_network)
    sip_network.run_until(sip_network.now + 1800)
"""


@pytest.mark.parametrize("network", ["sim", "loopback"])
def test_one_switch_runs_the_same_test_on_real_sockets(pytester: pytest.Pytester, network: str) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(UA_TEST)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", f"--sip-network={network}")
    if network == "sim":
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(["*NETWORK SimNetwork*"])
    else:
        result.assert_outcomes(passed=1, skipped=1)  # the half-hour test needs virtual time
        result.stdout.fnmatch_lines(["*NETWORK LoopbackNetwork*"])


CLOCK_TEST = """
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.sip import NameAddress, make_request, parse_uri
from invsess.transaction import TransactionTimedOut


def test_timer_f_fires_at_32_seconds_exactly(virtual_clock):
    ep = virtual_clock.attach(Endpoint(EndpointConfig(malloc_debug=True)))
    ep.add_listener("udp", ("127.0.0.1", 5060))
    options = make_request("OPTIONS", "sip:x@127.0.0.9", via=ep.via("udp"),
                           from_=NameAddress(parse_uri("sip:a@127.0.0.1"), None, (("tag", "1"),)),
                           to=NameAddress(parse_uri("sip:x@127.0.0.9")), call_id="c1", cseq=1)
    ep.send_request(options, ("127.0.0.9", 5060), "udp", virtual_clock.now)
    fired = virtual_clock.advance(31.999)  # Timer E: 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s
    assert fired == 10 and not any(isinstance(e, TransactionTimedOut) for e in iter(ep.next_event, None))
    virtual_clock.advance(0.001)  # Timer F = 64*T1 = 32 s, to the millisecond
    assert any(isinstance(e, TransactionTimedOut) for e in iter(ep.next_event, None))
    assert virtual_clock.now == 32.0
    assert not ep.close()
"""


def test_virtual_clock_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(CLOCK_TEST)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_virtual_clock_refuses_to_go_back_and_catches_a_stuck_node() -> None:
    from invsess.testing import VirtualClock

    clock = VirtualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)

    class Stuck:
        def next_deadline(self) -> float | None:
            return 1.0

        def handle_timers(self, now: float) -> None:
            pass  # forgets to clear its timer

    clock.attach(Stuck())
    with pytest.raises(RuntimeError, match="keeps a deadline"):
        clock.advance(2.0)
