"""Client transactions (RFC 3261 §17.1, RFC 6026 §8.4): INVITE and non-INVITE.

Owns the request's retransmission (from the bytes serialised once), the ACK for a non-2xx final
response (built here, as §17.1.1.3 requires), and Timers A, B, D, M (INVITE) and E, F, K.
Never touches the transaction user's objects: it only queues events.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from invsess.sip import Request, Response, make_request
from invsess.sip.headers import CSeq
from invsess.transaction.base import (
    TIMER_INPUTS,
    Role,
    Timer,
    Transaction,
    TxInput,
    response_kind,
    terminating_table,
)
from invsess.transaction.events import ResponseReceived, TransactionTimedOut


class ClientInviteState(enum.Enum):
    """RFC 3261 Figure 5 with RFC 6026's Accepted."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ClientNonInviteState(enum.Enum):
    """RFC 3261 Figure 6."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_CI = ClientInviteState
_CN = ClientNonInviteState


_1XX, _2XX, _FAIL, _TERR = TxInput.RECV_1XX, TxInput.RECV_2XX, TxInput.RECV_FAILURE, TxInput.TRANSPORT_ERROR


class ClientInviteTransaction(Transaction[ClientInviteState]):
    """The INVITE client transaction."""

    role = Role.CLIENT
    State = ClientInviteState
    END = _CI.TERMINATED
    INITIAL = _CI.CALLING
    TRANSITIONS: ClassVar[dict[tuple[ClientInviteState, TxInput], ClientInviteState]] = terminating_table(
        ClientInviteState,
        {
            (_CI.CALLING, _1XX): _CI.PROCEEDING,
            (_CI.CALLING, _2XX): _CI.ACCEPTED,
            (_CI.CALLING, _FAIL): _CI.COMPLETED,
            (_CI.CALLING, TxInput.TIMER_A): _CI.CALLING,
            (_CI.CALLING, TxInput.TIMER_B): _CI.TERMINATED,
            (_CI.CALLING, _TERR): _CI.TERMINATED,
            (_CI.PROCEEDING, _1XX): _CI.PROCEEDING,
            (_CI.PROCEEDING, _2XX): _CI.ACCEPTED,
            (_CI.PROCEEDING, _FAIL): _CI.COMPLETED,
            (_CI.PROCEEDING, _TERR): _CI.TERMINATED,
            # RFC 3261 §9.1: no final response 64*T1 after our CANCEL: the INVITE is given up.
            (_CI.PROCEEDING, TxInput.TIMER_GIVE_UP): _CI.TERMINATED,
            (_CI.ACCEPTED, _1XX): _CI.ACCEPTED,  # late provisional: absorbed
            (_CI.ACCEPTED, _2XX): _CI.ACCEPTED,
            (_CI.ACCEPTED, _FAIL): _CI.ACCEPTED,  # absorbed
            (_CI.ACCEPTED, TxInput.TIMER_M): _CI.TERMINATED,
            (_CI.COMPLETED, _1XX): _CI.COMPLETED,
            (_CI.COMPLETED, _2XX): _CI.COMPLETED,
            (_CI.COMPLETED, _FAIL): _CI.COMPLETED,
            (_CI.COMPLETED, TxInput.TIMER_D): _CI.TERMINATED,
            (_CI.COMPLETED, _TERR): _CI.TERMINATED,
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = self._keep(self.request.serialize())
        self._ack: bytes | None = None

    def start(self, now: float) -> None:
        """Send the request and arm Timers A (UDP) and B."""
        self._send(self._wire)
        if not self.reliable:
            self._start(Timer.A, now, self.timers.t1)
        self._start(Timer.B, now, self.timers.b)

    def receive(self, response: Response, now: float) -> bool:
        """Feed a matched response; True if it went to the transaction user."""
        kind = response_kind(response)
        before = self.state
        self._transition(kind)
        if before in (_CI.CALLING, _CI.PROCEEDING):
            self._stop(Timer.A, Timer.B)
            if kind is _2XX:
                self._stop(Timer.GIVE_UP)
                self._start(Timer.M, now, self.timers.m)
            elif kind is _FAIL:
                self._stop(Timer.GIVE_UP)
                self._ack = self._build_ack(response).serialize()
                self._send(self._ack)
                self._start(Timer.D, now, self.timers.d(self.reliable))
            self._on_event(ResponseReceived(self, response))
            return True
        if before is _CI.ACCEPTED and kind is _2XX:
            self._on_event(ResponseReceived(self, response))  # 2xx retransmission: the TU ACKs it
            return True
        if before is _CI.COMPLETED and kind is _FAIL and self._ack is not None:
            self._send(self._ack)  # the final response was retransmitted: our ACK was lost
        return False

    def _build_ack(self, response: Response) -> Request:
        """§17.1.1.3: same Request-URI, top Via, From, Call-ID, CSeq number; To from the response."""
        req = self.request
        to = response.to or req.to
        if req.from_ is None or to is None or req.call_id is None or req.cseq is None or req.top_via is None:
            raise RuntimeError("an INVITE sent by this endpoint always has these headers")
        return make_request(
            "ACK",
            req.uri,
            via=req.top_via,
            from_=req.from_,
            to=to,
            call_id=req.call_id,
            cseq=CSeq(req.cseq.number, "ACK"),
            max_forwards=70,
            headers=[("Route", r) for r in req.route],
        )

    def cancelled(self, now: float) -> None:
        """Our CANCEL for this INVITE went out: if no final response comes within 64*T1, the
        INVITE is given up (RFC 3261 §9.1) — a ``TransactionTimedOut`` with ``Timer.GIVE_UP``."""
        if self.state is _CI.PROCEEDING and Timer.GIVE_UP not in self._deadlines:
            self._start(Timer.GIVE_UP, now, 64 * self.timers.t1)

    def _on_timer(self, timer: Timer, now: float) -> None:
        if timer is Timer.A:
            self._transition(TxInput.TIMER_A)
            self._send(self._wire)
            self._start(Timer.A, now, self._intervals.get(Timer.A, self.timers.t1) * 2)
        elif timer in (Timer.B, Timer.GIVE_UP):
            self._on_event(TransactionTimedOut(self, timer))
            reason = "timer B" if timer is Timer.B else "cancelled: no final response within 64*T1"
            self._finish(TIMER_INPUTS[timer], reason)
        else:  # D, M
            self._finish(TIMER_INPUTS[timer], f"timer {timer}")


class ClientNonInviteTransaction(Transaction[ClientNonInviteState]):
    """A non-INVITE client transaction."""

    role = Role.CLIENT
    State = ClientNonInviteState
    END = _CN.TERMINATED
    INITIAL = _CN.TRYING
    TRANSITIONS: ClassVar[dict[tuple[ClientNonInviteState, TxInput], ClientNonInviteState]] = (
        terminating_table(
            ClientNonInviteState,
            {
                (_CN.TRYING, _1XX): _CN.PROCEEDING,
                (_CN.TRYING, _2XX): _CN.COMPLETED,
                (_CN.TRYING, _FAIL): _CN.COMPLETED,
                (_CN.TRYING, TxInput.TIMER_E): _CN.TRYING,
                (_CN.TRYING, TxInput.TIMER_F): _CN.TERMINATED,
                (_CN.TRYING, _TERR): _CN.TERMINATED,
                (_CN.PROCEEDING, _1XX): _CN.PROCEEDING,
                (_CN.PROCEEDING, _2XX): _CN.COMPLETED,
                (_CN.PROCEEDING, _FAIL): _CN.COMPLETED,
                (_CN.PROCEEDING, TxInput.TIMER_E): _CN.PROCEEDING,
                (_CN.PROCEEDING, TxInput.TIMER_F): _CN.TERMINATED,
                (_CN.PROCEEDING, _TERR): _CN.TERMINATED,
                (_CN.COMPLETED, _1XX): _CN.COMPLETED,
                (_CN.COMPLETED, _2XX): _CN.COMPLETED,
                (_CN.COMPLETED, _FAIL): _CN.COMPLETED,
                (_CN.COMPLETED, TxInput.TIMER_K): _CN.TERMINATED,
            },
        )
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wire = self._keep(self.request.serialize())

    def start(self, now: float) -> None:
        """Send the request and arm Timers E (UDP) and F."""
        self._send(self._wire)
        if not self.reliable:
            self._start(Timer.E, now, self.timers.t1)
        self._start(Timer.F, now, self.timers.f)

    def receive(self, response: Response, now: float) -> bool:
        """Feed a matched response; True if it went to the transaction user."""
        kind = response_kind(response)
        before = self.state
        self._transition(kind)
        if before is _CN.COMPLETED:
            return False  # retransmission of the final response: absorbed
        if kind is not _1XX:
            self._stop(Timer.E, Timer.F)
            self._start(Timer.K, now, self.timers.k(self.reliable))
        self._on_event(ResponseReceived(self, response))
        return True

    def _on_timer(self, timer: Timer, now: float) -> None:
        if timer is Timer.E:
            self._transition(TxInput.TIMER_E)
            self._send(self._wire)
            if self.state is _CN.PROCEEDING:
                interval = self.timers.t2
            else:
                interval = min(self._intervals.get(Timer.E, self.timers.t1) * 2, self.timers.t2)
            self._start(Timer.E, now, interval)
        else:  # F, K
            if timer is Timer.F:
                self._on_event(TransactionTimedOut(self, timer))
            self._finish(TIMER_INPUTS[timer], f"timer {timer}")
