"""Reliable provisional responses (RFC 3262, PJSIP ``sip_100rel.c``). Sans-IO.

:class:`ReliableSender` is the UAS half: RSeq numbering, one reliable 1xx outstanding at a
time (the next ones, and a 2xx that must not overtake an unacknowledged offer or answer, wait
in a queue), retransmission at T1, 2*T1, 4*T1 ... and the 64*T1 give-up. :class:`ReliableReceiver`
is the UAC half: which reliable 1xx to PRACK, per early dialog (To tag), so that forked
reliable 1xx are each acknowledged in their own dialog. :mod:`invsess.inv.layer` sends.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from typing import Literal

import attrs

from invsess.sip import ParseError, RAck, Request, Response

#: RFC 3262 §3: the first RSeq is chosen at random between 1 and 2**31 - 1.
MAX_INITIAL_RSEQ = 2**31 - 1


class Rel100(enum.Enum):
    """How a user agent treats 100rel: ``SUPPORTED`` uses it when the peer offers it too."""

    OFF = "off"
    SUPPORTED = "supported"
    REQUIRED = "required"


def peer_offers_100rel(message: Request | Response) -> bool:
    """True if the message's sender supports (or requires) reliable provisional responses."""
    return "100rel" in message.supported or "100rel" in message.require


def is_reliable(response: Response) -> bool:
    """True for a 1xx (other than 100) sent reliably: Require: 100rel and an RSeq. An unreadable
    Require or RSeq means "not reliable": there is nothing we could PRACK."""
    try:
        return 100 < response.status_code < 200 and "100rel" in response.require and response.rseq is not None
    except ParseError:
        return False


@attrs.define(slots=True)
class Outstanding:
    """The reliable 1xx waiting for its PRACK."""

    rseq: int
    wire: bytes
    with_sdp: bool
    offer: bool  # the SDP it carried was our offer: its PRACK brings the answer
    next_at: float | None
    interval: float
    give_up_at: float


@attrs.define(slots=True)
class ReliableSender:
    """The UAS side of one INVITE: RSeq, the outstanding 1xx and what waits behind it."""

    next_rseq: int
    outstanding: Outstanding | None = None
    queue: deque[tuple[int, str | None]] = attrs.field(factory=deque)  # (status, reason) to send

    @classmethod
    def create(cls, rng: random.Random) -> ReliableSender:
        """A sender with a random first RSeq (small enough to leave room to count up)."""
        return cls(rng.randint(1, MAX_INITIAL_RSEQ // 2))

    def take_rseq(self) -> int:
        """The RSeq for the next reliable 1xx."""
        rseq = self.next_rseq
        self.next_rseq += 1
        return rseq

    def sent(
        self,
        rseq: int,
        wire: bytes,
        *,
        with_sdp: bool,
        offer: bool = False,
        now: float,
        t1: float,
        retransmit: bool,
    ) -> None:
        """A reliable 1xx went out: retransmit it (over UDP) until PRACK, give up after 64*T1."""
        self.outstanding = Outstanding(
            rseq, wire, with_sdp, offer, now + t1 if retransmit else None, t1, now + 64 * t1
        )

    def must_wait(self, status_code: int) -> bool:
        """True if a response must queue behind the outstanding 1xx (RFC 3262 §3).

        Another reliable 1xx always waits; a 2xx waits only if the outstanding 1xx carried an
        offer or answer (the PRACK may carry the other half). Unreliable 1xx never wait.
        """
        if self.outstanding is None:
            return False
        if status_code >= 200:
            return self.outstanding.with_sdp
        return True

    def matches(self, rack: RAck | None, invite_cseq: int) -> bool:
        """True if a PRACK's RAck acknowledges the outstanding 1xx."""
        out = self.outstanding
        return (
            out is not None
            and rack is not None
            and rack.rseq == out.rseq
            and rack.cseq == invite_cseq
            and rack.method == "INVITE"
        )

    def acknowledged(self) -> None:
        """The PRACK came: stop retransmitting (the queue is the layer's to drain)."""
        self.outstanding = None

    def next_deadline(self) -> float | None:
        """The next retransmission or the give-up time."""
        out = self.outstanding
        if out is None:
            return None
        return out.give_up_at if out.next_at is None else min(out.next_at, out.give_up_at)

    def due(self, now: float) -> bytes | Literal[True] | None:
        """What is due at ``now``: the bytes to retransmit, True to give up, or None."""
        out = self.outstanding
        if out is None:
            return None
        if now >= out.give_up_at:
            return True
        if out.next_at is not None and now >= out.next_at:
            out.interval *= 2  # RFC 3262 §3: doubling, with no T2 cap
            out.next_at = now + out.interval
            return out.wire
        return None

    def clear(self) -> None:
        """The INVITE is over: nothing outstanding, nothing queued."""
        self.outstanding = None
        self.queue.clear()


@attrs.define(slots=True)
class ReliableReceiver:
    """The UAC side: the last RSeq acknowledged in each early dialog (keyed by To tag)."""

    last_rseq: dict[str, int] = attrs.field(factory=dict)

    def accept(self, to_tag: str, rseq: int) -> bool:
        """True if this reliable 1xx is the next one of its dialog (and is now counted).

        RFC 3262 §4: the first one sets the sequence; later ones must be exactly one higher.
        Retransmissions (lower) and gaps (higher) are neither PRACKed nor processed.
        """
        last = self.last_rseq.get(to_tag)
        if last is not None and rseq != last + 1:
            return False
        self.last_rseq[to_tag] = rseq
        return True


__all__ = [
    "MAX_INITIAL_RSEQ",
    "Outstanding",
    "Rel100",
    "ReliableReceiver",
    "ReliableSender",
    "is_reliable",
    "peer_offers_100rel",
]
