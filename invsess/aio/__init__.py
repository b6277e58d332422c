"""The asyncio layer: transports (UDP, TCP, TLS; IPv4 and IPv6), the send guard, the driver,
name resolution (RFC 3263), and the application API (:class:`UserAgent`, :class:`Call`, their
events and errors)."""

from invsess.aio.agent import ACCEPT, Call, OfferHandler, RequestHandler, ShutdownReport, UserAgent
from invsess.aio.endpoint import AsyncEndpoint, ListenSpec
from invsess.aio.events import (
    CallEnded,
    CallError,
    CallEvent,
    CallFailed,
    CallTimedOut,
    DtmfReceived,
    MediaChanged,
    OfferArrived,
    OfferFailed,
    OfferRefusedError,
    ProgressReceived,
    Reject,
    Reply,
    RequestArrived,
    SessionRefreshed,
    StateChanged,
    TransportFailed,
)
from invsess.aio.guard import LOOPBACK, SendGuard, SendRefusedError
from invsess.aio.registration import AsyncRegistration, RegistrationError, register
from invsess.aio.resolver import DnsResolver, ResolutionError, Resolver, SystemResolver, Target
from invsess.aio.transport import StreamLimits, UdpLimits

__all__ = [
    "ACCEPT",
    "LOOPBACK",
    "AsyncEndpoint",
    "AsyncRegistration",
    "Call",
    "CallEnded",
    "CallError",
    "CallEvent",
    "CallFailed",
    "CallTimedOut",
    "DnsResolver",
    "DtmfReceived",
    "ListenSpec",
    "MediaChanged",
    "OfferArrived",
    "OfferFailed",
    "OfferHandler",
    "OfferRefusedError",
    "ProgressReceived",
    "RegistrationError",
    "Reject",
    "Reply",
    "RequestArrived",
    "RequestHandler",
    "ResolutionError",
    "Resolver",
    "SendGuard",
    "SendRefusedError",
    "SessionRefreshed",
    "ShutdownReport",
    "StateChanged",
    "StreamLimits",
    "SystemResolver",
    "Target",
    "TransportFailed",
    "UdpLimits",
    "UserAgent",
    "register",
]
