"""Alice and Bob for the session tests, made of the shipped harness.

Everything here is the plugin's: the network (simulated, or real loopback sockets with
``--sip-network=loopback``), the user agents (:class:`~invsess.testing.plugin.UserAgentFactory`)
and the event loop (:class:`~invsess.testing.CallDriver`). :class:`World` only names two agents
and keeps a log of their events in the shape the session tests read; :func:`layer_at` and
:func:`finish` are the same factory and driver for tests that script the other side.
"""

from __future__ import annotations

from typing import Any

from invsess.inv import (
    IncomingCall,
    InviteSession,
    MediaUpdated,
    SessionEvent,
    SessionLayer,
    SessionStateChanged,
)
from invsess.sdp import SessionDescription, parse_sdp
from invsess.testing import CallDriver, LinkProfile, SimNetwork
from invsess.testing.loopback import LoopbackNetwork
from invsess.testing.plugin import UserAgentFactory
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
DEFAULT_ALLOW = ("INVITE", "BYE", "UPDATE", "PRACK")


def agreed_direction(session: InviteSession) -> str:
    """The direction of the first stream we agreed to last."""
    local = session.negotiator.active_local
    assert local is not None
    return local.media[0].direction


def network(seed: int, profile: LinkProfile | None = None) -> SimNetwork:
    """The network of the plugin's switch: simulated, or real loopback sockets (closed by conftest)."""
    if NETWORK == "loopback":
        net = LoopbackNetwork(seed, default=profile or LinkProfile())
        OPEN.append(net)
        return net
    return SimNetwork(seed, default=profile or LinkProfile())


class World:
    """Alice and Bob, user agents of the plugin's factory on one network, driven by a CallDriver."""

    def __init__(
        self,
        seed: int = 1,
        profile: LinkProfile | None = None,
        *,
        alice: dict[str, Any] | None = None,
        bob: dict[str, Any] | None = None,
        allow: tuple[str, ...] = DEFAULT_ALLOW,
        bob_allow: tuple[str, ...] | None = None,
    ) -> None:
        """``alice``/``bob``: SessionLayer keyword arguments (``timer=``, ``rel100=``)."""
        self.net = network(seed, profile)
        # On the real clock, T1 = 20 ms keeps waits for the transactions' ends (64*T1) short.
        timers = TimerConfig(t1=0.02, t2=0.08, t4=0.1) if NETWORK == "loopback" else TimerConfig()
        agents = UserAgentFactory(self.net)
        common = {"supported": ("100rel", "timer"), "timers": timers}
        self.alice = agents(A, sdp=ALICE_SDP, user="alice", seed=seed, allow=allow, **common, **(alice or {}))
        self.bob = agents(B, sdp=BOB_SDP, user="bob", seed=seed + 100, allow=bob_allow or allow, **common,
                          **(bob or {}))  # fmt: skip
        self.driver = CallDriver(self.net, [self.alice, self.bob])
        self.driver.watch(self._seen)
        #: (who, kind, detail) per event: ("bob", "state", ("EARLY", None)), ("bob", "incoming",
        #: session), ("alice", "media", "sendonly").
        self.log: list[tuple[str, str, object]] = []

    def _seen(self, layer: SessionLayer, event: SessionEvent, now: float) -> None:
        who = "alice" if layer is self.alice else "bob"
        if isinstance(event, SessionStateChanged):
            self.log.append((who, "state", (event.new.name, event.cause)))
        elif isinstance(event, IncomingCall):
            self.log.append((who, "incoming", event.session))
        elif isinstance(event, MediaUpdated):
            media = event.local.media
            self.log.append((who, "media", media[0].direction if media else None))

    def drain(self) -> list[tuple[str, str, object]]:
        """Read every pending event of both sides; returns the new log entries."""
        before = len(self.log)
        self.driver.pump()
        return self.log[before:]

    def run(self, seconds: float = 0.5) -> list[tuple[str, str, object]]:
        """Run the network ``seconds`` on, reading events all along; returns the new log entries."""
        before = len(self.log)
        self.driver.run(seconds)
        return self.log[before:]

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
        finish(self.net, self.alice, self.bob, limit=120)


def layer_at(
    net: SimNetwork,
    address: tuple[str, int],
    *,
    seed: int,
    user: str,
    sdp: SessionDescription = ALICE_SDP,
    allow: tuple[str, ...] = DEFAULT_ALLOW,
    **options: Any,
) -> SessionLayer:
    """One user agent of the plugin's factory on ``net`` (MALLOC_DEBUG; its endpoint supports
    what the layer does); ``options``: ``timer=``, ``rel100=``, ``keep_forks=`` ..."""
    return UserAgentFactory(net)(address, sdp=sdp, user=user, seed=seed, allow=allow, **options)


def finish(net: SimNetwork, *layers: SessionLayer, limit: float = 200.0) -> None:
    """Settle (a CallDriver runs until nothing is pending, reading every event, so the releases
    run), then require no session left and nothing leaked."""
    CallDriver(net, layers).settle(limit)
    for layer in layers:
        assert layer.sessions == []
        assert not layer.endpoint.close(), layer.endpoint.leak_report().format()
