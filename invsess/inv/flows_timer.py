"""The session layer's session-timer flows (RFC 4028): refreshing, expiring, the 422 retry.
The negotiation rules and the clock are in :mod:`invsess.inv.timer`."""

from __future__ import annotations

from invsess.dialog import DialogState
from invsess.inv.core import SDP, LayerCore
from invsess.inv.session import InviteSession, InviteState
from invsess.inv.timer import (
    DEFER_INTERVAL,
    SessionTimer,
    TimerDecision,
    TimerRejection,
    supports_timer,
    uac_decide,
    uas_decide,
)
from invsess.sip import (
    ParseError,
    Request,
    Response,
    make_request,
    make_response,
)
from invsess.transaction import (
    ServerTransaction,
    Transaction,
)


class TimerFlows(LayerCore):
    """Session timers, mixed into :class:`~invsess.inv.layer.SessionLayer`."""

    def _refresh(self, session: InviteSession, now: float) -> None:
        """RFC 4028 §7.4/§9: refresh by UPDATE without SDP when the peer allows UPDATE, else by
        re-INVITE with our current SDP; later if another exchange is under way (its success
        refreshes the session anyway)."""
        timer = session.timer
        if timer is None:
            return
        timer.refresh_at = None
        busy = (
            session.pending_reinvite is not None
            or session.uas_2xx is not None
            or session.retry_at is not None
            or session.negotiator.state.name != "DONE"
        )
        if busy or session.state is not InviteState.CONFIRMED or session.bye_sent:
            timer.refresh_at = now + DEFER_INTERVAL
            return
        method = "UPDATE" if "UPDATE" in session.peer_allow else "INVITE"
        self._send_in_dialog_offer(session, method, now, with_offer=method == "INVITE")
        timer.refresh_tx = session.pending_reinvite
        session.log.info("session refresh", method=method)

    def _timer_for_request(
        self, session: InviteSession, tx: ServerTransaction, request: Request, now: float
    ) -> TimerDecision | bool | None:
        """A session refresh (re-INVITE or UPDATE) from the peer: the timer it agrees, None when
        no timer runs here, or False when it was refused with 422 (already sent)."""
        if session.timer is None or self.timer_settings is None:
            return None
        decision = uas_decide(request, self.timer_settings, min_se=session.timer.min_se, initial=False)
        if isinstance(decision, TimerRejection):
            response = make_response(request, decision.status_code, headers=list(decision.headers))
            self.endpoint.respond(tx, response, now)
            return False
        return decision

    @staticmethod
    def _granted(timer: SessionTimer, response: Response) -> TimerDecision | None:
        """The timer a 2xx to our INVITE, re-INVITE or UPDATE leaves running.

        RFC 4028 §7.2: none when the 2xx has no Session-Expires, except that when we refresh
        for a peer that never said it supports timers (§9), its 2xx cannot be expected to
        carry one: our timer goes on as it was.
        """
        try:
            decision = uac_decide(response, min_se=timer.min_se)
            peer_does_timers = supports_timer(response)
        except ParseError:
            decision, peer_does_timers = None, True  # unreadable: it grants nothing
        if decision is None and timer.active and timer.we_refresh and not peer_does_timers:
            return TimerDecision(timer.interval, True, timer.min_se)
        return decision

    def _restart_timer(
        self, session: InviteSession, decision: TimerDecision | bool | None, now: float
    ) -> None:
        """A refresh succeeded: run the clock again (or stop it when no timer was agreed)."""
        if session.timer is None:
            return
        if isinstance(decision, TimerDecision):
            session.timer.start(decision, now)
        else:
            session.timer.stop()

    def _retry_422(self, session: InviteSession, tx: Transaction, response: Response, now: float) -> bool:
        """RFC 4028 §7.3: send the INVITE again with the interval the 422 asks for; False when
        there is nothing to retry with (no timer, a dialog already early, no higher Min-SE)."""
        timer, dialog, old = session.timer, session.dialog, tx.request
        if (
            timer is None
            or dialog.state is not DialogState.NULL
            or session.cancel_pending
            or session.cancel_sent
            or not timer.raise_interval(response)
            or old.from_ is None
            or old.to is None
            or old.call_id is None
        ):
            return False
        dialog.local_cseq += 1
        request = make_request(
            "INVITE",
            old.uri,
            via=self.endpoint.via(tx.transport),
            from_=old.from_,
            to=old.to,
            call_id=old.call_id,
            cseq=dialog.local_cseq,
            contact=dialog.local_contact,
            headers=[*(("Route", str(r)) for r in old.route), *self._invite_headers(session)],
            body=old.body,
            content_type=SDP if old.body else None,
        )
        session.log.info("422: INVITE again", session_expires=timer.interval)
        self._send_invite(session, request, tx.peer, tx.transport, now)
        return True

    def _timer_due(self, session: InviteSession, now: float) -> None:
        """The session timer: refresh when it is time, BYE when the session expired."""
        timer = session.timer
        if timer is None or session.state is InviteState.DISCONNECTED:
            return
        if timer.expire_at is not None and now >= timer.expire_at:
            # RFC 4028 §10: no refresh came (or ours never succeeded): BYE, and the session ends.
            timer.stop()
            session.cause, session.cause_text = 408, "Session timer expired"
            self._send_bye(session, now)
            self._disconnect(session, 408, now)
        elif timer.refresh_at is not None and now >= timer.refresh_at:
            self._refresh(session, now)
