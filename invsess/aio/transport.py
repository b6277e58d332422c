"""asyncio transports: UDP, and TCP/TLS connections with stream framing.

They move bytes and nothing else: every received datagram or framed message goes to the
driver's ``feed``; every send first passes the :class:`~invsess.aio.guard.SendGuard`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import structlog

from invsess.aio.guard import SendGuard, SendRefusedError
from invsess.sip import PING, PONG, FramingError, ParserLimits, StreamFramer

Address = tuple[str, int]
Feed = Callable[[bytes, Address, str], None]
log = structlog.get_logger("invsess.transport")


def _addr(raw: tuple[str, int] | tuple[str, int, int, int]) -> Address:
    return raw[0], raw[1]


class UdpTransport(asyncio.DatagramProtocol):
    """One UDP listener."""

    def __init__(self, feed: Feed, guard: SendGuard) -> None:
        self._feed = feed
        self._guard = guard
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Store the transport (asyncio callback)."""
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Hand the datagram to the endpoint (asyncio callback)."""
        self._feed(data, _addr(addr), "udp")

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable...) are logged; the transaction timers handle loss."""
        log.debug("udp error", error=str(exc))

    def send(self, data: bytes, destination: Address) -> None:
        """Send one datagram (after the guard)."""
        self._guard.check(destination)
        if self.transport is not None:
            self.transport.sendto(data, destination)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framing in, keep-alive pongs out, closed on a framing error."""

    def __init__(
        self, feed: Feed, kind: str, limits: ParserLimits, on_lost: Callable[[StreamConnection], None]
    ) -> None:
        self._feed = feed
        self.kind = kind
        self._framer = StreamFramer(limits)
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = None
        self.last_activity = 0.0
        self._pending: list[bytes] = []
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the peer; flush what was queued while connecting (asyncio callback)."""
        self.transport = transport  # type: ignore[assignment]
        self.peer = _addr(transport.get_extra_info("peername"))
        self.last_activity = asyncio.get_running_loop().time()
        for data in self._pending:
            transport.write(data)  # type: ignore[attr-defined]
        self._pending.clear()
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        """Frame and feed (asyncio callback)."""
        self.last_activity = asyncio.get_running_loop().time()
        try:
            frames = self._framer.feed(data)
        except FramingError as exc:
            log.info(
                "closing connection after a framing error",
                peer=self.peer,
                transport=self.kind,
                error=str(exc),
            )
            if self.transport is not None:
                self.transport.close()
            return
        for frame in frames:
            if frame is PING:
                self.write(PONG)
            elif isinstance(frame, bytes) and self.peer is not None:
                self._feed(frame, self.peer, self.kind)

    def write(self, data: bytes) -> None:
        """Send bytes (queued until connected)."""
        self.last_activity = asyncio.get_running_loop().time()
        if self.transport is None:
            self._pending.append(data)
        elif not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection (asyncio callback)."""
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("connection closed"))
        self._on_lost(self)


class StreamTransport:
    """TCP or TLS: a listener, and one connection per peer, reused in both directions."""

    def __init__(
        self,
        feed: Feed,
        kind: str,
        guard: SendGuard,
        limits: ParserLimits,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        idle_timeout: float = 300.0,
        on_error: Callable[[Address, str, str], None] | None = None,
    ) -> None:
        self._feed = feed
        self.kind = kind
        self._guard = guard
        self._limits = limits
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self.idle_timeout = idle_timeout
        self._on_error = on_error
        self.connections: dict[Address, StreamConnection] = {}
        self.server: asyncio.Server | None = None

    def _protocol(self) -> StreamConnection:
        return StreamConnection(self._feed, self.kind, self._limits, self._lost)

    def _lost(self, conn: StreamConnection) -> None:
        if conn.peer is not None and self.connections.get(conn.peer) is conn:
            del self.connections[conn.peer]

    def _accepted(self) -> StreamConnection:
        conn = self._protocol()
        original = conn.connection_made

        def made(transport: asyncio.BaseTransport) -> None:
            original(transport)
            if conn.peer is not None:
                self.connections[conn.peer] = conn

        conn.connection_made = made  # type: ignore[method-assign]
        return conn

    async def listen(self, host: str, port: int) -> Address:
        """Start listening; returns the bound address (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accepted, host, port, ssl=self._server_ssl)
        return _addr(self.server.sockets[0].getsockname())

    def send(self, data: bytes, destination: Address) -> None:
        """Send over the connection to ``destination``, opening one if there is none."""
        conn = self.connections.get(destination)
        if conn is None:
            self._guard.check(destination)
            conn = self._protocol()
            self.connections[destination] = conn
            asyncio.get_running_loop().create_task(self._connect(conn, destination))
        conn.write(data)

    async def _connect(self, conn: StreamConnection, destination: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(
                lambda: conn,
                destination[0],
                destination[1],
                ssl=self._client_ssl,
                server_hostname=destination[0] if self._client_ssl else None,
            )
        except (OSError, ssl.SSLError) as exc:
            log.info("connection failed", destination=destination, transport=self.kind, error=str(exc))
            if self.connections.get(destination) is conn:
                del self.connections[destination]
            if self._on_error is not None:
                self._on_error(destination, self.kind, exc.strerror or str(exc))

    def close_idle(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout``."""
        for conn in list(self.connections.values()):
            if conn.transport is not None and now - conn.last_activity > self.idle_timeout:
                conn.transport.close()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self.connections.clear()


__all__ = ["SendRefusedError", "StreamConnection", "StreamTransport", "UdpTransport"]
