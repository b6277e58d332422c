"""The counters (invsess.counters): kept on each event, equal at every moment to what a scan of
the live objects finds; Kamailio's names; Prometheus families; bounded tables."""

from __future__ import annotations

import enum
import random
from collections import Counter
from typing import Any

import pytest

from invsess.counters import (
    CounterGroup,
    Counters,
    DialogGauge,
    MessageCounters,
    ProvidedGroup,
    StateGauge,
    pool_kind,
)
from invsess.dialog import Dialog, DialogState
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import IncomingCall, InviteState, SessionLayer, SessionStateChanged
from invsess.sdp import parse_sdp
from invsess.testing import LinkProfile, SimNetwork
from invsess.transaction import TimerConfig


class Light(enum.Enum):
    RED = 1
    GREEN = 2
    DONE = 3


def test_state_gauge_moves_and_totals() -> None:
    gauge = StateGauge(
        "lights",
        Light,
        pattern="%s_lights",
        created="made",
        destroyed="gone",
        metric="x_lights",
        documentation="d",
    )
    gauge.added(Light.RED)
    gauge.added(Light.RED)
    gauge.moved(Light.RED, Light.GREEN)
    gauge.moved(Light.GREEN, Light.DONE)
    gauge.removed(Light.DONE)
    assert gauge.values() == {"red_lights": 1, "green_lights": 0, "done_lights": 0, "made": 2, "gone": 1}
    assert gauge.live == 1
    by_state, made, gone = gauge.families()
    assert (by_state.name, by_state.kind, by_state.labels) == ("x_lights", "gauge", ("state",))
    assert dict(by_state.samples) == {("red",): 1.0, ("green",): 0.0, ("done",): 0.0}
    assert (made.name, made.kind, made.samples) == ("x_lights_created", "counter", (((), 2),))
    assert (gone.name, gone.samples) == ("x_lights_destroyed", (((), 1),))


def test_dialog_gauge_adds_kamailios_active_dialogs() -> None:
    class S(enum.Enum):
        EARLY = 1
        CONFIRMED = 2
        TERMINATED = 3

    gauge: DialogGauge[S] = DialogGauge(
        "dialog", S, pattern="%s_dialogs", created="processed_dialogs", destroyed="destroyed_dialogs",
        metric="m", documentation="d",
    )  # fmt: skip
    for state in (S.EARLY, S.CONFIRMED, S.CONFIRMED, S.TERMINATED):
        gauge.added(state)
    values = gauge.values()
    assert values["active_dialogs"] == 3  # early + confirmed: Kamailio's meaning
    assert values["early_dialogs"] == 1
    assert values["processed_dialogs"] == 4


def test_counter_group_and_registry() -> None:
    counters = Counters()
    group = counters.add(
        CounterGroup(
            "limits", prefix="rejected_", metric="x_rejections", label="limit", documentation="d", keys=["a"]
        )
    )
    group.inc("b", 3)
    assert counters.values() == {"limits": {"rejected_a": 0, "rejected_b": 3}}
    assert group["b"] == 3 and group["zzz"] == 0
    # The same name and type again: the registered one (two layers share an endpoint's gauges).
    again = counters.add(CounterGroup("limits", prefix="x", metric="y", label="z", documentation="d"))
    assert again is group
    with pytest.raises(ValueError, match="another kind"):
        counters.add(ProvidedGroup("limits", dict, metric="m", label="l", documentation="d"))
    assert "limits" in counters and counters["limits"] is group
    (family,) = counters.families()
    assert family.samples == ((("a",), 0.0), (("b",), 3.0))


def test_messages_are_counted_from_their_first_bytes_and_bounded() -> None:
    stray: Counter[str] = Counter({"parse errors": 2, "stray responses": 1, "stateless 501": 4})
    messages = MessageCounters({"INVITE", "BYE", "REGISTER"}, stray)
    messages.received_request("INVITE")
    messages.received_request("FOO")  # a peer's invented method: counted, not kept by name
    messages.received_response(180, "INVITE")
    messages.received_response(486, "INVITE")
    messages.received_response(200, "REGISTER")
    messages.sent(b"SIP/2.0 200 OK\r\n...")
    messages.sent(b"BYE sip:a@b SIP/2.0\r\n...")
    values = messages.values()
    assert values["rcv_requests"] == 2
    assert values["rcv_requests_invite"] == 1 and values["rcv_requests_other"] == 1
    assert "rcv_requests_foo" not in values
    assert values["rcv_replies"] == 3
    assert values["rcv_replies_18x"] == 1 and values["rcv_replies_1xx"] == 1
    assert values["rcv_replies_4xx_invite"] == 1 and values["rcv_replies_486"] == 1
    assert values["rcv_replies_2xx_reg"] == 1  # Kamailio's name for REGISTER
    assert values["rcv_replies_404"] == 0  # Kamailio's fixed names are always there
    assert (values["bad_msg_hdr"], values["drop_replies"], values["unsupported_methods"]) == (2, 1, 4)
    assert values["snd_replies_200"] == 1 and values["snd_requests_bye"] == 1
    for n in range(100):  # an application inventing methods cannot grow the table without bound
        messages.sent(f"X{n} sip:a@b SIP/2.0\r\n".encode())
    assert len(messages.snd_requests) <= 65
    assert messages.snd_requests[b"OTHER"] > 0


