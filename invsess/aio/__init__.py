"""The asyncio layer: transports (UDP, TCP, TLS; IPv4 and IPv6), the send guard, the driver."""

from invsess.aio.endpoint import AsyncEndpoint, ListenSpec
from invsess.aio.guard import LOOPBACK, SendGuard, SendRefusedError

__all__ = ["LOOPBACK", "AsyncEndpoint", "ListenSpec", "SendGuard", "SendRefusedError"]
