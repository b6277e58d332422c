"""How a session layer behaves: who it is, and the SIP extensions it uses.

Settings are values (frozen attrs) shared by every session of a layer; the option tags they
imply (:func:`option_tags`) are what the layer's endpoint must support and what Supported says.
"""

from __future__ import annotations

import enum
import functools

import attrs

from invsess.inv.timer import TimerSettings


class Rel100(enum.Enum):
    """How a user agent treats 100rel: ``SUPPORTED`` uses it when the peer offers it too."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    OFF = "off"
    SUPPORTED = "supported"
    REQUIRED = "required"


def option_tags(timer: TimerSettings | None, rel100: Rel100 | str) -> tuple[str, ...]:
    """The option tags a session layer with these settings implements: what its endpoint's
    ``supported`` must list (and "100rel" among them means PRACK must be allowed too)."""
    return (
        *(("100rel",) if Rel100(rel100) is not Rel100.OFF else ()),
        *(("timer",) if timer is not None else ()),
    )


@attrs.frozen
class LayerSettings:
    """How a layer's sessions behave.

    ``user`` is the user part of our Contact and From. ``timer`` turns on session timers
    (RFC 4028) with those settings; ``rel100`` is "off", "supported" (reliable 1xx when the peer
    supports them too) or "required"; ``keep_forks`` keeps the 2xx of a second fork as a call of
    its own instead of ending it with BYE; ``lock_codec`` offers again with one codec when an
    answer to our offer kept several (pjsua's ``lock_codec``, :mod:`invsess.inv.lock`).
    ``offer_timeout`` is how long an offer of the peer that the application answers itself
    (see ``SessionLayer.defer_offers``) may wait for that answer before it is refused with 504
    (an UPDATE's wait is also kept under the peer's Timer F, 64*T1).
    """

    user: str = "invsess"
    timer: TimerSettings | None = None
    rel100: Rel100 = attrs.field(default=Rel100.OFF, converter=Rel100)
    keep_forks: bool = False
    lock_codec: bool = False
    offer_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))

    @functools.cached_property
    def supported(self) -> tuple[str, ...]:
        """The option tags these settings implement (what Supported lists)."""
        return option_tags(self.timer, self.rel100)

    @functools.cached_property
    def supported_header(self) -> str:
        """The Supported header value of these settings ("" when there is none)."""
        return ", ".join(self.supported)


__all__ = ["LayerSettings", "Rel100", "option_tags"]