def test_every_kamailio_core_name_is_there() -> None:
    """The core names of a real Kamailio 5.6 (tests/test_monitor_kamailio.py checks them live)."""
    values = MessageCounters({"INVITE"}, {}).values()
    kamailio = {
        "rcv_requests", "rcv_replies", "bad_msg_hdr", "unsupported_methods", "drop_requests", "drop_replies",
        *(f"rcv_requests_{m}" for m in ("ack", "bye", "cancel", "info", "invite", "message", "notify",
                                        "options", "prack", "publish", "refer", "register", "subscribe", "update")),
        *(f"rcv_replies_{c}xx" for c in range(1, 7)), "rcv_replies_18x",
        *(f"rcv_replies_{c}xx_{m}" for c in range(1, 7)
          for m in ("bye", "cancel", "invite", "message", "prack", "refer", "reg", "update")),
        *(f"rcv_replies_{code}" for code in (401, 404, 407, 480, 486)),
    }  # fmt: skip
    assert kamailio <= set(values)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dlg-3848276298220188511@a.example.com-9fxced76sl", "dlg"),
        ("tsx-c-z9hG4bK74bf9", "tsx-c"),
        ("rx-msg", "rx-msg"),
        ("sdp-a84b4c76e66710@pc33", "sdp"),
        ("hdr-proxy-require", "hdr-proxy"),
        ("12345", "12345"),
    ],
)
def test_pool_kind(name: str, kind: str) -> None:
    assert pool_kind(name) == kind


# -- the counters against the objects, call after call ----------------------------------------


def _layer(net: SimNetwork, address: tuple[str, int], user: str, seed: int) -> SessionLayer:
    sdp = parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 {address[0]}\r\ns=-\r\nc=IN IP4 {address[0]}\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    config = EndpointConfig(
        seed=seed,
        malloc_debug=True,
        allow=("INVITE", "BYE", "OPTIONS"),
        timers=TimerConfig(t1=0.05, t2=0.4, t4=0.5),
    )
    layer = SessionLayer(Endpoint(config), sdp, user=user)
    net.attach(layer, address)
    return layer


def _check_against_the_objects(layer: SessionLayer) -> None:
    """What the counters say equals what a walk over the live objects finds."""
    endpoint = layer.endpoint
    tm = endpoint.tx_counters.values()
    live_tx = endpoint.transactions()
    assert tm["current"] == len(live_tx)
    by_machine = Counter(
        f"{endpoint.tx_counters._machines[type(tx.state)]}_{tx.state.name.lower()}" for tx in live_tx
    )
    assert {k: v for k, v in tm.items() if k not in ("current", "created", "freed") and v} == dict(by_machine)

    ctx: Any = layer._ctx
    sessions = Counter(s.state for s in layer.sessions)
    assert {s: n for s, n in ctx.session_states.counts.items() if n} == dict(sessions)
    assert ctx.session_states.live == len(layer.sessions)

    dialogs: Counter[DialogState] = Counter()
    for pool in endpoint.factory.pools:
        blocks = pool.blocks()
        if blocks and isinstance(blocks[0], Dialog):
            dialogs[blocks[0].state] += 1
    assert {s: n for s, n in ctx.dialog_states.counts.items() if n} == dict(dialogs)
    assert ctx.dialog_states.live == sum(dialogs.values())


