"""Random sequences of calls, answers, hang-ups, re-INVITEs, UPDATEs and time, over a bad network.

Whatever happens: every session reaches DISCONNECTED, every dialog is destroyed, nothing leaks,
and no use-after-free (or any other exception) is ever raised. The test holds its own
references on every session and dialog it sees, and drops them session first, dialog second.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import IncomingCall, InviteSession, InviteState, SessionLayer, SessionStateChanged
from invsess.inv.timer import TimerSettings
from invsess.sip import LocalProtocolError
from invsess.testing import LinkProfile, SimNetwork

from .sessions import ALICE_SDP, BOB_SDP

A, B = ("127.0.0.1", 5060), ("127.0.0.2", 5060)
TEST = "test"


class Calls(RuleBasedStateMachine):
    @initialize(
        seed=st.integers(0, 2**16),
        loss=st.sampled_from([0.0, 0.05, 0.2]),
        duplicate=st.sampled_from([0.0, 0.05]),
        reorder=st.sampled_from([0.0, 0.1]),
        extensions=st.booleans(),
    )
    def setup(self, seed: int, loss: float, duplicate: float, reorder: float, extensions: bool) -> None:
        self.net = SimNetwork(
            seed,
            default=LinkProfile(latency=0.02, jitter=0.01, loss=loss, duplicate=duplicate, reorder=reorder),
        )
        # With the extensions: session timers short enough to fire (refreshes, expiries after
        # losses) and 100rel (reliable 1xx, PRACKs, 504s) in the mix.
        allow = ("INVITE", "BYE", "UPDATE", "PRACK")
        supported = ("100rel", "timer") if extensions else ()
        layer_options: dict[str, Any] = (
            {"timer": TimerSettings(session_expires=90), "rel100": "supported"} if extensions else {}
        )
        self.alice = SessionLayer(
            Endpoint(EndpointConfig(seed=seed, malloc_debug=True, allow=allow, supported=supported)),
            ALICE_SDP,
            user="alice",
            **layer_options,
        )
        self.bob = SessionLayer(
            Endpoint(EndpointConfig(seed=seed + 1, malloc_debug=True, allow=allow, supported=supported)),
            BOB_SDP,
            user="bob",
            **layer_options,
        )
        self.net.attach(self.alice, A)
        self.net.attach(self.bob, B)
        self.held: list[tuple[SessionLayer, InviteSession]] = []
        self.ended: set[int] = set()

    def hold(self, layer: SessionLayer, session: InviteSession) -> None:
        session.add_ref(TEST)
        session.dialog.add_ref(TEST)
        self.held.append((layer, session))

    def drain(self) -> None:
        for layer in (self.alice, self.bob):
            while (event := layer.next_event()) is not None:
                if isinstance(event, IncomingCall):
                    self.hold(layer, event.session)
                elif isinstance(event, SessionStateChanged) and event.new is InviteState.DISCONNECTED:
                    self.ended.add(id(event.session))

    def pick(
        self, index: int, layer: SessionLayer | None = None
    ) -> tuple[SessionLayer, InviteSession] | None:
        live = [
            (lay, s)
            for lay, s in self.held
            if s.state is not InviteState.DISCONNECTED and (layer is None or lay is layer)
        ]
        return live[index % len(live)] if live else None

    @rule()
    def place_call(self) -> None:
        if sum(1 for _, s in self.held if s.state is not InviteState.DISCONNECTED) < 6:
            self.hold(
                self.alice, self.alice.invite("sip:bob@127.0.0.2:5060", destination=B, now=self.net.now)
            )

    @rule(index=st.integers(0, 10), code=st.sampled_from([180, 183, 200, 200, 486, 603]))
    def answer(self, index: int, code: int) -> None:
        picked = self.pick(index, self.bob)
        if picked is not None:
            try:
                self.bob.answer(picked[1], code, self.net.now)
            except LocalProtocolError:
                pass  # not ringing any more (cancelled, answered, ...): a legal refusal

    @rule(index=st.integers(0, 10))
    def hangup(self, index: int) -> None:
        picked = self.pick(index)
        if picked is not None:
            picked[0].hangup(picked[1], self.net.now)

    @rule(
        index=st.integers(0, 10),
        direction=st.sampled_from(["sendonly", "sendrecv", "inactive"]),
        update=st.booleans(),
    )
    def change_media(self, index: int, direction: str, update: bool) -> None:
        picked = self.pick(index)
        if picked is not None:
            layer, session = picked
            try:
                (layer.update if update else layer.reinvite)(session, self.net.now, direction=direction)
            except LocalProtocolError:
                pass  # not confirmed, or an exchange already in progress: a legal refusal

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.5, 2.0, 10.0, 40.0, 70.0]))
    def advance(self, seconds: float) -> None:
        self.net.run_until(self.net.now + seconds)
        self.drain()

    @invariant()
    def events_are_read(self) -> None:
        if hasattr(self, "net"):
            self.drain()

    def teardown(self) -> None:
        if not hasattr(self, "net"):
            return
        for layer, session in self.held:
            if session.state is not InviteState.DISCONNECTED:
                layer.hangup(session, self.net.now)
        self.net.run_until(self.net.now + 120)  # the CANCELs, BYEs and their transactions
        self.drain()
        for layer, session in self.held:
            if session.state is not InviteState.DISCONNECTED:  # a peer that never answered the INVITE
                layer.hangup(session, self.net.now)
        self.net.run_until(self.net.now + 120)
        self.drain()
        for _, session in self.held:
            assert session.state is InviteState.DISCONNECTED, session
            assert id(session) in self.ended
        for _, session in self.held:  # the documented order: session first, dialog second
            dialog = session.dialog
            session.dec_ref(TEST)
            dialog.dec_ref(TEST)
        self.drain()
        self.net.run_until_idle(limit=600)
        self.drain()
        for layer in (self.alice, self.bob):
            assert layer.sessions == []
            report = layer.close(self.net.now)
            assert not report, report.format()


Calls.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestCalls = Calls.TestCase
