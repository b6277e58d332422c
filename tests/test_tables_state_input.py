"""Every table, every state x every input (h2's test_state_machines): a machine either follows its
table or refuses, with the error that says whose fault the input was, and its state unchanged.

The behaviour tests take the transitions (tests/test_tables_covered.py checks that each is
taken); these check the other side: what a machine does with an input its table does not have
in the state it is in, and that an input it does have lands exactly where the table says.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invsess.dialog import TRANSITIONS as DIALOG_TRANSITIONS
from invsess.dialog import Dialog, DialogInput, DialogState
from invsess.inv import (
    TRANSITIONS,
    Effect,
    IncomingCall,
    InviteSession,
    InviteState,
    Origin,
    RequestRefusedError,
    SessionInput,
    SessionStateChanged,
    SessionTableError,
)
from invsess.memory import PoolFactory
from invsess.sdp import NegotiatorInput, NegotiatorState, SdpNegotiator
from invsess.sip import LocalProtocolError, NameAddress, Via, make_request, parse_uri
from invsess.testing import ScriptedPeer, SimNetwork
from invsess.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TimerConfig,
    Transaction,
    TransactionKey,
    TransactionTableError,
    TxInput,
)

from .sessions import ALICE_SDP, A, B, layer_at

EVERY_PAIR = settings(max_examples=400, deadline=None)

# -- the INVITE session -----------------------------------------------------------------------

INVITE = """INVITE sip:bob@127.0.0.2:5060 SIP/2.0
Via: SIP/2.0/UDP {local};branch=z9hG4bKtable{n}
From: <sip:caller@127.0.0.1>;tag=caller-{n}
To: <sip:bob@127.0.0.2>
Call-ID: table-{n}
CSeq: 1 INVITE
Contact: <sip:caller@{local}>
Content-Length: 0

