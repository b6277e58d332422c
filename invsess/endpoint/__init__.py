"""The sans-IO endpoint: transactions, stateless answers, response routing, events."""

from invsess.endpoint.config import KNOWN_METHODS, EndpointConfig
from invsess.endpoint.endpoint import (
    AnyEvent,
    CancelReceived,
    ClientTransaction,
    Endpoint,
    RequestScreen,
    ScreenAnswer,
)
from invsess.endpoint.limits import LimitStats, Rejection
from invsess.endpoint.overload import Kind, RateLimit, SourceRateLimiter, classify
from invsess.endpoint.routing import response_destination, stamp_via

__all__ = [
    "KNOWN_METHODS",
    "AnyEvent",
    "CancelReceived",
    "ClientTransaction",
    "Endpoint",
    "EndpointConfig",
    "Kind",
    "LimitStats",
    "RateLimit",
    "Rejection",
    "RequestScreen",
    "ScreenAnswer",
    "SourceRateLimiter",
    "classify",
    "response_destination",
    "stamp_via",
]
