"""Endpoint configuration: timers, limits, what is served, and the checks applied."""

from __future__ import annotations

import functools

import attrs

from invsess.endpoint.overload import RateLimit
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

    Overload control (docs/hardening.md): at ``max_transactions`` server transactions
    waiting for their final answer new requests get 503 with ``Retry-After: retry_after``;
    the last tenth of them is kept for OPTIONS and requests inside dialogs, so new INVITEs are
    refused first. At
    ``max_calls`` live calls (None: no limit) a new INVITE gets 503 too; both are checked
    before any transaction, dialog or session is created. ``rate_limit`` (None: off) ignores a
    source address that sends too many new requests (Kamailio's ``pike``). ``server`` and
    ``user_agent`` are the Server header of our responses and the User-Agent of our requests
    (None: omitted, so nothing advertises the software or its version).
    """

    timers: TimerConfig = attrs.field(factory=TimerConfig)
    limits: ParserLimits = attrs.field(factory=ParserLimits)
    checks: Check = UAS_CHECKS
    allow: tuple[str, ...] = ("OPTIONS",)
    supported: tuple[str, ...] = ()
    accept: tuple[str, ...] = ("application/sdp",)
    answer_options: bool = True
    max_transactions: int = 10_000
    max_calls: int | None = None
    rate_limit: RateLimit | None = None
    retry_after: int = 5
    server: str | None = None
    user_agent: str | None = None
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
        if self.max_calls is not None and self.max_calls < 0:
            raise ValueError("max_calls must not be negative")
        if self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        for name in ("server", "user_agent"):
            value = getattr(self, name)
            if value is not None and (not value.strip() or any(c in value for c in "\r\n\0")):
                raise ValueError(f"{name} must be one non-empty line, not {value!r}")

    @functools.cached_property
    def invite_transactions(self) -> int:
        """Server transactions beyond which new requests other than OPTIONS get 503: the last
        tenth of ``max_transactions`` is kept for pings and requests inside dialogs."""
        return self.max_transactions - self.max_transactions // 10

    @functools.cached_property
    def allow_header(self) -> str:
        """The Allow header value (ACK and CANCEL go with INVITE)."""
        methods = list(self.allow)
        if "INVITE" in methods:
            methods += [m for m in ("ACK", "CANCEL") if m not in methods]
        return ", ".join(methods)
