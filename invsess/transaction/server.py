"""Server transactions (RFC 3261 §17.2, RFC 6026 §8.5-8.7): INVITE and non-INVITE.

Absorbs request retransmissions (answering them with the last response, from its bytes),
retransmits a non-2xx final response until the ACK (Timers G, H, I), keeps Accepted after a 2xx
(Timer L) so INVITE retransmissions are absorbed and 2xx ACKs reach the transaction user, and
sends 100 Trying itself when the user stays silent for 200 ms.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from invsess.address import Address
from invsess.memory import Buffer
from invsess.sip import Request, Response, make_response
from invsess.sip.errors import LocalProtocolError
from invsess.transaction.base import (
    TIMER_INPUTS,
    Role,
    StateT,
    Timer,
    Transaction,
    TxInput,
    response_kind,
    terminating_table,
)
from invsess.transaction.events import AckReceived, TransactionTimedOut


class ServerInviteState(enum.Enum):
    """RFC 3261 Figure 7 with RFC 6026's Accepted."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class ServerNonInviteState(enum.Enum):
    """RFC 3261 Figure 8."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_SI = ServerInviteState
_SN = ServerNonInviteState


_S1, _S2, _SF = TxInput.SEND_1XX, TxInput.SEND_2XX, TxInput.SEND_FAILURE
_REQ, _ACK, _TERR = TxInput.REQUEST, TxInput.ACK, TxInput.TRANSPORT_ERROR


class ServerTransaction(Transaction[StateT]):
    """What both server machines share: the response destination and the last response."""

    role = Role.SERVER

    def __init__(self, *args: Any, response_destination: Address, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.response_destination = response_destination
        self._last: Buffer | None = None
        self.last_status: int | None = None
        #: The request's merged-request key (RFC 3261 §8.2.2.2), for the endpoint's table.
        self.merge_key: tuple[str | None, str | None, int, str] | None = None

    @property
    def answered(self) -> bool:
        """A final response has been sent (what is left is absorbing retransmissions)."""
        return self.last_status is not None and self.last_status >= 200

    @property
    def last_response(self) -> bytes | None:
        """The bytes of the last response sent (what a retransmission resends), or None."""
        return None if self._last is None else self._last.data

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the transaction user."""
        raise NotImplementedError

    def receive_request(self, request: Request, source: Address, now: float) -> None:
        """A retransmission (or, for INVITE, the ACK) matched to this transaction."""
        raise NotImplementedError

    def _send_response(self, response: Response) -> None:
        self._last = self._keep(response.serialize())
        self.last_status = response.status_code
        self._send(self._last, self.response_destination)

    def _resend_last(self) -> None:
        if self._last is not None:
            self._send(self._last, self.response_destination)

    def _accept_response(self, response: Response) -> TxInput:
        """Check a response from the transaction user and take its transition; returns its kind."""
        # A response made from the request carries its CSeq line as it was: the same text
        # matches without parsing either.
        raw = response.headers.get("CSeq")
        if raw is None or raw != self.request.headers.get("CSeq"):
            mine = self.request.cseq
            if response.cseq is None or mine is None or response.cseq.number != mine.number:
                raise LocalProtocolError("the response's CSeq does not match the request")
        kind = response_kind(response, sent=True)
        if not self.can(kind):  # the application's misuse, not our bug: it chose the response
            raise LocalProtocolError(f"cannot send a {response.status_code} in state {self.state.name}")
        self._transition(kind)
        return kind


