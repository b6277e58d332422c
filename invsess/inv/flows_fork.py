"""The session layer's forking flows (RFC 3261 §13.2.2.4): early dialogs of other forks, the
fork that answers, and the 2xx of a fork that answers after another one did."""

from __future__ import annotations

from invsess.dialog import Dialog, DialogState
from invsess.endpoint.routing import is_ip
from invsess.inv.core import Address
from invsess.inv.events import ForkedCall
from invsess.inv.flows_timer import TimerFlows
from invsess.inv.session import InviteSession
from invsess.inv.timer import (
    SessionTimer,
)
from invsess.sdp import SdpNegotiationError, parse_sdp
from invsess.sip import (
    LocalProtocolError,
    ParseError,
    RemoteProtocolError,
    Response,
)
from invsess.transaction import (
    Transaction,
)


class ForkFlows(TimerFlows):
    """Forking, mixed into :class:`~invsess.inv.layer.SessionLayer`."""

    def _early_leg(self, session: InviteSession, tx: Transaction, response: Response) -> Dialog | None:
        """The early dialog a 1xx with a To tag belongs to: the session's own (established by
        the first such 1xx), or, for another fork, a dialog of its own (RFC 3261 §13.2.2.4)."""
        dialog = session.dialog
        tag = response.to.tag if response.to else None
        if not tag or not response.contact:
            return None
        if dialog.state is DialogState.NULL:
            dialog.establish(response)
            self._register(session)
            return dialog
        if tag == dialog.remote_tag:
            return dialog
        if dialog.state is not DialogState.EARLY:
            return None
        fork = session.forks.get(tag)
        if fork is None:
            try:
                fork = Dialog.create_uac(self.endpoint.factory, tx.request, response, transport=tx.transport)
            except (RemoteProtocolError, LocalProtocolError) as exc:
                session.log.info("forked 1xx ignored", error=str(exc))
                return None
            fork.add_ref("early fork")
            session.forks[tag] = fork
            session.log.info("early dialog of another fork", remote_tag=tag)
        return fork

    def _fork_2xx(self, session: InviteSession, response: Response, now: float) -> None:
        """A 2xx from another fork (RFC 3261 §13.2.2.4): ACK it, in a dialog of its own; then
        keep it as a session of its own (``keep_forks``: a :class:`ForkedCall` event) or end it
        with BYE. Retransmissions of that 2xx get the same ACK again, nothing more."""
        tx, tag = session.invite_tx, response.to.tag if response.to else None
        if tx is None or not tag:
            return
        done = session.fork_acks.get(tag)
        if done is not None:  # a retransmitted 2xx: our ACK was lost
            self.endpoint.send_stateless_bytes(*done)
            return
        fork = Dialog.create_uac(self.endpoint.factory, tx.request, response, transport=tx.transport)
        if self.keep_forks:
            forked = self._forked_session(session, fork, response, now)
            if forked.ack_wire is not None:
                session.fork_acks[tag] = (forked.ack_wire, *self._fork_hop(fork, tx))
            return
        fork.add_ref("fork")
        (host, port), transport = self._fork_hop(fork, tx)
        cseq = tx.request.cseq.number if tx.request.cseq else 1
        ack = fork.create_request("ACK", via=self.endpoint.via(transport), cseq=cseq).serialize()
        self.endpoint.send_stateless_bytes(ack, (host, port), transport)
        session.fork_acks[tag] = (ack, (host, port), transport)
        bye = fork.create_request("BYE", via=self.endpoint.via(transport))
        btx = self.endpoint.send_request(bye, (host, port), transport, now)
        self._track(btx, fork, "fork-bye", fork)
        fork.dec_ref("fork")  # the BYE transaction keeps the fork's dialog until it ends

    @staticmethod
    def _fork_hop(fork: Dialog, tx: Transaction) -> tuple[Address, str]:
        host, port, transport = fork.next_hop()
        return ((host, port) if is_ip(host) else tx.peer), transport

    def _forked_session(
        self, original: InviteSession, fork: Dialog, response: Response, now: float
    ) -> InviteSession:
        """A session of its own for an answering fork: our offer (or its) negotiated afresh."""
        tx = original.invite_tx
        assert tx is not None  # only called for a response to it
        forked = self._new_session(fork, "UAC")
        forked.invite_tx = tx
        self._events.append((ForkedCall(forked, original), None))
        self._set_state(forked, "send INVITE")
        neg, answer = forked.negotiator, None
        try:
            if tx.request.body and response.body:
                neg.create_offer()  # the offer the INVITE carried (the same local SDP)
                neg.receive_answer(parse_sdp(response.body))
                neg.negotiate()
            elif response.body:
                neg.receive_offer(parse_sdp(response.body))
                answer = neg.create_answer().serialize()
            elif tx.request.body:
                forked.cause = 488  # a 2xx without the answer to our offer
        except (ParseError, SdpNegotiationError):
            if neg.state.name == "LOCAL_OFFER":
                neg.cancel_offer()
            forked.cause = 488
        self._set_state(forked, "receive 2xx")
        self._send_ack(forked, tx, answer)
        self._set_state(forked, "send ACK")
        self._media_updated(forked)
        if self.timer_settings is not None:
            forked.timer = SessionTimer(self.timer_settings)
            self._restart_timer(forked, self._granted(forked.timer, response), now)
        if forked.cause == 488:
            self._send_bye(forked, now)
        return forked
