"""Session timers (RFC 4028, PJSIP ``sip_timer.c``): negotiation rules and one session's timer.

:func:`uas_decide` and :func:`uac_decide` turn a request or a 2xx into a :class:`TimerDecision`
(or a rejection) and know nothing of sessions. :class:`SessionTimer` is the part of a session
that keeps its two deadlines — when we refresh (we are the refresher) or when we give up on the
peer (we are not) — and acts on them: a refresh by UPDATE or re-INVITE (through the session's
offer exchange), or BYE when the session expired.

The ``refresher`` parameter is relative to the *transaction* that carries it, not to the call:
``refresher=uac`` in a re-INVITE that the callee sent means the callee refreshes. Every
decision is therefore made in terms of "we" and "the peer" as soon as a message is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from invsess.inv.states import InviteState, RequestRefusedError
from invsess.sdp import NegotiatorState
from invsess.sip import ParseError, Request, Response

if TYPE_CHECKING:
    from invsess.inv.session import InviteSession

#: RFC 4028 §4: no Session-Expires or Min-SE may be below 90 seconds.
RFC_MIN_SE = 90
#: §10: the non-refresher sends BYE this long (at most) before the session expires.
BYE_MARGIN = 32.0
#: A refresh due while another offer/answer or INVITE transaction is running waits this long.
DEFER_INTERVAL = 1.0

Refresher = Literal["uac", "uas"]


@attrs.frozen
class TimerSettings:
    """What this user agent wants from session timers.

    ``session_expires`` is the interval asked for (or granted, at most, when answering);
    ``min_se`` the smallest interval accepted (RFC 4028 forbids less than 90 s: ``floor`` is
    there only for test beds that want to run faster, and PJSIP refuses values below 90).
    ``refresher`` is who should refresh when we get to choose ("uac" or "uas" from the
    point of view of the INVITE), None to follow RFC 4028 (the caller when it supports timers).
    ``required`` puts ``Require: timer`` in our INVITEs and answers 421 to INVITEs from user
    agents that do not support timers (PJSIP's ``PJSIP_INV_REQUIRE_TIMER``).
    """

    session_expires: int = 1800
    min_se: int = RFC_MIN_SE
    refresher: Refresher | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(("uac", "uas")))
    )
    required: bool = False
    floor: int = RFC_MIN_SE

    def __attrs_post_init__(self) -> None:
        if self.floor < 1:
            raise ValueError("floor must be at least 1 s")
        if self.min_se < self.floor:
            raise ValueError(f"min_se {self.min_se} is below the floor of {self.floor} s (RFC 4028 §5)")
        if self.session_expires < self.min_se:
            raise ValueError(f"session_expires {self.session_expires} is below min_se {self.min_se}")


@attrs.frozen
class TimerDecision:
    """A negotiated session timer: the interval, whether we refresh, and what the peer supports."""

    interval: int
    we_refresh: bool
    min_se: int


@attrs.frozen
class TimerRejection:
    """The request cannot be accepted as it is: 422 (interval too small) or 421 (timer required)."""

    status_code: int
    headers: tuple[tuple[str, str], ...]


def supports_timer(message: Request | Response) -> bool:
    """True if the message says its sender understands session timers."""
    return "timer" in message.supported or "timer" in message.require


def uas_decide(
    request: Request, settings: TimerSettings, *, min_se: int, initial: bool
) -> TimerDecision | TimerRejection:
    """RFC 4028 §9: what the answerer of an INVITE, re-INVITE or UPDATE makes of its timer.

    ``min_se`` is the largest Min-SE seen in this dialog so far (ours at least). A request
    without Session-Expires still gets a timer (we are configured for them): the answerer
    refreshes itself when the requester does not support timers, which is how a session with
    a peer that knows nothing of RFC 4028 is still kept honest.
    """
    peer_supports = supports_timer(request)
    if initial and settings.required and not peer_supports:
        return TimerRejection(421, (("Require", "timer"),))
    se = request.session_expires
    asked_min = request.min_se.delta if request.min_se is not None else 0
    floor = max(min_se, settings.min_se, asked_min)
    if se is None:
        # §9: the UAS may impose a timer the request did not ask for; it refreshes itself when
        # the other side cannot (no Supported: timer), else the caller does (PJSIP's choice).
        interval = max(settings.session_expires, floor)
        refresher: Refresher = "uac" if peer_supports and settings.refresher != "uas" else "uas"
        return TimerDecision(interval, refresher == "uas", floor)
    if se.delta < floor:
        if peer_supports:
            return TimerRejection(422, (("Min-SE", str(floor)),))
        # §9: a proxy asked for the timer on behalf of a UA that would not understand a 422.
        interval = floor
    else:
        # The answerer may shorten the interval (down to Min-SE), never lengthen it.
        interval = max(min(se.delta, settings.session_expires), floor)
    if se.refresher is not None:
        refresher = "uac" if se.refresher == "uac" and peer_supports else "uas"
    elif peer_supports:
        refresher = settings.refresher or "uac"
    else:
        refresher = "uas"
    return TimerDecision(interval, refresher == "uas", floor)


def uac_decide(response: Response, *, min_se: int) -> TimerDecision | None:
    """RFC 4028 §7.2: the timer a 2xx grants to the sender of the request (None: no timer)."""
    se = response.session_expires
    if se is None:
        return None  # the answerer does not do session timers: there is no session expiration
    refresher = se.refresher or "uac"
    return TimerDecision(max(se.delta, 1), refresher == "uac", min_se)


def response_headers(decision: TimerDecision, request: Request) -> list[tuple[str, object]]:
    """Session-Expires (with the refresher, relative to this transaction) and Require: timer."""
    refresher = "uas" if decision.we_refresh else "uac"
    headers: list[tuple[str, object]] = [("Session-Expires", f"{decision.interval};refresher={refresher}")]
    if supports_timer(request):
        headers.append(("Require", "timer"))  # only what the requester said it supports (§9)
    return headers


@attrs.define(slots=True)
class SessionTimer:
    """One session's timer: the agreed interval, the next thing due, and what to do then."""

    settings: TimerSettings
    interval: int = 0
    min_se: int = 0
    we_refresh: bool = False
    refresh_at: float | None = None
    expire_at: float | None = None
    retried_422: int = 0
    refresh_tx: object = None
    #: Refresh UPDATEs carry our SDP: the peer refused one without (PJSIP's ``with_sdp``).
    with_sdp: bool = False

    def __attrs_post_init__(self) -> None:
        self.interval = self.interval or self.settings.session_expires
        self.min_se = max(self.min_se, self.settings.min_se)

    @property
    def active(self) -> bool:
        """True while a negotiated timer runs."""
        return self.expire_at is not None

    def request_headers(self) -> list[tuple[str, object]]:
        """For a request we send: Session-Expires (keeping today's refresher) and Min-SE.

        In a request the sender is the UAC, so ``refresher=uac`` means "I refresh".
        Before a timer runs the preferred refresher (if any) is asked for.
        """
        if self.active:
            refresher: str | None = "uac" if self.we_refresh else "uas"
        else:
            refresher = self.settings.refresher
        value = f"{self.interval};refresher={refresher}" if refresher else str(self.interval)
        return [("Session-Expires", value), ("Min-SE", str(self.min_se))]

    def start(self, decision: TimerDecision, now: float) -> None:
        """A refresh succeeded (or the session started): run the clock again from ``now``."""
        self.interval = decision.interval
        self.min_se = max(self.min_se, decision.min_se)
        self.we_refresh = decision.we_refresh
        self.refresh_tx = None
        if decision.we_refresh:
            self.refresh_at = now + decision.interval / 2
            self.expire_at = now + decision.interval
        else:
            self.refresh_at = None
            self.expire_at = now + decision.interval - min(BYE_MARGIN, decision.interval / 3)

    def stop(self) -> None:
        """No timer any more (the peer stopped asking for one, or the session ended)."""
        self.refresh_at = self.expire_at = None
        self.refresh_tx = None

    def next_deadline(self) -> float | None:
        """The earlier of the refresh and the expiry."""
        due = [t for t in (self.refresh_at, self.expire_at) if t is not None]
        return min(due) if due else None

    def restart(self, decision: TimerDecision | None, now: float) -> None:
        """A refresh succeeded: run the clock again (or stop it when no timer was agreed)."""
        if decision is not None:
            self.start(decision, now)
        else:
            self.stop()

    def decide(self, request: Request) -> TimerDecision:
        """The timer a refresh from the peer (re-INVITE or UPDATE) agrees; :class:`RequestRefusedError`
        (422 with our Min-SE) when its interval is too small."""
        decision = uas_decide(request, self.settings, min_se=self.min_se, initial=False)
        if isinstance(decision, TimerRejection):
            code, headers = decision.status_code, decision.headers
            raise RequestRefusedError("session interval too small", code, headers=headers)
        return decision

    def granted(self, response: Response) -> TimerDecision | None:
        """The timer a 2xx to our INVITE, re-INVITE or UPDATE leaves running.

        RFC 4028 §7.2: none when the 2xx has no Session-Expires, except that when we refresh
        for a peer that never said it supports timers (§9), its 2xx cannot be expected to
        carry one: our timer goes on as it was.
        """
        try:
            decision = uac_decide(response, min_se=self.min_se)
            peer_does_timers = supports_timer(response)
        except ParseError:
            decision, peer_does_timers = None, True  # unreadable: it grants nothing
        if decision is None and self.active and self.we_refresh and not peer_does_timers:
            return TimerDecision(self.interval, True, self.min_se)
        return decision

    def refresh(self, session: InviteSession, now: float) -> None:
        """RFC 4028 §7.4/§9: refresh by UPDATE without SDP when the peer allows UPDATE, else by
        re-INVITE with our current SDP; later if another exchange is under way (its success
        refreshes the session anyway)."""
        self.refresh_at = None
        busy = (
            session.offers.busy
            or session.ack_wait is not None
            or session.negotiator.state is not NegotiatorState.DONE
        )
        if busy or session.state is not InviteState.CONFIRMED or session.bye_sent:
            self.refresh_at = now + DEFER_INTERVAL
            return
        method = "UPDATE" if "UPDATE" in session.peer_allow else "INVITE"
        session.offers.send(session, method, now, with_offer=method == "INVITE" or self.with_sdp)
        self.refresh_tx = session.offers.pending
        session.log.info("session refresh", method=method)

    def handle_timer(self, session: InviteSession, now: float) -> None:
        """Refresh when it is time; BYE when the session expired (RFC 4028 §10)."""
        if self.expire_at is not None and now >= self.expire_at:
            self.stop()  # no refresh came (or ours never succeeded)
            session.fail(408, now, text="Session timer expired")
        elif self.refresh_at is not None and now >= self.refresh_at:
            self.refresh(session, now)

    def raise_interval(self, response: Response) -> bool:
        """After a 422: take its Min-SE; False if that would not change anything (no endless loop)."""
        asked = response.min_se.delta if response.min_se is not None else 0
        if asked <= self.interval or self.retried_422 >= 2:
            return False
        self.retried_422 += 1
        self.interval = asked
        self.min_se = max(self.min_se, asked)
        return True


__all__ = [
    "BYE_MARGIN",
    "DEFER_INTERVAL",
    "RFC_MIN_SE",
    "Refresher",
    "SessionTimer",
    "TimerDecision",
    "TimerRejection",
    "TimerSettings",
    "response_headers",
    "supports_timer",
    "uac_decide",
    "uas_decide",
]
