"""The UDP transport: one socket read in batches by our own reader, so that the kernel's queue
is drained fast. What comes from a source over its rate is dropped as it is read; what keeps
calls and monitoring going (responses, ACK/CANCEL, in-dialog requests, OPTIONS) is served at
once; new work (INVITEs, other requests outside dialogs) waits in a queue of ours, served in
order within a time budget per turn of the event loop. New work that waited longer than
``max_delay``, or beyond ``max_queue``, is shed: answered 503 cheaply by the endpoint, or
ignored when its source has gone over its rate meanwhile. The kernel's queue, left to
overflow, would drop anything at random, pings included.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Callable

from invsess.address import Address
from invsess.aio.guard import SendGuard
from invsess.aio.limits import UdpLimits
from invsess.endpoint.limits import LimitStats, Rejection
from invsess.endpoint.overload import classify
from invsess.logs import get_logger

Feed = Callable[[bytes, Address, str], None]
Flush = Callable[[], None]
Shed = Callable[[bytes, Address, str], None]
Admit = Callable[[bytes, Address], bool]
log = get_logger("invsess.transport")

_MAX_DATAGRAM = 65_535
#: A batch this small is served in arrival order and never shed: there is no backlog.
_SMALL_BATCH = 8


def _addr(raw: tuple[str, int] | tuple[str, int, int, int]) -> Address:
    return raw[0], raw[1]


class UdpTransport:
    """One UDP socket, read in batches; see the module docstring."""

    def __init__(
        self,
        feed: Feed,
        flush: Flush,
        guard: SendGuard,
        stats: LimitStats,
        *,
        shed: Shed | None = None,
        admit: Admit | None = None,
        limits: UdpLimits | None = None,
    ) -> None:
        """``shed`` gets new work there was no time for; ``admit`` says, as each datagram is
        read, whether to keep it at all (False: its source is over its rate; dropped before it
        takes a place in the queue)."""
        self._feed = feed
        self._flush = flush
        self._shed = shed
        self._admit = admit
        self._guard = guard
        self._stats = stats
        self.limits = limits or UdpLimits()
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Datagrams the kernel would not take (its send buffer was full); UDP loss, counted.
        self.send_dropped = 0
        #: New requests waiting to be served: (time read, data, source).
        self._queue: deque[tuple[float, bytes, Address]] = deque()
        self._draining = False

    async def open(self, host: str, port: int, *, reuse_port: bool = False) -> Address:
        """Bind and start reading; returns the bound address (port 0 picks a free one).

        ``reuse_port``: share the port with the other sockets of this user bound with it
        (``SO_REUSEPORT``): the kernel gives each datagram to one of them by a hash of its
        source and destination addresses and ports, so one source stays with one socket while
        the set of sockets is unchanged (:mod:`invsess.aio.workers`)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.limits.receive_buffer is not None:
                with contextlib.suppress(OSError):  # a smaller buffer is a degraded, not a broken, setup
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.limits.receive_buffer)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read_ready)
        return _addr(sock.getsockname())

    def _read_ready(self) -> None:
        sock = self.sock
        if sock is None:
            return
        batch: list[tuple[bytes, Address]] = []
        admit = self._admit
        for _ in range(self.limits.batch):
            try:
                data, raw = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error reported on the socket: nothing to read
                log.debug("udp error", error=str(exc))
                continue
            source = _addr(raw)
            if admit is None or admit(data, source):
                batch.append((data, source))
        if not batch:
            return
        if len(batch) <= _SMALL_BATCH and not self._queue:
            for data, source in batch:  # no backlog: in arrival order, each answered at once
                self._feed(data, source, "udp")
                self._flush()
            return
        now = time.monotonic()
        for data, source in batch:
            if classify(data).served_first:
                self._feed(data, source, "udp")
            else:
                self._queue.append((now, data, source))
        self._serve_queue()
        self._flush()

    def _serve_queue(self) -> None:
        """New work, oldest first, for at most ``budget`` seconds; what waited too long (or
        overflows the queue) is shed. What is left waits for the next turn of the loop, after
        the socket was read again."""
        queue = self._queue
        limits = self.limits
        start = time.monotonic()
        while len(queue) > limits.max_queue:
            self._shed_one(queue.popleft())
        while queue and time.monotonic() - start < limits.budget:
            item = queue.popleft()
            if start - item[0] > limits.max_delay:
                self._shed_one(item)
            else:
                self._feed(item[1], item[2], "udp")
        if queue and not self._draining and self._loop is not None:
            self._draining = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._draining = False
        if self.sock is not None:
            self._serve_queue()
            self._flush()

    def _shed_one(self, item: tuple[float, bytes, Address]) -> None:
        if self._shed is None:
            self._stats.reject(Rejection.SHED)
        else:  # the endpoint counts, and answers what it cheaply can
            self._shed(item[1], item[2], "udp")

    def send(self, data: bytes, destination: Address) -> None:
        """Send one datagram (after the guard); a full kernel buffer drops it (UDP loss)."""
        self._guard.check(destination)
        if self.sock is None:
            return
        try:
            self.sock.sendto(data, destination)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
        except OSError as exc:  # e.g. ECONNREFUSED left by an earlier ICMP error: UDP loss
            log.debug("udp send failed", destination=destination, error=str(exc))
            self.send_dropped += 1

    @property
    def queued(self) -> int:
        """New requests waiting to be served."""
        return len(self._queue)

    def close(self) -> None:
        """Stop reading and close the socket; what was queued is dropped."""
        self._queue.clear()
        if self.sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


__all__ = ["UdpTransport"]
