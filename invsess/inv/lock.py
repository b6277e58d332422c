"""Lock codec (pjsua's ``lock_codec``, ticket #476): one codec per stream after a rich answer.

An answerer may keep several of the codecs we offered (RFC 3264 §6.1 allows it), leaving both
sides free to switch among them at any packet. A softphone that wants one codec says so: after
the answer, it offers again with only the codec the answer put first (events and comfort noise
stay), by UPDATE when the peer allows it, else by re-INVITE — in an early dialog only when the
answer came reliably and UPDATE may carry it (RFC 3311), otherwise once the call is confirmed.
Codecs of the answer that the offer did not have do not count: the answer to a locked offer
cannot ask for another lock, so there is no loop to cap (pjsua caps it at five).

Off unless the layer is made with ``lock_codec=True`` (``invsess call``/``answer`` turn it on,
like pjsua). Layer-initiated: nothing here raises at the application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invsess.inv.states import InviteState, SessionInput
from invsess.sdp import NegotiatorState, locked_offer
from invsess.sip import LocalProtocolError

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession


def lock_codec(session: InviteSession, now: float) -> None:
    """After an offer/answer exchange (or once the call is confirmed): offer the one codec
    again if our last offer's answer kept several, and if the session may send an offer now."""
    offers = session.offers
    neg = session.negotiator
    if not session.ctx.settings.lock_codec or not neg.was_answer_remote:
        return
    local, remote = neg.active_local, neg.active_remote
    offer = locked_offer(local, remote) if local is not None and remote is not None else None
    if offer is None or session.bye_sent or session.cause is not None:
        return  # one codec a stream (of those we offered): nothing to lock
    if offers.busy or session.ack_wait is not None or neg.state is not NegotiatorState.DONE:
        return  # another exchange is under way: its answer is checked in its turn
    update = "UPDATE" in session.peer_allow
    if session.state is InviteState.EARLY and not (update and session.early_sdp):
        return  # checked again when the call is confirmed (pjsua's reinv_pending)
    if session.state not in (InviteState.EARLY, InviteState.CONFIRMED):
        return
    try:
        session.process(SessionInput.UPDATE if update else SessionInput.REINVITE, now)
    except LocalProtocolError:  # pragma: no cover - the states above are the table's
        return
    session.log.info("lock codec", method="UPDATE" if update else "INVITE")
    offers.send(session, "UPDATE" if update else "INVITE", now, with_offer=True, body=offer)


__all__ = ["lock_codec"]
