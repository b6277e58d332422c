"""Taking an SDP answer to our offer, wherever it comes (a 1xx, a 2xx, a PRACK, an ACK).

One rule for all of them (RFC 3264 §6, pjmedia's ``sdp_neg.c``): an answer that cannot be read,
has no codec in common with the offer, or whose m-lines do not match the offer's (count, order,
media type) is unusable; the offer is then void and the negotiator back where it was. What
follows — CANCEL, BYE, or nothing — is for the caller to decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invsess.sdp import NegotiatorState, SdpNegotiationError, parse_sdp
from invsess.sip import ParseError

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession


def take_answer(session: InviteSession, body: bytes) -> bool:
    """``body`` as the answer to our offer: True when a session was agreed; False when it is
    unusable (unreadable, nothing in common, m-lines that do not match the offer's, RFC 3264
    §6), and then the offer is void and the negotiator is back where it was before it."""
    neg = session.negotiator
    try:
        neg.receive_answer(parse_sdp(body))
        neg.negotiate()
    except (ParseError, SdpNegotiationError) as exc:
        session.log.warning("unusable SDP answer", error=str(exc))
        if neg.state is NegotiatorState.LOCAL_OFFER:  # unreadable: the offer is still pending
            neg.cancel_offer()
        return False
    return True


__all__ = ["take_answer"]
