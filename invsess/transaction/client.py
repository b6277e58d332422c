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
from invsess.transaction.base import Role, Transaction, response_kind
from invsess.transaction.events import ResponseReceived, TransactionTimedOut


class ClientInviteState(enum.Enum):
    """RFC 3261 Figure 5 with RFC 6026's Accepted."""

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ClientNonInviteState(enum.Enum):
    """RFC 3261 Figure 6."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_CI = ClientInviteState
_CN = ClientNonInviteState


class ClientInviteTransaction(Transaction):
    """The INVITE client transaction."""

    role = Role.CLIENT
    State = ClientInviteState
    TRANSITIONS: ClassVar[dict[tuple[Any, str], Any]] = {
        (_CI.CALLING, "1xx"): _CI.PROCEEDING,
        (_CI.CALLING, "2xx"): _CI.ACCEPTED,
        (_CI.CALLING, "3xx-6xx"): _CI.COMPLETED,
        (_CI.CALLING, "timer A"): _CI.CALLING,
        (_CI.CALLING, "timer B"): _CI.TERMINATED,
        (_CI.CALLING, "transport error"): _CI.TERMINATED,
        (_CI.PROCEEDING, "1xx"): _CI.PROCEEDING,
        (_CI.PROCEEDING, "2xx"): _CI.ACCEPTED,
        (_CI.PROCEEDING, "3xx-6xx"): _CI.COMPLETED,
        (_CI.PROCEEDING, "transport error"): _CI.TERMINATED,
        (_CI.ACCEPTED, "1xx"): _CI.ACCEPTED,  # late provisional: absorbed
        (_CI.ACCEPTED, "2xx"): _CI.ACCEPTED,
        (_CI.ACCEPTED, "3xx-6xx"): _CI.ACCEPTED,  # absorbed
        (_CI.ACCEPTED, "timer M"): _CI.TERMINATED,
        (_CI.COMPLETED, "1xx"): _CI.COMPLETED,
        (_CI.COMPLETED, "2xx"): _CI.COMPLETED,
        (_CI.COMPLETED, "3xx-6xx"): _CI.COMPLETED,
        (_CI.COMPLETED, "timer D"): _CI.TERMINATED,
        (_CI.COMPLETED, "transport error"): _CI.TERMINATED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = _CI.CALLING
        self._wire = self._keep(self.request.serialize())
        self._ack: bytes | None = None

    def start(self, now: float) -> None:
        """Send the request and arm Timers A (UDP) and B."""
        self._send(self._wire)
        if not self.reliable:
            self._start("A", now, self.timers.t1)
        self._start("B", now, self.timers.b)

    def receive(self, response: Response, now: float) -> bool:
        """Feed a matched response; True if it went to the transaction user."""
        kind = response_kind(response)
        before = self.state
        self._transition(kind)
        if before in (_CI.CALLING, _CI.PROCEEDING):
            self._stop("A", "B")
            if kind == "2xx":
                self._start("M", now, self.timers.m)
            elif kind == "3xx-6xx":
                self._ack = self._build_ack(response).serialize()
                self._send(self._ack)
                self._start("D", now, self.timers.d(self.reliable))
            self._on_event(ResponseReceived(self, response))
            return True
        if before is _CI.ACCEPTED and kind == "2xx":
            self._on_event(ResponseReceived(self, response))  # 2xx retransmission: the TU ACKs it
            return True
        if before is _CI.COMPLETED and kind == "3xx-6xx" and self._ack is not None:
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

    def _on_timer(self, name: str, now: float) -> None:
        if name == "A":
            self._transition("timer A")
            self._send(self._wire)
            self._start("A", now, self._intervals.get("A", self.timers.t1) * 2)
        elif name == "B":
            self._transition("timer B")
            self._on_event(TransactionTimedOut(self, "B"))
            self._finish("timer B")
        elif name in ("D", "M"):
            self._transition(f"timer {name}")
            self._finish(f"timer {name}")


class ClientNonInviteTransaction(Transaction):
    """A non-INVITE client transaction."""

    role = Role.CLIENT
    State = ClientNonInviteState
    TRANSITIONS: ClassVar[dict[tuple[Any, str], Any]] = {
        (_CN.TRYING, "1xx"): _CN.PROCEEDING,
        (_CN.TRYING, "2xx"): _CN.COMPLETED,
        (_CN.TRYING, "3xx-6xx"): _CN.COMPLETED,
        (_CN.TRYING, "timer E"): _CN.TRYING,
        (_CN.TRYING, "timer F"): _CN.TERMINATED,
        (_CN.TRYING, "transport error"): _CN.TERMINATED,
        (_CN.PROCEEDING, "1xx"): _CN.PROCEEDING,
        (_CN.PROCEEDING, "2xx"): _CN.COMPLETED,
        (_CN.PROCEEDING, "3xx-6xx"): _CN.COMPLETED,
        (_CN.PROCEEDING, "timer E"): _CN.PROCEEDING,
        (_CN.PROCEEDING, "timer F"): _CN.TERMINATED,
        (_CN.PROCEEDING, "transport error"): _CN.TERMINATED,
        (_CN.COMPLETED, "1xx"): _CN.COMPLETED,
        (_CN.COMPLETED, "2xx"): _CN.COMPLETED,
        (_CN.COMPLETED, "3xx-6xx"): _CN.COMPLETED,
        (_CN.COMPLETED, "timer K"): _CN.TERMINATED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = _CN.TRYING
        self._wire = self._keep(self.request.serialize())

    def start(self, now: float) -> None:
        """Send the request and arm Timers E (UDP) and F."""
        self._send(self._wire)
        if not self.reliable:
            self._start("E", now, self.timers.t1)
        self._start("F", now, self.timers.f)

    def receive(self, response: Response, now: float) -> bool:
        """Feed a matched response; True if it went to the transaction user."""
        kind = response_kind(response)
        before = self.state
        self._transition(kind)
        if before is _CN.COMPLETED:
            return False  # retransmission of the final response: absorbed
        if kind != "1xx":
            self._stop("E", "F")
            self._start("K", now, self.timers.k(self.reliable))
        self._on_event(ResponseReceived(self, response))
        return True

    def _on_timer(self, name: str, now: float) -> None:
        if name == "E":
            self._transition("timer E")
            self._send(self._wire)
            if self.state is _CN.PROCEEDING:
                interval = self.timers.t2
            else:
                interval = min(self._intervals.get("E", self.timers.t1) * 2, self.timers.t2)
            self._start("E", now, interval)
        elif name == "F":
            self._transition("timer F")
            self._on_event(TransactionTimedOut(self, "F"))
            self._finish("timer F")
        elif name == "K":
            self._transition("timer K")
            self._finish("timer K")
