"""asyncio transports: UDP, and TCP/TLS connections with stream framing, under limits.

They move bytes and nothing else: every received datagram or framed message goes to the
driver's ``feed``, then ``flush`` (after each message; after each batch when a UDP backlog
is served); every send first passes the
:class:`~invsess.aio.guard.SendGuard`. What they refuse is counted in the endpoint's
:class:`~invsess.endpoint.limits.LimitStats` (docs/hardening.md lists every limit):

* UDP is read by our own reader, up to ``batch`` datagrams per wake-up, so the kernel's queue
  is drained fast; when a batch is large, what keeps calls and monitoring going (responses,
  ACK/CANCEL, in-dialog requests, OPTIONS) is served first, and new work left over once the
  batch's time ``budget`` is spent is shed (answered 503 cheaply, or dropped when even that is
  refused) instead of waiting in the kernel until it overflows and drops anything at random.
* TCP/TLS is accepted by our own accept loop: connections over ``max_connections`` (lowered to
  what ``RLIMIT_NOFILE`` allows) or ``max_connections_per_ip`` are closed at once; running out
  of file descriptors pauses accepting for ``accept_retry`` seconds (a warning a minute at most,
  not a traceback per attempt). Each message must complete within ``read_timeout`` of its first
  byte whatever trickles in (the first one, of the connection's start); a silent connection
  closes after ``idle_timeout``; a TLS handshake must
  finish within ``handshake_timeout``; unfinished messages hold at most ``max_buffered`` bytes
  in total; a peer that does not read what we send is cut off at ``max_write_buffer``.

Connections never reference themselves through a cycle (the collector is not needed to free
them): the transport drops its protocol on close, and the protocol drops its transport.

This module gathers the names; the code lives in :mod:`~invsess.aio.udp`,
:mod:`~invsess.aio.stream` and :mod:`~invsess.aio.limits`.
"""

from __future__ import annotations

from invsess.aio.guard import SendRefusedError
from invsess.aio.limits import StreamLimits, UdpLimits
from invsess.aio.stream import StreamConnection, StreamTransport
from invsess.aio.udp import UdpTransport

__all__ = [
    "SendRefusedError",
    "StreamConnection",
    "StreamLimits",
    "StreamTransport",
    "UdpLimits",
    "UdpTransport",
]
