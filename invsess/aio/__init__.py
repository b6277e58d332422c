"""The asyncio layer: transports (UDP, TCP, TLS; IPv4 and IPv6), the send guard, the driver,
and the application API (:class:`UserAgent`, :class:`Call`)."""

from invsess.aio.agent import Call, ShutdownReport, UserAgent
from invsess.aio.endpoint import AsyncEndpoint, ListenSpec
from invsess.aio.guard import LOOPBACK, SendGuard, SendRefusedError
from invsess.aio.registration import AsyncRegistration, RegistrationError, register
from invsess.aio.transport import StreamLimits, UdpLimits

__all__ = [
    "LOOPBACK",
    "AsyncEndpoint",
    "AsyncRegistration",
    "Call",
    "ListenSpec",
    "RegistrationError",
    "SendGuard",
    "SendRefusedError",
    "ShutdownReport",
    "StreamLimits",
    "UdpLimits",
    "UserAgent",
    "register",
]