"""
_serial = iter(range(10**9))


def _incoming_session() -> tuple[SimNetwork, Any, InviteSession]:
    net = SimNetwork(3)
    bob = layer_at(net, B, seed=3, user="bob", allow=("INVITE", "BYE", "UPDATE", "PRACK"))
    caller = ScriptedPeer(net, A, name="caller")
    caller.send(INVITE, B, n=next(_serial))
    net.run_until(0.1)
    incoming = next(e for e in iter(bob.next_event, None) if isinstance(e, IncomingCall))
    return net, bob, incoming.session


@EVERY_PAIR
@given(state=st.sampled_from(InviteState), event=st.sampled_from(SessionInput))
def test_the_session_follows_its_table_or_blames_the_right_side(
    state: InviteState, event: SessionInput
) -> None:
    net, bob, session = _incoming_session()
    session.state = state  # where the session is does not change what the table says
    entry = TRANSITIONS.get((state, event))
    if entry is None:
        expected: type[Exception] = {
            Origin.PEER: RequestRefusedError,
            Origin.APP: LocalProtocolError,
            Origin.LAYER: SessionTableError,
        }[event.origin]
        with pytest.raises(expected) as info:
            session.process(event, net.now)
        if event.origin is Origin.PEER:
            assert isinstance(info.value, RequestRefusedError)
            assert info.value.status_code == event.refusal  # the code the peer deserves
        assert session.state is state
        assert bob.next_event() is None  # and nothing happened
        return
    nxt, effect = entry
    session.process(event, net.now)
    assert session.state is nxt
    changes = [e for e in iter(bob.next_event, None) if isinstance(e, SessionStateChanged)]
    if effect is Effect.STAY:
        assert changes == []
    else:
        assert [(c.old, c.new) for c in changes] == [(state, nxt)]
    if nxt is not InviteState.DISCONNECTED:
        # The test's own clean-up: the callee's INVITE was never answered (the forced states sent
        # nothing), so from where a callee can be, it is rejected.
        session.state = InviteState.INCOMING
        bob.answer(session, 486, net.now)
    for _ in range(3):
        net.run_until(net.now + 40)
        while bob.next_event() is not None:
            pass


def test_every_input_has_an_origin_and_peer_inputs_a_refusal_code() -> None:
    for event in SessionInput:
        assert isinstance(event.origin, Origin)
        assert (event.refusal >= 400) is (event.origin is Origin.PEER), event


# -- the dialog -------------------------------------------------------------------------------


def _dialog() -> Dialog:
    invite = make_request(
        "INVITE",
        "sip:bob@127.0.0.2",
        via=_via(),
        from_=NameAddress(parse_uri("sip:alice@127.0.0.1"), None, (("tag", "a1"),)),
        to=NameAddress(parse_uri("sip:bob@127.0.0.2")),
        call_id="table-dialog",
        cseq=1,
        contact=NameAddress(parse_uri("sip:alice@127.0.0.1")),
    )
    return Dialog.create_uac_initial(PoolFactory(), invite)


def _via() -> Via:
    return Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bKd"),))


@EVERY_PAIR
@given(state=st.sampled_from(DialogState), event=st.sampled_from(DialogInput))
def test_the_dialog_follows_its_table_or_refuses(state: DialogState, event: DialogInput) -> None:
    dialog = _dialog()
    dialog.state = state
    nxt = DIALOG_TRANSITIONS.get((state, event))
    if nxt is None:
        with pytest.raises(LocalProtocolError):
            dialog._go(event)
        assert dialog.state is state
    else:
        dialog._go(event)
        assert dialog.state is nxt
    dialog.pool.release("test over")


# -- the SDP negotiator -----------------------------------------------------------------------


@EVERY_PAIR
@given(state=st.sampled_from(NegotiatorState), event=st.sampled_from(NegotiatorInput), agreed=st.booleans())
def test_the_negotiator_follows_its_table_or_refuses(
    state: NegotiatorState, event: NegotiatorInput, agreed: bool
) -> None:
    neg = SdpNegotiator(ALICE_SDP, PoolFactory())
    if agreed:  # a session was agreed before: a way back to NULL lands on DONE instead
        other = SdpNegotiator(ALICE_SDP, PoolFactory())
        neg.receive_offer(other.create_offer())
        neg.create_answer()
    neg.state = state
    nxt = SdpNegotiator.TRANSITIONS.get((state, event))
    if nxt is None:
        with pytest.raises(LocalProtocolError):
            neg._go(event)
        assert neg.state is state
    else:
        neg._go(event)
        expected = NegotiatorState.DONE if nxt is NegotiatorState.NULL and agreed else nxt
        assert neg.state is expected
    neg.release()


# -- the four transactions --------------------------------------------------------------------

MACHINES: list[type[Transaction[Any]]] = [
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
]


def _transaction(cls: type[Transaction[Any]]) -> Transaction[Any]:
    method = "INVITE" if cls in (ClientInviteTransaction, ServerInviteTransaction) else "OPTIONS"
    request = make_request(
        method,
        "sip:bob@127.0.0.2",
        via=_via(),
        from_=NameAddress(parse_uri("sip:alice@127.0.0.1"), None, (("tag", "a1"),)),
        to=NameAddress(parse_uri("sip:bob@127.0.0.2")),
        call_id="table-tx",
        cseq=1,
    )
    kwargs: dict[str, Any] = {
        "pool": PoolFactory().create_pool("tx"),
        "transport": "udp",
        "peer": ("127.0.0.2", 5060),
        "timers": TimerConfig(),
        "now": 0.0,
        "sink": lambda _: None,
        "on_event": lambda _: None,
    }
    if cls in (ServerInviteTransaction, ServerNonInviteTransaction):
        kwargs["response_destination"] = ("127.0.0.2", 5060)
    return cls(TransactionKey("z9hG4bKd", "", method), request, **kwargs)


@EVERY_PAIR
@given(
    cls=st.sampled_from(MACHINES),
    state_index=st.integers(0, 4),
    event=st.sampled_from(TxInput),
)
def test_every_transaction_follows_its_table_or_reports_our_bug(
    cls: type[Transaction[Any]], state_index: int, event: TxInput
) -> None:
    states = list(cls.END.__class__)
    state = states[state_index % len(states)]
    tx = _transaction(cls)
    tx.state = state
    nxt = cls.TRANSITIONS.get((state, event))
    if nxt is None:
        # The endpoint screens what a peer sends before it reaches a transaction: an input the
        # table lacks is invsess's own bug, never blamed on the application or the peer.
        with pytest.raises(TransactionTableError):
            tx._transition(event)
        assert tx.state is state
    else:
        tx._transition(event)
        assert tx.state is nxt
    tx.pool.release("test over")


@pytest.mark.parametrize("cls", MACHINES)
def test_a_transaction_can_be_ended_from_any_live_state(cls: type[Transaction[Any]]) -> None:
    for state in cls.END.__class__:
        if state is cls.END:
            continue
        tx = _transaction(cls)
        tx.state = state
        tx.terminate("test")
        assert tx.terminated and tx.state is cls.END
        tx.pool.release("test over")
