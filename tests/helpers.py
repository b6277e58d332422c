"""Two endpoints for the transaction and endpoint tests, made of the shipped harness.

The plugin's :class:`~invsess.testing.plugin.EndpointFactory` makes them and a
:class:`~invsess.testing.SimNetwork` (no latency: a message arrives when it is sent) joins them;
losses are the network's :meth:`~invsess.testing.SimNetwork.drop_if`. :class:`EndpointPair`
names the two ends (h11's ConnectionPair) and reads the wire in the shape these tests assert on.
"""

from __future__ import annotations

from collections.abc import Callable

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.sip import NameAddress, Request, make_request, parse_uri
from invsess.testing import LinkProfile, SimNetwork
from invsess.testing.plugin import EndpointFactory
from invsess.trace import MessageEvent
from invsess.transaction import Outgoing, TimerConfig

UAC_ADDR = ("127.0.0.1", 5061)
UAS_ADDR = ("127.0.0.1", 5062)


class EndpointPair:
    """``uac`` and ``uas`` exchanging messages with no delay; ``drop`` loses some of them."""

    def __init__(
        self,
        *,
        transport: str = "udp",
        uas_config: EndpointConfig | None = None,
        timers: TimerConfig | None = None,
    ) -> None:
        timers = timers or TimerConfig()
        self.transport = transport
        self.net = SimNetwork(0, default=LinkProfile(latency=0.0))
        endpoints = EndpointFactory(self.net)
        self.uac = endpoints(UAC_ADDR, config=EndpointConfig(seed=1, malloc_debug=True, timers=timers),
                             transports=(transport,))  # fmt: skip
        self.uas = endpoints(
            UAS_ADDR,
            config=uas_config
            or EndpointConfig(
                seed=2, malloc_debug=True, timers=timers, allow=("INVITE", "OPTIONS", "BYE", "MESSAGE")
            ),
            transports=(transport,),
        )
        #: Return True to lose a message: (time, direction "uac>uas"/"uas>uac", outgoing).
        self.drop: Callable[[float, str, Outgoing], bool] = lambda *_: False
        self.net.drop_if(
            lambda e: self.drop(e.time, _direction(e), Outgoing(e.data, e.destination, e.transport))
        )

    @property
    def now(self) -> float:
        """The network's clock."""
        return self.net.now

    @now.setter
    def now(self, when: float) -> None:
        """Move the clock to ``when`` without firing anything (the next pump happens then)."""
        self.net.now = when

    @property
    def wire(self) -> list[tuple[float, str, Outgoing]]:
        """Every message sent, dropped or not: (time, direction, outgoing)."""
        return [(e.time, _direction(e), Outgoing(e.data, e.destination, e.transport)) for e in self.net.trace]

    def request(
        self, method: str = "INVITE", *, body: bytes = b"", headers=(), call_id: str = "call-1", cseq: int = 1
    ) -> Request:
        return make_request(
            method,
            f"sip:bob@{UAS_ADDR[0]}:{UAS_ADDR[1]}",
            via=self.uac.via(self.transport),
            from_=NameAddress(parse_uri("sip:alice@127.0.0.1"), "Alice", (("tag", "alicetag"),)),
            to=NameAddress(parse_uri("sip:bob@127.0.0.1")),
            call_id=call_id,
            cseq=cseq,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )

    def pump(self) -> None:
        """Deliver everything queued, both ways, until quiet (the clock does not move)."""
        self.net.run_until(self.net.now)

    def advance(self, to: float) -> None:
        """Run both endpoints' timers and the deliveries they cause, in order, up to ``to``."""
        self.net.run_until(to)

    def sent(self, direction: str, first_line: bytes) -> list[float]:
        """Times at which messages starting with ``first_line`` went ``direction``."""
        return [t for t, d, o in self.wire if d == direction and o.data.startswith(first_line)]

    def events(self, endpoint: Endpoint) -> list[object]:
        """Drain the events. Received messages die at the next next_event(): read them here."""
        out: list[object] = []
        while (event := endpoint.next_event()) is not None:
            out.append(event)
        return out

    def summary(self, endpoint: Endpoint) -> list[tuple[str, object]]:
        """Drain the events into (type, detail) pairs read while each message is still valid."""
        out: list[tuple[str, object]] = []
        while (event := endpoint.next_event()) is not None:
            detail: object = None
            if hasattr(event, "response"):
                detail = event.response.status_code
            elif hasattr(event, "timer"):
                detail = event.timer
            elif hasattr(event, "reason"):
                detail = event.reason
            elif hasattr(event, "request"):
                detail = event.request.method
            out.append((type(event).__name__, detail))
        return out


def _direction(event: MessageEvent) -> str:
    return "uac>uas" if event.source == UAC_ADDR else "uas>uac"
