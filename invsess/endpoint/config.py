"""Endpoint configuration: timers, limits, what is served, and the checks applied."""

from __future__ import annotations

import attrs

from invsess.memory import DEFAULT_TOTAL_SIZE
from invsess.sip import UAS_CHECKS, Check, ParserLimits
from invsess.transaction import TimerConfig

#: Methods this stack knows; anything else gets 501 (RFC 3261 §8.2.1).
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH",
     "INFO", "REFER", "MESSAGE", "UPDATE"}
)  # fmt: skip


@attrs.frozen
class EndpointConfig:
    """Everything an :class:`~invsess.endpoint.Endpoint` needs to know before it starts.

    ``allow`` lists the methods served (given to the application as ``RequestReceived``, except
    OPTIONS, which the endpoint answers itself while ``answer_options`` is true); other known
    methods get 405 with Allow. ``accept`` is what bodies may be (415 otherwise) and what INVITE
    answers can be (406 when the request's Accept excludes them).
    """

    timers: TimerConfig = attrs.field(factory=TimerConfig)
    limits: ParserLimits = attrs.field(factory=ParserLimits)
    checks: Check = UAS_CHECKS
    allow: tuple[str, ...] = ("OPTIONS",)
    supported: tuple[str, ...] = ()
    accept: tuple[str, ...] = ("application/sdp",)
    answer_options: bool = True
    max_transactions: int = 10_000
    retry_after: int = 5
    user_agent: str = "invsess/0.1"
    #: RFC 3261 §18.1.1: a request larger than this goes over TCP when a TCP listener exists.
    udp_mtu_limit: int = 1300
    total_memory: int = DEFAULT_TOTAL_SIZE
    malloc_debug: bool | None = None
    #: Seed for branches and tags: fixed in tests for reproducible traces; None draws one.
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        unknown = [m for m in self.allow if m not in KNOWN_METHODS]
        if unknown:
            raise ValueError(f"cannot serve unknown methods {unknown}")
        if self.max_transactions < 1:
            raise ValueError("max_transactions must be at least 1")

    @property
    def allow_header(self) -> str:
        """The Allow header value (ACK and CANCEL go with INVITE)."""
        methods = list(self.allow)
        if "INVITE" in methods:
            methods += [m for m in ("ACK", "CANCEL") if m not in methods]
        return ", ".join(methods)
