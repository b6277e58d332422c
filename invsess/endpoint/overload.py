"""Overload control before parsing: what a datagram is, and whether its source may start work.

Two cheap looks at raw bytes, both done before a message costs a pool or a parse:

* :func:`classify` says whether a message keeps existing work going (a response, an ACK or
  CANCEL, a request inside a dialog, an OPTIONS ping) or starts new work (an INVITE or another
  request outside any dialog). Readers serve the first kind first when they have a backlog.
* :class:`SourceRateLimiter` is Kamailio's ``pike`` in miniature: a source address sending more
  than ``requests`` new requests in a ``window`` is ignored for ``block`` seconds, renewed while
  it keeps going over, so a flood from one source costs a dictionary look-up per datagram and
  leaves everybody else their service.

A guess from bytes can be fooled (a forged To tag, a header folded across lines); it only decides
order and who is ignored while over a rate: the endpoint still parses and checks every message
it serves. Sans-IO: the time is an argument; nothing here reads a clock.
"""

from __future__ import annotations

import enum
import re

import attrs

_TO_TAG = re.compile(rb"\n(?:to|t)[ \t]*:[^\r\n]*;[ \t]*tag[ \t]*=", re.IGNORECASE)
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n", re.IGNORECASE)
_STATELESS_ENDS = (b"ACK", b"CANCEL")


class Kind(enum.Enum):
    """What a raw message is, as far as the first bytes tell."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    RESPONSE = "response"
    IN_DIALOG = "in-dialog"  # a To tag, or ACK/CANCEL: it belongs to something under way
    OPTIONS = "options"  # a ping: cheap to answer, and what monitoring judges us by
    NEW = "new"  # an INVITE or another request outside any dialog: new work

    @property
    def served_first(self) -> bool:
        """True for what keeps existing calls and monitoring going."""
        return self is not Kind.NEW

    @property
    def rate_limited(self) -> bool:
        """True for what a source's rate counts: requests outside any dialog."""
        return self in (Kind.NEW, Kind.OPTIONS)


def classify(data: bytes) -> Kind:
    """Classify a raw message from its start line and To header (no parsing, no allocation
    beyond the method name)."""
    if data.startswith(b"SIP/"):
        return Kind.RESPONSE
    head = data.lstrip(b"\r\n")
    method = head[: head.find(b" ")] if b" " in head[:32] else head[:32]
    if method in _STATELESS_ENDS:
        return Kind.IN_DIALOG
    end = head.find(b"\r\n\r\n")
    if _TO_TAG.search(head, 0, end if end >= 0 else len(head)):
        return Kind.IN_DIALOG
    return Kind.OPTIONS if method == b"OPTIONS" else Kind.NEW


def call_id_of(data: bytes) -> str | None:
    """The Call-ID of a raw message, or None when it has no readable one."""
    end = data.find(b"\r\n\r\n")
    match = _CALL_ID.search(data, 0, end + 2 if end >= 0 else len(data))
    return match.group(1).decode("utf-8", "replace") if match else None


@attrs.frozen
class RateLimit:
    """Per-source limit on new requests (Kamailio ``pike``: ``reqs_density_per_unit`` requests
    per ``sampling_time_unit``, then ``remove_latency``).

    A source (an IP address, whatever its port) sending more than ``requests`` requests outside
    any dialog within one ``window`` of seconds is ignored for ``block`` seconds; every request
    over the rate while blocked renews the block. Requests inside a live dialog of the source
    still go through. At most ``max_sources`` addresses are counted per window (a spoofed
    flood from everywhere cannot grow the table); beyond that, new addresses are not counted.
    """

    requests: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    window: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    block: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    max_sources: int = attrs.field(default=65_536, validator=attrs.validators.gt(0))

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``REQUESTS/SECONDS`` (e.g. ``200/2``), as the command line takes it."""
        count, sep, seconds = text.partition("/")
        try:
            return cls(requests=int(count), window=float(seconds) if sep else 1.0)
        except ValueError:
            raise ValueError(
                f"a rate limit is REQUESTS/SECONDS with positive numbers, not {text!r}"
            ) from None


class SourceRateLimiter:
    """Counts new requests per source address in fixed windows; see :class:`RateLimit`."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._window_end: float | None = None
        self._counts: dict[str, int] = {}
        self._blocked: dict[str, float] = {}  # address -> blocked until

    def allow(self, host: str, now: float) -> bool:
        """Count one new request from ``host``; False when it must be ignored."""
        self._roll(now)
        counts = self._counts
        count = counts.get(host)
        if count is None:
            if len(counts) >= self.limit.max_sources:
                return not self.is_blocked(host, now)
            count = 0
        count += 1
        counts[host] = count
        if count > self.limit.requests:
            self._blocked[host] = now + self.limit.block
            return False
        return not self.is_blocked(host, now)

    def penalise(self, host: str, now: float) -> None:
        """Count something from ``host`` that no honest peer sends often (a request for a
        dialog that does not exist) as if it were a new request."""
        self.allow(host, now)

    def is_blocked(self, host: str, now: float) -> bool:
        """True while ``host`` is being ignored."""
        until = self._blocked.get(host)
        return until is not None and now < until

    def blocked(self, now: float) -> list[str]:
        """The addresses ignored at ``now``."""
        return [host for host, until in self._blocked.items() if now < until]

    def _roll(self, now: float) -> None:
        if self._window_end is not None and now < self._window_end:
            return
        self._window_end = now + self.limit.window
        self._counts = {}
        if self._blocked:
            self._blocked = {host: until for host, until in self._blocked.items() if until > now}


__all__ = ["Kind", "RateLimit", "SourceRateLimiter", "call_id_of", "classify"]