class ServerInviteTransaction(ServerTransaction[ServerInviteState]):
    """The INVITE server transaction."""

    State = ServerInviteState
    END = _SI.TERMINATED
    INITIAL = _SI.PROCEEDING
    TRANSITIONS: ClassVar[dict[tuple[ServerInviteState, TxInput], ServerInviteState]] = terminating_table(
        ServerInviteState,
        {
            (_SI.PROCEEDING, _REQ): _SI.PROCEEDING,
            (_SI.PROCEEDING, _S1): _SI.PROCEEDING,
            (_SI.PROCEEDING, _S2): _SI.ACCEPTED,
            (_SI.PROCEEDING, _SF): _SI.COMPLETED,
            (_SI.PROCEEDING, TxInput.TIMER_TRYING): _SI.PROCEEDING,
            (_SI.PROCEEDING, _TERR): _SI.TERMINATED,
            (_SI.ACCEPTED, _REQ): _SI.ACCEPTED,
            (_SI.ACCEPTED, _S2): _SI.ACCEPTED,  # the TU retransmits its 2xx through us
            (_SI.ACCEPTED, _ACK): _SI.ACCEPTED,
            (_SI.ACCEPTED, TxInput.TIMER_L): _SI.TERMINATED,
            (_SI.ACCEPTED, _TERR): _SI.ACCEPTED,  # the TU owns 2xx delivery
            (_SI.COMPLETED, _REQ): _SI.COMPLETED,
            (_SI.COMPLETED, _ACK): _SI.CONFIRMED,
            (_SI.COMPLETED, TxInput.TIMER_G): _SI.COMPLETED,
            (_SI.COMPLETED, TxInput.TIMER_H): _SI.TERMINATED,
            (_SI.COMPLETED, _TERR): _SI.TERMINATED,
            (_SI.CONFIRMED, _REQ): _SI.CONFIRMED,
            (_SI.CONFIRMED, _ACK): _SI.CONFIRMED,
            (_SI.CONFIRMED, TxInput.TIMER_I): _SI.TERMINATED,
        },
    )

    def start(self, now: float) -> None:
        """Arm the 100 Trying timer (the TU may answer before it fires)."""
        if self.timers.trying_delay == 0:
            self._send_trying()
        else:
            self._start(Timer.TRYING, now, self.timers.trying_delay)

    def _send_trying(self) -> None:
        self._send_response(make_response(self.request, 100))

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the transaction user."""
        kind = self._accept_response(response)
        self._stop(Timer.TRYING)
        self._send_response(response)
        if kind is _S2:
            if Timer.L not in self._deadlines:
                self._start(Timer.L, now, self.timers.l)
        elif kind is _SF:
            if not self.reliable:
                self._start(Timer.G, now, self.timers.t1)
            self._start(Timer.H, now, self.timers.h)

    def receive_request(self, request: Request, source: Address, now: float) -> None:
        """A retransmission of the INVITE, or the ACK for our final response."""
        if request.method == "ACK":
            if not self.can(_ACK):
                return  # an ACK before any final response: nothing to acknowledge, dropped
            before = self.state
            self._transition(_ACK)
            if before is _SI.COMPLETED:
                self._stop(Timer.G, Timer.H)
                self._start(Timer.I, now, self.timers.i(self.reliable))
            elif self.state is _SI.ACCEPTED:
                self._on_event(AckReceived(request, source, self))
            return
        self._transition(_REQ)
        if self.state in (_SI.PROCEEDING, _SI.COMPLETED):
            self._resend_last()

    def _on_timer(self, timer: Timer, now: float) -> None:
        if timer is Timer.TRYING:
            self._transition(TxInput.TIMER_TRYING)
            if self._last is None:
                self._send_trying()
        elif timer is Timer.G:
            self._transition(TxInput.TIMER_G)
            self._resend_last()
            self._start(Timer.G, now, min(self._intervals.get(Timer.G, self.timers.t1) * 2, self.timers.t2))
        else:  # H, I, L
            if timer is Timer.H:
                self._on_event(TransactionTimedOut(self, timer))
            self._finish(TIMER_INPUTS[timer], f"timer {timer}")


class ServerNonInviteTransaction(ServerTransaction[ServerNonInviteState]):
    """A non-INVITE server transaction."""

    State = ServerNonInviteState
    END = _SN.TERMINATED
    INITIAL = _SN.TRYING
    TRANSITIONS: ClassVar[dict[tuple[ServerNonInviteState, TxInput], ServerNonInviteState]] = (
        terminating_table(
            ServerNonInviteState,
            {
                (_SN.TRYING, _REQ): _SN.TRYING,
                (_SN.TRYING, _S1): _SN.PROCEEDING,
                (_SN.TRYING, _S2): _SN.COMPLETED,
                (_SN.TRYING, _SF): _SN.COMPLETED,
                (_SN.TRYING, _TERR): _SN.TERMINATED,
                (_SN.PROCEEDING, _REQ): _SN.PROCEEDING,
                (_SN.PROCEEDING, _S1): _SN.PROCEEDING,
                (_SN.PROCEEDING, _S2): _SN.COMPLETED,
                (_SN.PROCEEDING, _SF): _SN.COMPLETED,
                (_SN.PROCEEDING, _TERR): _SN.TERMINATED,
                (_SN.COMPLETED, _REQ): _SN.COMPLETED,
                (_SN.COMPLETED, TxInput.TIMER_J): _SN.TERMINATED,
                (_SN.COMPLETED, _TERR): _SN.TERMINATED,
            },
        )
    )

    def start(self, now: float) -> None:
        """Nothing to arm until the transaction user answers."""

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the transaction user."""
        kind = self._accept_response(response)
        self._send_response(response)
        if kind is not _S1:
            self._start(Timer.J, now, self.timers.j if not self.reliable else 0.0)

    def receive_request(self, request: Request, source: Address, now: float) -> None:
        """A retransmission: answer with the last response, if any."""
        self._transition(_REQ)
        self._resend_last()

    def _on_timer(self, timer: Timer, now: float) -> None:
        self._finish(TIMER_INPUTS[timer], f"timer {timer}")  # J, the only one
