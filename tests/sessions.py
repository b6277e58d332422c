"""Alice and Bob as two SessionLayers on one simulated network, for the session tests."""

from __future__ import annotations

from typing import Any

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    IncomingCall,
    InviteSession,
    MediaUpdated,
    SessionLayer,
    SessionStateChanged,
    option_tags,
)
from invsess.sdp import SessionDescription, parse_sdp
from invsess.testing import LinkProfile, SimNetwork
from invsess.testing.loopback import LoopbackNetwork
from invsess.transaction import TimerConfig

#: "sim" or "loopback": set from the plugin's --sip-network switch by conftest.py.
NETWORK = "sim"
#: Loopback networks of the running test (conftest closes them, even when the test failed).
OPEN: list[LoopbackNetwork] = []

A, B = ("127.0.0.1", 5060), ("127.0.0.2", 5060)
ALICE_SDP = parse_sdp(
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
BOB_SDP = parse_sdp(
    "v=0\r\no=bob 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


def agreed_direction(session: InviteSession) -> str:
    """The direction of the first stream we agreed to last."""
    local = session.negotiator.active_local
    assert local is not None
    return local.media[0].direction


class World:
    """Alice and Bob, each a SessionLayer, on one simulated network."""

    def __init__(
        self,
        seed: int = 1,
        profile: LinkProfile | None = None,
        *,
        alice: dict[str, Any] | None = None,
        bob: dict[str, Any] | None = None,
        allow: tuple[str, ...] = ("INVITE", "BYE", "UPDATE", "PRACK"),
        bob_allow: tuple[str, ...] | None = None,
    ) -> None:
        """``alice``/``bob``: SessionLayer keyword arguments (``timer=``, ``rel100=``)."""
        if NETWORK == "loopback":
            self.net: SimNetwork = LoopbackNetwork(seed, default=profile or LinkProfile())
            OPEN.append(self.net)
        else:
            self.net = SimNetwork(seed, default=profile or LinkProfile())
        supported = ("100rel", "timer")
        # On the real clock, T1 = 20 ms keeps waits for the transactions' ends (64*T1) short.
        timers = TimerConfig(t1=0.02, t2=0.08, t4=0.1) if NETWORK == "loopback" else TimerConfig()
        self.alice = SessionLayer(
            Endpoint(
                EndpointConfig(seed=seed, malloc_debug=True, allow=allow, supported=supported, timers=timers)
            ),
            ALICE_SDP,
            user="alice",
            **(alice or {}),
        )
        self.bob = SessionLayer(
            Endpoint(
                EndpointConfig(
                    seed=seed + 100,
                    malloc_debug=True,
                    allow=bob_allow or allow,
                    supported=supported,
                    timers=timers,
                )
            ),
            BOB_SDP,
            user="bob",
            **(bob or {}),
        )
        self.net.attach(self.alice, A)
        self.net.attach(self.bob, B)
        self.log: list[tuple[str, str, object]] = []

    def drain(self) -> list[tuple[str, str, object]]:
        """Every pending event of both sides, read while valid: (who, kind, detail)."""
        out: list[tuple[str, str, object]] = []
        for who, layer in (("alice", self.alice), ("bob", self.bob)):
            while (event := layer.next_event()) is not None:
                if isinstance(event, SessionStateChanged):
                    out.append((who, "state", (event.new.name, event.cause)))
                elif isinstance(event, IncomingCall):
                    out.append((who, "incoming", event.session))
                elif isinstance(event, MediaUpdated):
                    neg = event.session.negotiator
                    out.append(
                        (who, "media", neg.active_local.media[0].direction if neg.active_local else None)
                    )
        self.log += out
        return out

    def run(self, seconds: float = 0.5) -> list[tuple[str, str, object]]:
        self.net.run_until(self.net.now + seconds)
        return self.drain()

    def states(self, who: str) -> list[str]:
        return [d[0] for w, k, d in self.log if w == who and k == "state"]  # type: ignore[index]

    def call(self, *, with_offer: bool = True) -> tuple[InviteSession, InviteSession]:
        session = self.alice.invite(
            "sip:bob@127.0.0.2:5060", destination=B, now=self.net.now, with_offer=with_offer
        )
        incoming = [d for w, k, d in self.run(0.1) if k == "incoming"]
        assert len(incoming) == 1 and isinstance(incoming[0], InviteSession)
        return session, incoming[0]

    def connected(self, settle: float = 0.2) -> tuple[InviteSession, InviteSession]:
        """A call placed, answered 200 and given ``settle`` seconds to be confirmed."""
        alice, bob = self.call()
        self.bob.answer(bob, 200, self.net.now)
        self.run(settle)
        return alice, bob

    def settle(self) -> None:
        self.net.run_until_idle(limit=120)
        self.drain()
        self.drain()  # the second pass runs the releases due after the DISCONNECTED events
        for layer in (self.alice, self.bob):
            assert layer.sessions == []
            assert not layer.endpoint.close(), layer.endpoint.leak_report().format()


def layer_at(
    net: SimNetwork,
    address: tuple[str, int],
    *,
    seed: int,
    user: str,
    sdp: SessionDescription = ALICE_SDP,
    allow: tuple[str, ...] = ("INVITE", "BYE", "UPDATE", "PRACK"),
    **options: Any,
) -> SessionLayer:
    """One session layer (MALLOC_DEBUG) attached to ``net``; ``options``: timer=, rel100=.
    The endpoint supports what the layer does."""
    supported = option_tags(options.get("timer"), options.get("rel100", "off"))
    config = EndpointConfig(seed=seed, malloc_debug=True, allow=allow, supported=supported)
    layer = SessionLayer(Endpoint(config), sdp, user=user, **options)
    net.attach(layer, address)
    return layer


def finish(net: SimNetwork, *layers: SessionLayer, limit: float = 200.0) -> None:
    """Run until idle, read every event (the releases run), and require nothing left or leaked."""
    net.run_until_idle(limit=limit)
    for layer in layers:
        while layer.next_event() is not None:
            pass
    for layer in layers:
        assert layer.sessions == []
        assert not layer.endpoint.close(), layer.endpoint.leak_report().format()
