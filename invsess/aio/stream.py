"""The TCP and TLS transports: our own accept loop under caps, one connection per peer reused
in both directions, stream framing with a read deadline per message, a TLS handshake timeout,
budgets for buffered bytes in and out, 513 for what is too large to frame.

Connections over ``max_connections`` (lowered to what ``RLIMIT_NOFILE`` allows) or
``max_connections_per_ip`` are closed at once; running out of file descriptors pauses accepting
for ``accept_retry`` seconds. Either is a warning at most once a minute, not a traceback per
attempt. Connections never reference themselves through a cycle, so closing frees them without
the cycle collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Callable

from invsess.address import Address
from invsess.aio.guard import SendGuard
from invsess.aio.limits import StreamLimits
from invsess.endpoint.limits import LimitStats, Rejection
from invsess.logs import get_logger
from invsess.sip import PING, PONG, FramingError, ParserLimits, StreamFramer

Feed = Callable[[bytes, Address, str], None]
Flush = Callable[[], None]
Unframeable = Callable[[bytes, FramingError, Address, str], None]
log = get_logger("invsess.transport")

_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: SO_LINGER on, zero seconds: close() sends RST, so a refused connection leaves no TIME_WAIT.
_RESET = struct.pack("ii", 1, 0)
#: A warning about the same limit is logged at most this often (the next says how many were not).
WARN_EVERY = 60.0


def _addr(raw: tuple[str, int] | tuple[str, int, int, int]) -> Address:
    return raw[0], raw[1]


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framing in, keep-alive pongs out, under its transport's
    limits (read deadline, buffer budget, write buffer)."""

    def __init__(self, owner: StreamTransport, peer: Address | None = None, *, inbound: bool = False) -> None:
        """``inbound``: accepted from a peer, which must then send its first message within
        ``read_timeout`` of connecting (we opened the others: they may stay silent)."""
        self._owner = owner
        self.inbound = inbound
        self.kind = owner.kind
        self._framer = StreamFramer(owner.parser_limits)
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = peer
        self.last_activity = owner.now()
        self.closed = False
        self._pending: list[bytes] = []
        self._read_deadline: asyncio.TimerHandle | None = None
        self._counted_buffer = 0
        self.counted = False  # in its transport's connection counts (until it is lost)

    def __repr__(self) -> str:
        return f"<StreamConnection {self.kind} {self.peer} {'closed' if self.closed else 'open'}>"

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message held for this connection."""
        return self._framer.buffered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the peer; flush what was queued while connecting (asyncio callback)."""
        self.transport = transport  # type: ignore[assignment]
        if self.peer is None:
            self.peer = _addr(transport.get_extra_info("peername"))
        self.last_activity = self._owner.now()
        for data in self._pending:
            self.write(data)
        self._pending.clear()
        if self.inbound:  # a connection that never says anything is a slowloris too
            self._arm_deadline()
        self._owner._made(self)

    def data_received(self, data: bytes) -> None:
        """Frame and feed (asyncio callback)."""
        if self.closed:
            return
        owner = self._owner
        self.last_activity = owner.now()
        try:
            frames = self._framer.feed(data)
        except FramingError as exc:
            owner._unframeable(self, exc)
            self._drop_buffer()
            return
        if frames:
            self._cancel_deadline()  # a message completed: a new one starts its own clock
        self._account_buffer()
        if self._framer.buffered and self._read_deadline is None:
            self._arm_deadline()
        for frame in frames:
            if frame is PING:
                self.write(PONG)
            elif isinstance(frame, bytes) and self.peer is not None:
                owner._feed(frame, self.peer, self.kind)
                owner._flush()  # each message answered before the next is read, as peers expect
        if not self.closed:
            owner._check_buffers(self)

    def _account_buffer(self) -> None:
        now = self._framer.buffered
        self._owner.buffered += now - self._counted_buffer
        self._counted_buffer = now

    def _drop_buffer(self) -> None:
        """Nothing more is read: the unfinished message goes, and its clock with it."""
        self.closed = True
        self._cancel_deadline()
        self._framer = StreamFramer(self._owner.parser_limits)
        self._account_buffer()

    def _arm_deadline(self) -> None:
        self._read_deadline = asyncio.get_running_loop().call_at(
            self.last_activity + self._owner.limits.read_timeout, self._read_expired
        )

    def _read_expired(self) -> None:
        # Armed at a message's first byte (or when accepted), cancelled when a message (or a
        # keep-alive) completes: firing means the peer is too slow, whatever it trickled in.
        self._read_deadline = None
        if not self.closed:
            self.abort(Rejection.READ_TIMEOUT, "no complete message within read_timeout")

    def _cancel_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def write(self, data: bytes) -> None:
        """Send bytes (queued until connected); a peer that does not read is cut off."""
        if self.closed:
            return
        self.last_activity = self._owner.now()
        transport = self.transport
        if transport is None:
            self._pending.append(data)
            return
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self._owner.limits.max_write_buffer:
            self.abort(Rejection.WRITE_BUFFER, "the peer does not read what we send")

    def close(self, reason: Rejection | None = None, why: str = "") -> None:
        """Close after what is queued was written (counted under ``reason`` when given)."""
        if reason is not None:
            self._owner.stats.reject(reason)
            log.info("closing connection", peer=self.peer, transport=self.kind, reason=why)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._drop_buffer()

    def abort(self, reason: Rejection, why: str) -> None:
        """Close at once (nothing more is written), counted under ``reason``."""
        self._owner.stats.reject(reason)
        log.info("closing connection", peer=self.peer, transport=self.kind, reason=why)
        if self.transport is not None:
            self.transport.abort()
        self._drop_buffer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and drop every reference it holds (asyncio callback)."""
        self._drop_buffer()
        self._pending.clear()
        if self.transport is not None:
            # CPython < 3.12 keeps the socket transport in a cycle with itself through a
            # bound method (gh-100348, fixed in 3.12): break it, so that closing frees it
            # without the cycle collector. asyncio no longer reads it once we are called.
            # (uvloop's transports are Cython objects without a __dict__ and no such cycle.)
            state = getattr(self.transport, "__dict__", None)
            if state is not None:
                state.pop("_read_ready_cb", None)
        self.transport = None
        self._owner._lost(self)


class StreamTransport:
    """TCP or TLS: a listener with its own accept loop, and one connection per peer, reused in
    both directions; see the module docstring for the limits."""

    def __init__(
        self,
        feed: Feed,
        flush: Flush,
        kind: str,
        *,
        guard: SendGuard,
        parser_limits: ParserLimits,
        stats: LimitStats,
        limits: StreamLimits | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        on_error: Callable[[Address, str, str], None] | None = None,
        on_unframeable: Unframeable | None = None,
    ) -> None:
        self._feed = feed
        self._flush = flush
        self.kind = kind
        self._guard = guard
        self.parser_limits = parser_limits
        self.stats = stats
        self.limits = limits or StreamLimits()
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._on_error = on_error
        self._on_unframeable = on_unframeable
        self._loop = asyncio.get_running_loop()
        #: Connections that completed their set-up, by peer address (what sends look up).
        self.connections: dict[Address, StreamConnection] = {}
        #: Sockets open, set-up included (what the caps count), in all and by peer IP.
        self.open = 0
        self.by_ip: Counter[str] = Counter()
        self.handshakes = 0
        #: Bytes of unfinished messages held by all connections.
        self.buffered = 0
        self.accept_paused = False
        self._listeners: list[socket.socket] = []
        self._resume: asyncio.TimerHandle | None = None
        self._warned: dict[str, tuple[float, int]] = {}  # what -> (last logged, not logged since)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def now(self) -> float:
        """The loop's clock."""
        return self._loop.time()

    # -- accepting ---------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> Address:
        """Start listening; returns the bound address (port 0 picks a free one)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=self.limits.backlog)
        sock.setblocking(False)
        self._listeners.append(sock)
        self._loop.add_reader(sock.fileno(), self._accept_ready, sock)
        if self._sweeper is None:
            self._sweeper = self._loop.create_task(self._sweep())
        return _addr(sock.getsockname())

    def _accept_ready(self, listener: socket.socket) -> None:
        total = self.limits.effective_max_connections()
        per_ip = self.limits.effective_per_ip(total)
        for _ in range(self.limits.backlog):
            try:
                sock, raw = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self._pause(exc)
                else:
                    log.warning("accept failed", transport=self.kind, error=str(exc))
                return
            if self.accept_paused:
                self.accept_paused = False
                log.info("accepting connections again", transport=self.kind)
            self._admit(sock, _addr(raw), total, per_ip)

    def _admit(self, sock: socket.socket, peer: Address, total: int, per_ip: int) -> None:
        tls = self._server_ssl is not None
        reason = None
        if self.open >= total:
            reason = Rejection.CONNECTIONS
        elif self.by_ip[peer[0]] >= per_ip:
            reason = Rejection.CONNECTIONS_PER_IP
        elif tls and self.handshakes >= self.limits.max_handshakes:
            reason = Rejection.HANDSHAKES
        if reason is not None:
            self.stats.reject(reason)
            self._warn(
                "cap",
                "connection limit reached: new connections are closed at once",
                limit=reason.value,
                open=self.open,
                max_connections=total,
                max_connections_per_ip=per_ip,
            )
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            sock.close()
            return
        sock.setblocking(False)
        conn = StreamConnection(self, peer, inbound=True)
        self._count(conn, 1)
        if tls:
            self.handshakes += 1  # now, not when the task runs: a burst of accepts sees it
        task = self._loop.create_task(self._start(conn, sock, tls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, conn: StreamConnection, sock: socket.socket, tls: bool) -> None:
        started = self.now()
        try:
            await self._loop.connect_accepted_socket(
                lambda: conn,
                sock,
                ssl=self._server_ssl,
                ssl_handshake_timeout=self.limits.handshake_timeout if tls else None,
            )
        except (OSError, ssl.SSLError, asyncio.CancelledError) as exc:
            sock.close()
            conn.connection_lost(None)  # never made, or made and failed: forgotten either way
            if tls and self.now() - started >= self.limits.handshake_timeout - 0.01:
                self.stats.reject(Rejection.HANDSHAKE_TIMEOUT)
            log.info("connection set-up failed", peer=conn.peer, transport=self.kind, error=str(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if tls:
                self.handshakes -= 1

    def _warn(self, what: str, event: str, **fields: object) -> None:
        """A warning, at most once per :data:`WARN_EVERY` seconds for the same ``what``: a
        limit hit ten thousand times is one line, not ten thousand."""
        now = self.now()
        last, quiet = self._warned.get(what, (None, 0))
        if last is not None and now - last < WARN_EVERY:
            self._warned[what] = (last, quiet + 1)
            return
        if quiet:
            fields["not_logged_since"] = quiet
        log.warning(event, transport=self.kind, **fields)
        self._warned[what] = (now, 0)

    def _pause(self, exc: OSError) -> None:
        """Out of file descriptors: stop accepting for a while, then try again by itself."""
        self.stats.reject(Rejection.ACCEPT_PAUSED)
        for sock in self._listeners:
            self._loop.remove_reader(sock.fileno())
        self.accept_paused = True
        self._warn(
            "fds",
            "out of file descriptors: accepting paused",
            error=exc.strerror,
            open=self.open,
            retry_in=self.limits.accept_retry,
        )
        if self._resume is None:
            self._resume = self._loop.call_later(self.limits.accept_retry, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        for sock in self._listeners:
            self._loop.add_reader(sock.fileno(), self._accept_ready, sock)

    def _count(self, conn: StreamConnection, delta: int) -> None:
        """Count a connection in (1) or out (-1) of the caps, once each way."""
        if conn.peer is None or conn.counted is (delta > 0):
            return
        conn.counted = delta > 0
        host = conn.peer[0]
        self.open += delta
        self.by_ip[host] += delta
        if self.by_ip[host] <= 0:
            del self.by_ip[host]

    # -- connections -------------------------------------------------------------------------

    def _made(self, conn: StreamConnection) -> None:
        if conn.peer is not None:
            self.connections[conn.peer] = conn

    def _lost(self, conn: StreamConnection) -> None:
        if conn.peer is not None and self.connections.get(conn.peer) is conn:
            del self.connections[conn.peer]
        self._count(conn, -1)

    def _unframeable(self, conn: StreamConnection, exc: FramingError) -> None:
        """A stream that cannot be framed: answer 513 when the message allows, then close."""
        reason = Rejection.OVERSIZE if exc.status_code == 513 else Rejection.FRAMING
        self.stats.reject(reason)
        log.info(
            "closing connection after a framing error", peer=conn.peer, transport=self.kind, error=str(exc)
        )
        if exc.head and conn.peer is not None and self._on_unframeable is not None:
            self._on_unframeable(exc.head, exc, conn.peer, self.kind)  # queues and flushes the answer
        conn.close()  # after the answer: what was written goes out first

    def _check_buffers(self, conn: StreamConnection) -> None:
        """Over the total budget of unfinished messages: close the connection holding most."""
        while self.buffered > self.limits.max_buffered:
            biggest = max(self.connections.values(), key=lambda c: c.buffered, default=conn)
            if biggest.buffered == 0 or biggest.closed:
                return
            biggest.abort(Rejection.BUFFER, "over the total budget of unfinished messages")

    async def _sweep(self) -> None:
        """Close connections silent for longer than ``idle_timeout``."""
        while True:
            await asyncio.sleep(min(5.0, self.limits.idle_timeout / 4))
            self.close_idle(self.now())

    def close_idle(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout``."""
        for conn in list(self.connections.values()):
            if conn.transport is not None and now - conn.last_activity > self.limits.idle_timeout:
                conn.close(Rejection.IDLE_TIMEOUT, "idle")

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes, destination: Address) -> None:
        """Send over the connection to ``destination``, opening one if there is none."""
        conn = self.connections.get(destination)
        if conn is None or conn.closed:  # a closing one will not carry it: a new connection will
            self._guard.check(destination)
            conn = StreamConnection(self, destination)
            self.connections[destination] = conn
            self._count(conn, 1)
            task = self._loop.create_task(self._connect(conn, destination))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        conn.write(data)

    async def _connect(self, conn: StreamConnection, destination: Address) -> None:
        try:
            await self._loop.create_connection(
                lambda: conn,
                destination[0],
                destination[1],
                ssl=self._client_ssl,
                server_hostname=destination[0] if self._client_ssl else None,
                ssl_handshake_timeout=self.limits.handshake_timeout if self._client_ssl else None,
            )
        except (OSError, ssl.SSLError) as exc:
            log.info("connection failed", destination=destination, transport=self.kind, error=str(exc))
            conn.connection_lost(exc)  # never made: uncounted and forgotten here
            if self._on_error is not None:
                self._on_error(destination, self.kind, exc.strerror or str(exc))

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for sock in self._listeners:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self.connections.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the transports call connection_lost


__all__ = ["StreamConnection", "StreamTransport"]