def test_counters_equal_a_scan_at_every_step_of_lossy_calls() -> None:
    net = SimNetwork(seed=7, default=LinkProfile(latency=0.01, loss=0.15, duplicate=0.1, jitter=0.02))
    alice = _layer(net, ("127.0.0.1", 5060), "alice", 1)
    bob = _layer(net, ("127.0.0.2", 5060), "bob", 2)
    rng = random.Random(3)
    for n in range(100):
        alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=net.now)
        for _ in range(60):
            if not net.step():
                break
            for layer in (alice, bob):
                _check_against_the_objects(layer)
            while (event := bob.next_event()) is not None:
                if isinstance(event, IncomingCall):
                    plan = rng.choice(["200", "486", "ring", "ignore"])
                    if plan in ("200", "486"):
                        bob.answer(event.session, int(plan), net.now)
                    elif plan == "ring":
                        bob.answer(event.session, 180, net.now)
            while (event := alice.next_event()) is not None:
                if isinstance(event, SessionStateChanged) and event.new is InviteState.CONFIRMED and n % 2:
                    alice.hangup(event.session, net.now)
        for session in alice.sessions:  # what still rings or is up is ended from Alice's side
            if session.state is not InviteState.DISCONNECTED:
                alice.hangup(session, net.now)
    # Run to the end: everything ends, every counter comes back to zero live.
    for _ in range(20000):
        if not net.step():
            break
        for layer in (alice, bob):
            while layer.next_event() is not None:
                pass
            _check_against_the_objects(layer)
    for layer in (alice, bob):
        values = layer.endpoint.counters.values()
        assert values["tm"]["current"] == 0 and values["tm"]["created"] == values["tm"]["freed"] > 100
        assert values["inv"]["sessions_created"] == values["inv"]["sessions_released"] == 100
        assert values["dialog"]["processed_dialogs"] == values["dialog"]["destroyed_dialogs"] >= 100
        assert values["dialog"]["active_dialogs"] == 0
    retrans = alice.endpoint.counters.values()["retrans"]
    assert retrans["requests_sent"] > 0  # 15 % loss: Timers A and E fired
    assert bob.endpoint.counters.values()["retrans"]["requests_received"] > 0  # and Bob absorbed some
    assert alice.endpoint.counters.values()["core"]["rcv_replies_4xx_invite"] > 0  # the 486s
    for layer in (alice, bob):
        assert not layer.close(net.now)


def test_sanity_failures_and_limits_are_counted() -> None:
    net = SimNetwork(seed=1)
    endpoint = Endpoint(
        EndpointConfig(seed=1, malloc_debug=True, max_transactions=1, allow=("INVITE", "OPTIONS"))
    )
    net.attach(endpoint, ("127.0.0.2", 5060))
    wire = (
        "OPTIONS sip:b@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.2>\r\nCall-ID: c{n}\r\nCSeq: 1 {m}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    endpoint.receive(wire.format(n=1, m="INVITE").encode(), ("127.0.0.1", 5060), "udp", 0.0)  # CSeq mismatch
    endpoint.receive(b"\x00\x01 not sip", ("127.0.0.1", 5060), "udp", 0.0)
    endpoint.receive(
        wire.replace("OPTIONS", "INVITE").format(n=2, m="INVITE").encode(), ("127.0.0.1", 5060), "udp", 0.0
    )
    endpoint.receive(
        wire.replace("OPTIONS", "INVITE").format(n=3, m="INVITE").encode(), ("127.0.0.1", 5060), "udp", 0.0
    )
    values = endpoint.counters.values()
    assert values["sanity"]["failed_cseq_method"] == 1
    assert values["sanity"]["failed_unparsable"] == 1
    assert values["limits"]["rejected_transactions"] == 1  # the second INVITE: 503
    assert "snd_replies_503" not in values["core"]  # not sent yet: counted when it goes out
    endpoint.datagrams_to_send()
    values = endpoint.counters.values()
    assert values["core"]["snd_replies_503"] == 1 and values["core"]["snd_replies_400"] == 1
    assert values["endpoint"]["stateless_503"] == 1
    endpoint.terminate_all()
    assert not endpoint.close()


def test_statistic_names_are_unique_across_groups() -> None:
    """Kamailio's ``stats.get_statistics NAME`` looks a bare name up in every group: a name must
    say one thing (as Kamailio's do)."""
    layer = _layer(SimNetwork(seed=1), ("127.0.0.1", 5060), "alice", 1)
    layer.endpoint.messages.sent(b"SIP/2.0 200 OK\r\n")  # names that appear once something is counted
    layer.endpoint.messages.sent(b"INVITE sip:x SIP/2.0\r\n")
    layer.endpoint.stats["stray responses"] += 1
    seen: dict[str, str] = {}
    for group, values in layer.endpoint.counters.values().items():
        for name in values:
            assert name not in seen, f"{name} is in {seen.get(name)} and {group}"
            seen[name] = group
    assert {"shmem", "core", "tm", "retrans", "sanity", "limits", "endpoint", "inv", "dialog"} == set(
        layer.endpoint.counters.values()
    )
