"""A pair of endpoints wired in memory, driven in virtual time (h11's ConnectionPair model)."""

from __future__ import annotations

from collections.abc import Callable

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.sip import NameAddress, Request, make_request, parse_uri
from invsess.transaction import Outgoing, TimerConfig

UAC_ADDR = ("127.0.0.1", 5061)
UAS_ADDR = ("127.0.0.1", 5062)


class EndpointPair:
    """``uac`` and ``uas`` exchanging bytes through :meth:`pump`, with a drop filter."""

    def __init__(
        self,
        *,
        transport: str = "udp",
        uas_config: EndpointConfig | None = None,
        timers: TimerConfig | None = None,
    ) -> None:
        timers = timers or TimerConfig()
        self.transport = transport
        self.uac = Endpoint(EndpointConfig(seed=1, malloc_debug=True, timers=timers))
        self.uas = Endpoint(
            uas_config
            or EndpointConfig(
                seed=2, malloc_debug=True, timers=timers, allow=("INVITE", "OPTIONS", "BYE", "MESSAGE")
            )
        )
        self.uac.add_listener(transport, UAC_ADDR)
        self.uas.add_listener(transport, UAS_ADDR)
        self.now = 0.0
        self.wire: list[tuple[float, str, Outgoing]] = []
        #: Return True to lose a message: (time, direction "uac>uas"/"uas>uac", outgoing).
        self.drop: Callable[[float, str, Outgoing], bool] = lambda *_: False

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
        """Deliver everything queued, both ways, until quiet."""
        moved = True
        while moved:
            moved = False
            for src, dst, name, addr in (
                (self.uac, self.uas, "uac>uas", UAC_ADDR),
                (self.uas, self.uac, "uas>uac", UAS_ADDR),
            ):
                for out in src.datagrams_to_send():
                    moved = True
                    self.wire.append((self.now, name, out))
                    if not self.drop(self.now, name, out):
                        dst.receive(out.data, addr, out.transport, self.now)

    def advance(self, to: float) -> None:
        """Run both endpoints' timers in order up to ``to``, pumping after each."""
        while True:
            deadlines = [
                d for d in (self.uac.next_deadline(), self.uas.next_deadline()) if d is not None and d <= to
            ]
            if not deadlines:
                break
            self.now = min(deadlines)
            self.uac.handle_timers(self.now)
            self.uas.handle_timers(self.now)
            self.pump()
        self.now = to

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
