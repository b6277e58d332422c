"""The asyncio driver of :class:`~invsess.endpoint.Endpoint` (aioquic's adapter is the model).

It feeds received bytes and ``loop.time()`` into the sans-IO core, sends what the core queues
through the right transport (after the send guard), keeps exactly one ``loop.call_at`` armed at
the core's next deadline, and hands events to the application through :meth:`next_event`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable

import attrs

from invsess.address import Address, format_address
from invsess.aio.guard import SendGuard, SendRefusedError
from invsess.aio.transport import StreamLimits, StreamTransport, UdpLimits, UdpTransport
from invsess.endpoint import AnyEvent, Endpoint
from invsess.inv import SessionEvent, SessionStateChanged
from invsess.logs import get_logger
from invsess.memory import LeakReport
from invsess.node import Node
from invsess.sip.errors import FramingError, LocalProtocolError
from invsess.trace import Trace
from invsess.transaction import TRANSPORT_ERROR, Outgoing

log = get_logger("invsess.aio")

TRANSPORTS = ("udp", "tcp", "tls")


@attrs.frozen
class ListenSpec:
    """``udp:127.0.0.1:5070``, ``tcp:[::1]:5070``, ``tls:127.0.0.1:5071`` (port 0: any free one)."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        """Parse ``transport:host:port`` (IPv6 hosts in brackets)."""
        transport, sep, rest = text.partition(":")
        transport = transport.lower()
        if not sep or transport not in TRANSPORTS:
            raise ValueError(f"listen spec must be udp:|tcp:|tls:HOST:PORT, not {text!r}")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]:")
        else:
            host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"invalid host or port in {text!r}")
        ipaddress.ip_address(host)  # an address, not a name: nothing here resolves DNS
        return cls(transport, host, int(port))


class AsyncEndpoint:
    """Runs an :class:`Endpoint` on the asyncio loop; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        core: Node[SessionEvent] | None = None,
        guard: SendGuard | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        idle_timeout: float | None = None,
        trace: Trace | None = None,
        stream_limits: StreamLimits | None = None,
        udp_limits: UdpLimits | None = None,
    ) -> None:
        """``stream_limits`` and ``udp_limits`` bound the transports (docs/hardening.md);
        ``idle_timeout``, when given, overrides ``stream_limits.idle_timeout``."""
        self.endpoint = endpoint
        #: The node that bytes, timers and event reads go to: the endpoint itself, or a node
        #: over it (a SessionLayer) — which must wrap this endpoint.
        self.core: Node[AnyEvent] | Node[SessionEvent] = core if core is not None else endpoint
        if core is not None and getattr(core, "endpoint", None) is not endpoint:
            raise LocalProtocolError("the core node must wrap this endpoint")
        #: When given, every message received and sent is recorded (``invsess ladder`` draws it).
        self.trace = trace
        self.guard = guard or SendGuard()
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        limits = stream_limits or StreamLimits()
        if idle_timeout is not None:
            limits = attrs.evolve(limits, idle_timeout=idle_timeout)
        self.stream_limits = limits
        self.udp_limits = udp_limits or UdpLimits()
        self._loop = asyncio.get_running_loop()
        self._udp: dict[str, UdpTransport] = {}
        self._udp_all: list[UdpTransport] = []
        self._streams: dict[str, StreamTransport] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._wakeup = asyncio.Event()
        self._hurried = False
        self.refused = 0
        #: Called after every flush (after every datagram, timer and application call): how
        #: an adapter of a sans-IO part beside the core's events (a registration) learns that
        #: the part may have news, without a task polling it.
        self.flush_hooks: list[Callable[[], None]] = []
        stats = endpoint.limit_stats
        streams = self._streams.values
        stats.gauge("connections", lambda: sum(s.open for s in streams()))
        stats.gauge("handshakes", lambda: sum(s.handshakes for s in streams()), limits.max_handshakes)
        stats.gauge("buffered_bytes", lambda: sum(s.buffered for s in streams()), limits.max_buffered)
        stats.gauge("udp_queued", lambda: sum(u.queued for u in self._udp_all), self.udp_limits.max_queue)
        stats.maxima["connections"] = limits.effective_max_connections()

    # -- set-up ------------------------------------------------------------------------------

    async def listen(self, spec: ListenSpec | str, *, reuse_port: bool = False) -> Address:
        """Open a listener; returns the bound address and tells the core about it.
        ``reuse_port``: a UDP port shared with other processes (see :meth:`UdpTransport.open`;
        TCP and TLS are not shared)."""
        if isinstance(spec, str):
            spec = ListenSpec.parse(spec)
        if reuse_port and spec.transport != "udp":
            raise LocalProtocolError(f"only udp listeners share a port, not {spec.transport}")
        if spec.transport == "udp":
            udp = UdpTransport(
                self._feed,
                self.flush,
                self.guard,
                self.endpoint.limit_stats,
                shed=self._shed,
                admit=self._admitted,
                limits=self.udp_limits,
            )
            bound: Address = await udp.open(spec.host, spec.port, reuse_port=reuse_port)
            self.endpoint.driver_admits("udp")
            self._udp["udp"] = udp
            self._udp_all.append(udp)
        else:
            if spec.transport == "tls" and self._server_ssl is None:
                raise LocalProtocolError("a tls listener needs server_ssl")
            stream = self._streams.get(spec.transport)
            if stream is None:
                stream = StreamTransport(
                    self._feed,
                    self.flush,
                    spec.transport,
                    guard=self.guard,
                    parser_limits=self.endpoint.config.limits,
                    stats=self.endpoint.limit_stats,
                    limits=self.stream_limits,
                    server_ssl=self._server_ssl if spec.transport == "tls" else None,
                    client_ssl=self._client_ssl if spec.transport == "tls" else None,
                    on_error=self._connection_failed,
                    on_unframeable=self._unframeable,
                )
                self._streams[spec.transport] = stream
            bound = await stream.listen(spec.host, spec.port)
        self.endpoint.add_listener(spec.transport, bound)
        log.info("listening", transport=spec.transport, address=f"{bound[0]}:{bound[1]}")
        return bound

    # -- the loop ----------------------------------------------------------------------------

    def now(self) -> float:
        """The clock the core is driven with."""
        return self._loop.time()

    def _feed(self, data: bytes, source: Address, transport: str) -> None:
        """One message in; the transport calls :meth:`flush` after its batch."""
        if log.is_enabled_for(logging.DEBUG):  # nothing of the line is built unless it is written
            log.debug("rx", transport=transport, source=format_address(source), line=_first_line(data))
        if self.trace is not None:
            local = self.endpoint.listeners.get(transport, ("0.0.0.0", 0))  # noqa: S104 - a label only
            self.trace.message(self.now(), source, local, transport, data)
        self.core.receive(data, source, transport, self.now())

    def _admitted(self, data: bytes, source: Address) -> bool:
        """The per-source rate, counted as a datagram is read: a flood is counted as it
        arrives (not as it is served), and dropped before it takes a place in the queue."""
        return self.endpoint.admit(data, source, self.now())

    def _shed(self, data: bytes, source: Address, transport: str) -> None:
        """New work the UDP reader had no time for: a cheap 503 (flushed with its batch)."""
        self.endpoint.shed(data, source, transport, self.now())

    def _unframeable(self, head: bytes, error: FramingError, source: Address, transport: str) -> None:
        """A streamed message that cannot be framed: its answer (513...) goes out now, before
        the connection closes."""
        self.endpoint.answer_unparsable(head, error, source, transport)
        self.flush()

    def flush(self) -> None:
        """Send everything the core queued, re-arm the timer, wake event readers. A send that
        fails is reported to the core, which may queue more (a CANCEL, a BYE): sent too."""
        while items := self.endpoint.datagrams_to_send():
            for item in items:
                self._send(item)
        self._arm()
        self._wakeup.set()
        for hook in list(self.flush_hooks):
            hook()

    def _send(self, item: Outgoing) -> None:
        if log.is_enabled_for(logging.DEBUG):
            destination = format_address(item.destination)
            log.debug("tx", transport=item.transport, destination=destination, line=_first_line(item.data))
        try:
            if item.transport == "udp":
                udp = self._udp.get("udp")
                if udp is None:
                    raise LocalProtocolError("no udp listener")
                udp.send(item.data, item.destination)
            else:
                stream = self._streams.get(item.transport)
                if stream is None:
                    raise LocalProtocolError(f"no {item.transport} listener")
                stream.send(item.data, item.destination)
            if self.trace is not None:
                self._record_sent(item, "delivered")
        except SendRefusedError as exc:
            if self.trace is not None:
                self._record_sent(item, "refused")
            self.refused += 1
            log.warning("send refused", error=str(exc))
            self.core.transport_error(
                item.destination, item.transport, self.now(), reason=f"{TRANSPORT_ERROR}: {exc}"
            )

    def _record_sent(self, item: Outgoing, fate: str) -> None:
        if self.trace is not None:
            local = self.endpoint.listeners.get(item.transport, ("0.0.0.0", 0))  # noqa: S104 - a label only
            self.trace.message(self.now(), local, item.destination, item.transport, item.data, fate)

    def _record_state(self, event: SessionStateChanged) -> None:
        if self.trace is not None:
            dialog = event.session.dialog
            where = self.endpoint.listeners.get(dialog.transport, ("0.0.0.0", 0))  # noqa: S104 - a label only
            self.trace.state(self.now(), where, "session", event.old.name, event.new.name, dialog.call_id)

    def _connection_failed(self, destination: Address, transport: str, error: str = "") -> None:
        reason = f"{TRANSPORT_ERROR}: {transport} connection to {format_address(destination)} failed"
        self.core.transport_error(
            destination, transport, self.now(), reason=f"{reason}: {error}" if error else reason
        )
        self.flush()

    def _arm(self) -> None:
        """One ``call_at`` at the core's next deadline; left alone when that did not change."""
        deadline = self.core.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline, self._timer, self._timer_at = self._timer_at, None, None
        # asyncio may run a handle up to its clock resolution early: it is due all the same,
        # so the core is told the deadline's time, not re-armed at the same deadline again.
        now = self.now() if deadline is None else max(deadline, self.now())
        self.core.handle_timers(now)
        self.flush()

    def poll_event(self) -> AnyEvent | SessionEvent | None:
        """The next event from the core, or None (with a trace, a change of state is recorded
        as it is read)."""
        event = self.core.next_event()
        if self.trace is not None and isinstance(event, SessionStateChanged):
            self._record_state(event)
        return event

    async def news(self) -> None:
        """Return after the next flush (a datagram, a timer or a call of the application that
        may have made events)."""
        self._wakeup.clear()
        await self._wakeup.wait()

    async def next_event(self, timeout: float | None = None) -> AnyEvent | SessionEvent | None:
        """The next event from the core (raises TimeoutError after ``timeout``). With a trace,
        a session's change of state is recorded in it as it is read."""
        async with asyncio.timeout(timeout):
            while True:
                event = self.core.next_event()
                if isinstance(event, SessionStateChanged) and self.trace is not None:
                    self._record_state(event)
                if event is not None:
                    return event
                self._wakeup.clear()
                await self._wakeup.wait()

    # -- shutdown ----------------------------------------------------------------------------

    def hurry(self) -> None:
        """Make a :meth:`close` under way (or the next one) stop waiting for transactions."""
        self._hurried = True

    async def close(self, timeout: float = 5.0) -> LeakReport:
        """Wait (up to ``timeout``, or until :meth:`hurry`) for transactions to finish, close
        everything, report leaks."""
        deadline = self.now() + timeout
        while self.endpoint.transactions() and self.now() < deadline and not self._hurried:
            await asyncio.sleep(min(0.05, max(deadline - self.now(), 0)))
        if self._timer is not None:
            self._timer.cancel()
        report = self.core.close(self.now())
        for udp in self._udp_all:
            udp.close()
        for stream in self._streams.values():
            await stream.close()
        if report:
            log.warning("leaks at close", report=report.format())
        return report


def _first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0][:120].decode("utf-8", "replace")
