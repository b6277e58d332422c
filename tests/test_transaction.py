"""Transactions in virtual time: exact deadlines, absorption, ACKs, RFC 6026, the tables."""

from __future__ import annotations

import pytest

from invsess.sip import make_response
from invsess.transaction import (
    AckReceived,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    RequestReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TimerConfig,
    TransactionTerminated,
    TransactionTimedOut,
)

from .helpers import EndpointPair


def test_tables_are_complete_and_reach_terminated() -> None:
    for cls in (
        ClientInviteTransaction,
        ClientNonInviteTransaction,
        ServerInviteTransaction,
        ServerNonInviteTransaction,
    ):
        states = set(cls.State)
        sources = {s for s, _ in cls.TRANSITIONS}
        targets = set(cls.TRANSITIONS.values())
        assert states - {cls.State.TERMINATED} <= sources, cls
        assert sources | targets == states, cls
        # Every non-terminal state can reach TERMINATED through the table.
        reach = {cls.State.TERMINATED}
        changed = True
        while changed:
            changed = False
            for (src, _), dst in cls.TRANSITIONS.items():
                if dst in reach and src not in reach:
                    reach.add(src)
                    changed = True
        assert reach == states, cls


def test_timer_a_doubles_and_timer_b_times_out() -> None:
    pair = EndpointPair()
    pair.drop = lambda *_: True  # the network eats everything
    tx = pair.uac.send_request(pair.request(), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    pair.advance(40.0)
    assert pair.sent("uac>uas", b"INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    events = pair.events(pair.uac)
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert events[0].timer == "B"  # type: ignore[attr-defined]
    assert tx.terminated_reason == "timer B"
    assert not pair.uac.leak_report()


def test_timer_e_is_capped_at_t2_and_f_times_out() -> None:
    pair = EndpointPair()
    pair.drop = lambda *_: True
    pair.uac.send_request(pair.request("OPTIONS"), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    pair.advance(40.0)
    assert pair.sent("uac>uas", b"OPTIONS") == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [type(e) for e in pair.events(pair.uac)] == [TransactionTimedOut, TransactionTerminated]


def test_configurable_timers() -> None:
    pair = EndpointPair(timers=TimerConfig(t1=0.1, t2=0.4))
    pair.drop = lambda *_: True
    pair.uac.send_request(pair.request("OPTIONS"), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    pair.advance(7.0)
    assert pair.sent("uac>uas", b"OPTIONS")[:6] == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.1, 1.5])
    assert pair.uac.transactions() == []


def test_invite_rejected_retransmissions_absorbed_and_ack_built() -> None:
    pair = EndpointPair()
    lost_first_ack: list[float] = []

    def drop(t: float, d: str, o) -> bool:
        if o.data.startswith(b"ACK") and not lost_first_ack:
            lost_first_ack.append(t)
            return True
        return False

    pair.drop = drop
    pair.uac.send_request(pair.request(), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    (req_event,) = pair.events(pair.uas)
    assert isinstance(req_event, RequestReceived)
    pair.advance(0.2)
    assert pair.sent("uas>uac", b"SIP/2.0 100") == [0.2]  # 100 Trying after 200 ms of silence
    pair.uas.respond(req_event.transaction, make_response(req_event.request, 486, to_tag="bt"), 0.3)
    pair.now = 0.3
    pair.pump()
    assert lost_first_ack == [0.3]
    pair.advance(60.0)
    # Timer G retransmits the 486 (T1) until the ACK (the re-sent one) arrives.
    assert pair.sent("uas>uac", b"SIP/2.0 486") == [0.3, 0.8]
    assert pair.sent("uac>uas", b"ACK") == [0.3, 0.8]
    uac_events = pair.summary(pair.uac)
    assert [d for t, d in uac_events if t == "ResponseReceived"] == [100, 486]
    ack = pair.wire[-1][2] if pair.wire[-1][2].data.startswith(b"ACK") else None
    assert ack is not None
    assert b"To: Bob <sip:bob@127.0.0.1>;tag=bt" in ack.data or b";tag=bt" in ack.data
    assert b"CSeq: 1 ACK" in ack.data
    assert pair.summary(pair.uas) == [("TransactionTerminated", "timer I")]
    assert not pair.uac.leak_report()
    assert not pair.uas.leak_report()


def test_timer_h_when_the_ack_never_comes() -> None:
    pair = EndpointPair()
    pair.drop = lambda t, d, o: o.data.startswith(b"ACK")
    pair.uac.send_request(pair.request(), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    (req_event,) = pair.events(pair.uas)
    pair.uas.respond(req_event.transaction, make_response(req_event.request, 603, to_tag="t"), 0.0)  # type: ignore[attr-defined]
    pair.pump()
    pair.advance(40.0)
    assert pair.sent("uas>uac", b"SIP/2.0 603") == [
        0.0,
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert [type(e) for e in pair.events(pair.uas)] == [TransactionTimedOut, TransactionTerminated]


def test_rfc6026_accepted_absorbs_invite_and_passes_2xx_and_ack() -> None:
    pair = EndpointPair()
    ctx = pair.uac.send_request(pair.request(), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    (req_event,) = pair.events(pair.uas)
    stx = req_event.transaction  # type: ignore[attr-defined]
    ok = make_response(req_event.request, 200, to_tag="bt")  # type: ignore[attr-defined]
    pair.uas.respond(stx, ok, 0.0)
    pair.pump()
    assert stx.state.name == "ACCEPTED"
    assert ctx.state.name == "ACCEPTED"
    # The TU retransmits its 2xx (RFC 3261 §13.3.1.4) through the Accepted transaction.
    pair.uas.respond(stx, ok, 0.5)
    pair.now = 0.5
    pair.pump()
    assert pair.summary(pair.uac) == [("ResponseReceived", 200), ("ResponseReceived", 200)]
    # The INVITE retransmitted into Accepted is absorbed (no new RequestReceived).
    pair.uas.receive(pair.wire[0][2].data, ("127.0.0.1", 5061), "udp", 0.6)
    assert pair.events(pair.uas) == []
    assert pair.uas.stats["absorbed requests"] == 1
    pair.advance(100.0)
    assert pair.uac.transactions() == []
    assert pair.uas.transactions() == []
    assert ctx.terminated_reason == "timer M"
    assert stx.terminated_reason == "timer L"


def test_ack_for_2xx_reaches_the_application() -> None:
    pair = EndpointPair()
    pair.uac.send_request(pair.request(), ("127.0.0.1", 5062), "udp", 0.0)
    pair.pump()
    (req_event,) = pair.events(pair.uas)
    pair.uas.respond(req_event.transaction, make_response(req_event.request, 200, to_tag="bt"), 0.0)  # type: ignore[attr-defined]
    pair.pump()
    ack = pair.request("ACK")
    ack.headers.set("To", "Bob <sip:bob@127.0.0.1>;tag=bt")
    pair.uac.send_stateless(ack, ("127.0.0.1", 5062), "udp")
    pair.pump()
    events = pair.events(pair.uas)
    assert any(isinstance(e, AckReceived) for e in events)


def test_reliable_transport_no_retransmission_and_zero_wait_timers() -> None:
    pair = EndpointPair(transport="tcp")
    pair.drop = lambda *_: True
    pair.uac.send_request(pair.request("OPTIONS"), ("127.0.0.1", 5062), "tcp", 0.0)
    pair.pump()
    pair.advance(40.0)
    assert pair.sent("uac>uas", b"OPTIONS") == [0.0]  # Timer E is UDP only
    assert [type(e) for e in pair.events(pair.uac)] == [TransactionTimedOut, TransactionTerminated]
    ok = EndpointPair(transport="tcp")
    ok.uac.send_request(ok.request("OPTIONS"), ("127.0.0.1", 5062), "tcp", 0.0)
    ok.pump()
    ok.advance(0.0)
    assert ok.uac.transactions() == []  # Timer K = 0 on TCP
    assert ok.uas.transactions() == []  # Timer J = 0 on TCP
