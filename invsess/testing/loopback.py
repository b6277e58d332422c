"""The simulated network's twin over real UDP sockets on loopback, in real time.

:class:`LoopbackNetwork` has the interface of :class:`~invsess.testing.SimNetwork` (attach,
link, partition, heal, run_until, run_until_idle, trace, ladder), so a test written against
one runs on the other: the pytest plugin's ``--sip-network=loopback`` switch swaps them. Each
attached endpoint gets a UDP socket bound to its address; datagrams really go through the
kernel. Link profiles still apply (loss, duplication, latency and partitions are decided at the
sender, before ``sendto``), so fault tests keep their meaning, though not their determinism:
the clock is the real one, and the kernel schedules.

Only the attached addresses are ever sent to, and they must be loopback addresses: this is a
test bed, and a test that reaches out of the machine is a defect.
"""

from __future__ import annotations

import heapq
import ipaddress
import selectors
import socket
import time
from typing import Any

from invsess.address import Address
from invsess.node import Node
from invsess.testing.network import LinkProfile, SimNetwork

#: How long run_until_idle waits for datagrams still in the kernel before calling it idle.
QUIET = 0.05
_MAX_DATAGRAM = 65_535


class LoopbackNetwork(SimNetwork):
    """Endpoints on real loopback UDP sockets; see the module docstring."""

    def __init__(self, seed: int = 0, *, default: LinkProfile | None = None, record: bool = True) -> None:
        super().__init__(seed, default=default, record=record)
        self._start = time.monotonic()
        self._sockets: dict[Address, socket.socket] = {}
        self._selector = selectors.DefaultSelector()

    def _clock(self) -> float:
        return time.monotonic() - self._start

    def attach(self, node: Node[Any], address: Address, transports: tuple[str, ...] = ("udp",)) -> None:
        """Bind a UDP socket at ``address`` (a loopback address; port 0 picks a free one, which
        the node's listeners then show) for ``node``."""
        if transports != ("udp",):
            raise ValueError("the loopback network carries UDP only")
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ValueError(f"{address[0]} is not a loopback address")
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno, f"cannot bind {address[0]}:{address[1]} for the loopback network: {exc}"
            ) from None
        sock.setblocking(False)
        address = sock.getsockname()[:2]
        super().attach(node, address, transports)
        self._sockets[address] = sock
        self._selector.register(sock, selectors.EVENT_READ, address)

    def close(self) -> None:
        """Close every socket (the plugin does it at teardown)."""
        for sock in self._sockets.values():
            self._selector.unregister(sock)
            sock.close()
        self._sockets.clear()
        self._selector.close()

    def __enter__(self) -> LoopbackNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running: sends leave at their (profile-delayed) time, arrivals come from the kernel ----

    def step(self) -> bool:
        """Wait for the next arrival, send or timer (at most until the next deadline); False if idle."""
        self.flush()
        when = self.next_time()
        if when is None and not self._poll(QUIET):
            return False
        if when is not None:
            self._poll(max(0.0, when - self._clock()))
        self._due()
        return True

    def run_until(self, until: float) -> None:
        """Process everything that happens until ``until`` on the real clock."""
        self.flush()
        while (now := self._clock()) < until:
            when = self.next_time()
            self._poll(max(0.0, min(when if when is not None else until, until) - now))
            self._due()
        self.now = self._clock()

    def run_until_idle(self, limit: float = 3600.0) -> None:
        """Run until no timer, no send and no datagram is pending (or ``limit`` seconds pass)."""
        end = self._clock() + limit
        while self._clock() < end and self.step():
            pass

    def _poll(self, timeout: float) -> bool:
        """Deliver what arrives within ``timeout``; True if anything did."""
        got = False
        for key, _ in self._selector.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            dest: Address = key.data
            while True:
                try:
                    data, source = sock.recvfrom(_MAX_DATAGRAM)
                except BlockingIOError:
                    break
                got = True
                self.now = self._clock()
                self._nodes[dest].receive(data, (source[0], source[1]), "udp", self.now)
        return got

    def _due(self) -> None:
        self.now = self._clock()
        while self._in_flight and self._in_flight[0][0] <= self.now:
            _, _, source, dest, _, data = heapq.heappop(self._in_flight)
            self._sockets[source].sendto(data, dest)
        for ep in self._nodes.values():
            deadline = ep.next_deadline()
            if deadline is not None and deadline <= self.now:
                ep.handle_timers(self.now)
        self.flush()

    def flush(self) -> None:
        """Queue what every node wants to send, at the real time of now."""
        self.now = self._clock()
        super().flush()


__all__ = ["LoopbackNetwork"]
