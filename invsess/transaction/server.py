"""Server transactions (RFC 3261 §17.2, RFC 6026 §8.5-8.7): INVITE and non-INVITE.

Absorbs request retransmissions (answering them with the last response, from its bytes),
retransmits a non-2xx final response until the ACK (Timers G, H, I), keeps Accepted after a 2xx
(Timer L) so INVITE retransmissions are absorbed and 2xx ACKs reach the transaction user, and
sends 100 Trying itself when the user stays silent for 200 ms.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from invsess.memory import Buffer
from invsess.sip import Request, Response, make_response
from invsess.sip.errors import LocalProtocolError
from invsess.transaction.base import Address, Role, Transaction, response_kind
from invsess.transaction.events import AckReceived, TransactionTimedOut


class ServerInviteState(enum.Enum):
    """RFC 3261 Figure 7 with RFC 6026's Accepted."""

    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class ServerNonInviteState(enum.Enum):
    """RFC 3261 Figure 8."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_SI = ServerInviteState
_SN = ServerNonInviteState


class ServerTransaction(Transaction):
    """What both server machines share: the response destination and the last response."""

    role = Role.SERVER

    def __init__(self, *args: Any, response_destination: Address, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.response_destination = response_destination
        self._last: Buffer | None = None
        self.last_status: int | None = None

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

    def _accept_response(self, response: Response) -> str:
        """Check a response from the transaction user and take its transition; returns its kind."""
        mine = self.request.cseq
        if response.cseq is None or mine is None or response.cseq.number != mine.number:
            raise LocalProtocolError("the response's CSeq does not match the request")
        kind = response_kind(response)
        if (self.state, f"send {kind}") not in self.TRANSITIONS:
            raise LocalProtocolError(f"cannot send a {response.status_code} in state {self.state.name}")
        self._transition(f"send {kind}")
        return kind


class ServerInviteTransaction(ServerTransaction):
    """The INVITE server transaction."""

    State = ServerInviteState
    TRANSITIONS: ClassVar[dict[tuple[Any, str], Any]] = {
        (_SI.PROCEEDING, "request"): _SI.PROCEEDING,
        (_SI.PROCEEDING, "send 1xx"): _SI.PROCEEDING,
        (_SI.PROCEEDING, "send 2xx"): _SI.ACCEPTED,
        (_SI.PROCEEDING, "send 3xx-6xx"): _SI.COMPLETED,
        (_SI.PROCEEDING, "timer 100"): _SI.PROCEEDING,
        (_SI.PROCEEDING, "transport error"): _SI.TERMINATED,
        (_SI.ACCEPTED, "request"): _SI.ACCEPTED,
        (_SI.ACCEPTED, "send 2xx"): _SI.ACCEPTED,  # the TU retransmits its 2xx through us
        (_SI.ACCEPTED, "ACK"): _SI.ACCEPTED,
        (_SI.ACCEPTED, "timer L"): _SI.TERMINATED,
        (_SI.ACCEPTED, "transport error"): _SI.ACCEPTED,  # the TU owns 2xx delivery
        (_SI.COMPLETED, "request"): _SI.COMPLETED,
        (_SI.COMPLETED, "ACK"): _SI.CONFIRMED,
        (_SI.COMPLETED, "timer G"): _SI.COMPLETED,
        (_SI.COMPLETED, "timer H"): _SI.TERMINATED,
        (_SI.COMPLETED, "transport error"): _SI.TERMINATED,
        (_SI.CONFIRMED, "request"): _SI.CONFIRMED,
        (_SI.CONFIRMED, "ACK"): _SI.CONFIRMED,
        (_SI.CONFIRMED, "timer I"): _SI.TERMINATED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = _SI.PROCEEDING

    def start(self, now: float) -> None:
        """Arm the 100 Trying timer (the TU may answer before it fires)."""
        if self.timers.trying_delay == 0:
            self._send_trying()
        else:
            self._start("100", now, self.timers.trying_delay)

    def _send_trying(self) -> None:
        self._send_response(make_response(self.request, 100))

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the transaction user."""
        kind = self._accept_response(response)
        self._stop("100")
        self._send_response(response)
        if kind == "2xx":
            if "L" not in self._deadlines:
                self._start("L", now, self.timers.l)
        elif kind == "3xx-6xx":
            if not self.reliable:
                self._start("G", now, self.timers.t1)
            self._start("H", now, self.timers.h)

    def receive_request(self, request: Request, source: Address, now: float) -> None:
        """A retransmission of the INVITE, or the ACK for our final response."""
        if request.method == "ACK":
            if (self.state, "ACK") not in self.TRANSITIONS:
                return  # an ACK before any final response: nothing to acknowledge, dropped
            before = self.state
            self._transition("ACK")
            if before is _SI.COMPLETED:
                self._stop("G", "H")
                self._start("I", now, self.timers.i(self.reliable))
            elif self.state is _SI.ACCEPTED:
                self._on_event(AckReceived(request, source, self))
            return
        self._transition("request")
        if self.state in (_SI.PROCEEDING, _SI.COMPLETED):
            self._resend_last()

    def _on_timer(self, name: str, now: float) -> None:
        if name == "100":
            self._transition("timer 100")
            if self._last is None:
                self._send_trying()
        elif name == "G":
            self._transition("timer G")
            self._resend_last()
            self._start("G", now, min(self._intervals.get("G", self.timers.t1) * 2, self.timers.t2))
        elif name == "H":
            self._transition("timer H")
            self._on_event(TransactionTimedOut(self, "H"))
            self._finish("timer H")
        elif name in ("I", "L"):
            self._transition(f"timer {name}")
            self._finish(f"timer {name}")


class ServerNonInviteTransaction(ServerTransaction):
    """A non-INVITE server transaction."""

    State = ServerNonInviteState
    TRANSITIONS: ClassVar[dict[tuple[Any, str], Any]] = {
        (_SN.TRYING, "request"): _SN.TRYING,
        (_SN.TRYING, "send 1xx"): _SN.PROCEEDING,
        (_SN.TRYING, "send 2xx"): _SN.COMPLETED,
        (_SN.TRYING, "send 3xx-6xx"): _SN.COMPLETED,
        (_SN.TRYING, "transport error"): _SN.TERMINATED,
        (_SN.PROCEEDING, "request"): _SN.PROCEEDING,
        (_SN.PROCEEDING, "send 1xx"): _SN.PROCEEDING,
        (_SN.PROCEEDING, "send 2xx"): _SN.COMPLETED,
        (_SN.PROCEEDING, "send 3xx-6xx"): _SN.COMPLETED,
        (_SN.PROCEEDING, "transport error"): _SN.TERMINATED,
        (_SN.COMPLETED, "request"): _SN.COMPLETED,
        (_SN.COMPLETED, "timer J"): _SN.TERMINATED,
        (_SN.COMPLETED, "transport error"): _SN.TERMINATED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = _SN.TRYING

    def start(self, now: float) -> None:
        """Nothing to arm until the transaction user answers."""

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the transaction user."""
        kind = self._accept_response(response)
        self._send_response(response)
        if kind != "1xx":
            self._start("J", now, self.timers.j if not self.reliable else 0.0)

    def receive_request(self, request: Request, source: Address, now: float) -> None:
        """A retransmission: answer with the last response, if any."""
        self._transition("request")
        self._resend_last()

    def _on_timer(self, name: str, now: float) -> None:
        if name == "J":
            self._transition("timer J")
            self._finish("timer J")
