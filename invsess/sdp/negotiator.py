"""SDP offer/answer (RFC 3264) as pjmedia's ``sdp_neg.c`` does it: states, tables, two pools.

States: NULL, LOCAL_OFFER, REMOTE_OFFER, WAIT_NEGO, DONE. The negotiator holds our capabilities
(``local``: the media we can do, in our preference order, with our direction), the offer or
answer in progress, and the active pair after a successful negotiation.

An application may also bring the SDP itself — a B2BUA passes the other leg's offer or answer
through unchanged: :meth:`SdpNegotiator.create_offer` and :meth:`SdpNegotiator.create_answer`
take it (an answer is still checked against the offer, RFC 3264 §6). A negotiator without
capabilities of its own (``local=None``) works only that way.

Memory follows PJSIP's ``pool_prov``/``pool_active``: the SDPs of a negotiation in progress are
kept (as the bytes sent or received) in a provisional pool; when it completes, the old active
pool is released and the provisional one becomes active. So any number of re-INVITEs costs
the same memory (PJSIP's issue #877 was that it did not). The agreed pair lives only there, as
bytes: :attr:`SdpNegotiator.active_local` and :attr:`~SdpNegotiator.active_remote` parse it when
asked (a re-offer, the application), so an idle session holds ~200 bytes per SDP, all of them
accounted in its pool, rather than a parsed model ten times that size.

Never does I/O; raises :class:`SdpNegotiationError` (answer 488) when no stream can be agreed,
and :class:`~invsess.sip.errors.LocalProtocolError` for a call in the wrong state.
"""

from __future__ import annotations

import enum
from typing import ClassVar, NamedTuple

import attrs

from invsess.memory import Buffer, Pool, PoolFactory
from invsess.sdp.model import (
    DIRECTION_ATTRIBUTES,
    DIRECTIONS,
    MediaDescription,
    SessionDescription,
    parse_rtpmap,
)
from invsess.sdp.parser import parse_sdp
from invsess.sip.errors import LocalProtocolError, RemoteProtocolError


class SdpNegotiationError(RemoteProtocolError):
    """No acceptable stream: an initial INVITE gets 488, a confirmed session ends with BYE."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=488, reason="Not Acceptable Here")


class NegotiatorState(enum.Enum):
    """pjmedia's ``pjmedia_sdp_neg_state``."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    NULL = "NULL"
    LOCAL_OFFER = "LOCAL_OFFER"
    REMOTE_OFFER = "REMOTE_OFFER"
    WAIT_NEGO = "WAIT_NEGO"
    DONE = "DONE"


class NegotiatorInput(enum.Enum):
    """What moves the negotiator (pjmedia's ``pjmedia_sdp_neg_*`` calls)."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    CREATE_OFFER = "create offer"
    RECEIVE_OFFER = "receive offer"
    RECEIVE_ANSWER = "receive answer"
    CREATE_ANSWER = "create answer"
    CANCEL_OFFER = "cancel offer"
    NEGOTIATE = "negotiate"
    NEGOTIATION_FAILED = "negotiation failed"


_S = NegotiatorState
_N = NegotiatorInput
#: (offered direction, our direction) -> the direction we answer (RFC 3264 §6.1).
_ANSWER_DIRECTION = {
    ("sendrecv", "sendrecv"): "sendrecv",
    ("sendrecv", "sendonly"): "sendonly",
    ("sendrecv", "recvonly"): "recvonly",
    ("sendrecv", "inactive"): "inactive",
    ("sendonly", "sendrecv"): "recvonly",
    ("sendonly", "recvonly"): "recvonly",
    ("sendonly", "sendonly"): "inactive",
    ("sendonly", "inactive"): "inactive",
    ("recvonly", "sendrecv"): "sendonly",
    ("recvonly", "sendonly"): "sendonly",
    ("recvonly", "recvonly"): "inactive",
    ("recvonly", "inactive"): "inactive",
    ("inactive", "sendrecv"): "inactive",
    ("inactive", "sendonly"): "inactive",
    ("inactive", "recvonly"): "inactive",
    ("inactive", "inactive"): "inactive",
}


class _CodecKey(NamedTuple):
    """A codec's identity (a named tuple: it keys the dicts a negotiation looks codecs up in)."""

    encoding: str
    clock_rate: int
    channels: int


def _codecs(media: MediaDescription) -> dict[str, _CodecKey | None]:
    """Format -> codec identity: rtpmap for dynamic types, the number alone for static ones.

    Computed once per section and kept with it (sections are immutable; our capabilities are
    negotiated in every call): treat the mapping as read-only."""
    return _derived(media)[0]


def _by_codec(media: MediaDescription) -> dict[_CodecKey, str]:
    """Codec identity -> format, for the dynamic types of ``media`` (cached like :func:`_codecs`)."""
    return _derived(media)[1]


def _derived(media: MediaDescription) -> tuple[dict[str, _CodecKey | None], dict[_CodecKey, str]]:
    derived = media._derived
    if derived is not None:
        return derived  # type: ignore[return-value]
    maps: dict[str, _CodecKey] = {}
    for attribute in media.attributes:
        if attribute.name == "rtpmap" and attribute.value:
            mapped = _rtpmap_codec(attribute.value)
            if mapped is not None:
                maps[mapped[0]] = mapped[1]
    out: dict[str, _CodecKey | None] = {fmt: maps.get(fmt) for fmt in media.formats}
    by_codec = {codec: fmt for fmt, codec in out.items() if codec is not None}
    object.__setattr__(media, "_derived", (out, by_codec))  # a cache of an immutable value
    return out, by_codec


#: a=rtpmap values seen -> (payload type, codec), shared: the same few recur in every call
#: (bounded: a peer's inventions cannot grow it past this).
_rtpmap_codecs: dict[str, tuple[str, _CodecKey] | None] = {}
_MAX_RTPMAPS = 1024


def _rtpmap_codec(value: str) -> tuple[str, _CodecKey] | None:
    if value in _rtpmap_codecs:
        return _rtpmap_codecs[value]
    rtp = parse_rtpmap(value)
    mapped = (
        None
        if rtp is None
        else (rtp.payload_type, _CodecKey(rtp.encoding.lower(), rtp.clock_rate, rtp.channels or 1))
    )
    if len(_rtpmap_codecs) < _MAX_RTPMAPS:
        _rtpmap_codecs[value] = mapped
    return mapped


def _is_static(fmt: str) -> bool:
    return fmt.isascii() and fmt.isdigit() and int(fmt) < 96


class SdpNegotiator:
    """One session's offer/answer machine; see the module docstring."""

    __slots__ = (
        "_active_local",
        "_active_remote",
        "_checked",
        "_factory",
        "_last_key",
        "_name",
        "_pending_local",
        "_pending_remote",
        "_pool_active",
        "_pool_prov",
        "_prov_local",
        "_prov_remote",
        "_version",
        "_we_offered",
        "generation",
        "local",
        "state",
    )

    TRANSITIONS: ClassVar[dict[tuple[NegotiatorState, NegotiatorInput], NegotiatorState]] = {
        (_S.NULL, _N.CREATE_OFFER): _S.LOCAL_OFFER,
        (_S.NULL, _N.RECEIVE_OFFER): _S.REMOTE_OFFER,
        (_S.LOCAL_OFFER, _N.RECEIVE_ANSWER): _S.WAIT_NEGO,
        (_S.LOCAL_OFFER, _N.CANCEL_OFFER): _S.NULL,  # to DONE instead when a session was agreed
        (_S.REMOTE_OFFER, _N.CREATE_ANSWER): _S.WAIT_NEGO,
        (_S.REMOTE_OFFER, _N.CANCEL_OFFER): _S.NULL,  # likewise
        (_S.WAIT_NEGO, _N.NEGOTIATE): _S.DONE,
        (_S.WAIT_NEGO, _N.NEGOTIATION_FAILED): _S.NULL,  # likewise
        (_S.DONE, _N.CREATE_OFFER): _S.LOCAL_OFFER,
        (_S.DONE, _N.RECEIVE_OFFER): _S.REMOTE_OFFER,
    }

    def __init__(self, local: SessionDescription | None, factory: PoolFactory, *, name: str = "sdp") -> None:
        """``local`` is what we can do (and offer; None: the application brings every SDP);
        ``name`` names the pools of the SDPs."""
        self.state = _S.NULL
        #: Our capabilities (None: every offer and answer comes from the application).
        self.local = local
        self._factory = factory
        self._name = name
        self._pool_active: Pool | None = None
        self._pool_prov: Pool | None = None
        # The bytes of each side's SDP, in the provisional and the active pool.
        self._prov_local: Buffer | None = None
        self._prov_remote: Buffer | None = None
        self._active_local: Buffer | None = None
        self._active_remote: Buffer | None = None
        self._pending_local: SessionDescription | None = None
        self._pending_remote: SessionDescription | None = None
        self._last_key: int | None = None  # what we last sent, its o= version aside
        # (offer, capabilities, answer body) of the last check_offer: create_answer takes it
        # rather than working the same answer out twice.
        self._checked: tuple[SessionDescription, SessionDescription, SessionDescription] | None = None
        self._version = local.origin.session_version if local is not None else 0
        self._we_offered = False
        #: Completed negotiations so far: which agreement a MediaUpdated event reports.
        self.generation = 0

    @property
    def active_local(self) -> SessionDescription | None:
        """Our side of the agreed session (parsed from the active pool), or None."""
        return None if self._active_local is None else parse_sdp(self._active_local.data)

    @property
    def active_remote(self) -> SessionDescription | None:
        """The peer's side of the agreed session (parsed from the active pool), or None."""
        return None if self._active_remote is None else parse_sdp(self._active_remote.data)

    @property
    def active_local_bytes(self) -> bytes | None:
        """Our agreed SDP as sent (what a 2xx or a reliable 1xx carries again)."""
        return None if self._active_local is None else self._active_local.data

    @property
    def active_remote_bytes(self) -> bytes | None:
        """The peer's agreed SDP as received."""
        return None if self._active_remote is None else self._active_remote.data

    # -- the table -----------------------------------------------------------------------------

    def _go(self, event: NegotiatorInput) -> None:
        nxt = self.TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise LocalProtocolError(f"SDP negotiator: cannot {event.value} in state {self.state.name}")
        if nxt is _S.NULL and self._active_local is not None:
            nxt = _S.DONE  # back to the session already agreed
        self.state = nxt

    def _keep(self, sdp: SessionDescription, *, received: bool = False) -> Buffer:
        """The bytes of ``sdp`` in the provisional pool: for the peer's (``received``), as it
        sent them when we parsed them (not written out again); for ours, as we send them."""
        if self._pool_prov is None:
            self._pool_prov = self._factory.create_pool(self._name, 1024, 1024)
        wire = (received and sdp.received_bytes) or sdp.serialize()
        return self._pool_prov.alloc(Buffer, wire)

    def _drop_provisional(self) -> None:
        if self._pool_prov is not None:
            self._pool_prov.release("offer/answer abandoned")
            self._pool_prov = None
        self._pending_local = self._pending_remote = None
        self._prov_local = self._prov_remote = None
        self._checked = None

    # -- the offerer's side ------------------------------------------------------------------

    @property
    def local_offer(self) -> SessionDescription | None:
        """Our offer waiting for the peer's answer (LOCAL_OFFER), else None."""
        return self._pending_local if self.state is _S.LOCAL_OFFER else None

    @property
    def remote_offer(self) -> SessionDescription | None:
        """The peer's offer waiting for our answer (REMOTE_OFFER), else None."""
        return self._pending_remote if self.state is _S.REMOTE_OFFER else None

    @property
    def has_capabilities(self) -> bool:
        """True when the negotiator can make offers and answers itself (it has ``local``)."""
        return self.local is not None

    def _capabilities(self) -> SessionDescription:
        if self.local is None:
            raise LocalProtocolError("no local SDP: the application must give the offer or answer")
        return self.local

    def set_direction(self, direction: str) -> None:
        """Hold (sendonly), resume (sendrecv), ...: applies to the next offer or answer."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        local = self._capabilities()
        media = tuple(m.with_direction(direction) if not m.rejected else m for m in local.media)
        self.local = attrs.evolve(local, media=media)

    def create_offer(
        self, body: SessionDescription | None = None, *, sdp: SessionDescription | None = None
    ) -> SessionDescription:
        """Our offer (NULL/DONE -> LOCAL_OFFER). A re-offer keeps the agreed m-lines.

        ``body`` offers that instead of what our capabilities make (pjmedia's
        ``modify_local_offer``): a re-offer of the agreed m-lines narrowed down, say, by
        :func:`locked_offer`. Its ``o=`` version is ours all the same. ``sdp`` is an offer the
        application brings (a B2BUA's other leg's): it goes out as it is, ``o=`` line and all.
        """
        if sdp is not None:
            agreed = self.active_local
            if agreed is not None and len(sdp.media) < len(agreed.media):
                raise LocalProtocolError("a re-offer may not remove m-lines (RFC 3264 §8)")
        elif body is None:
            body = self._offer_body()  # before any move: a misuse (no capabilities) changes nothing
        self._go(_N.CREATE_OFFER)
        self._we_offered = True
        offer = self._given(sdp) if sdp is not None else self._versioned(body)  # type: ignore[arg-type]
        self._pending_local = offer
        self._prov_local = self._keep(offer)
        return offer

    def _offer_body(self) -> SessionDescription:
        local = self._capabilities()
        active_local, active_remote = self.active_local, self.active_remote
        if active_local is None or active_remote is None:
            return local
        # RFC 3264 §8: the same m-lines, in the same order; rejected ones stay rejected.
        ours = list(local.media)
        media = []
        for old, theirs in zip(active_local.media, active_remote.media, strict=False):
            match = next((m for m in ours if m.media == old.media), None)
            if old.rejected or theirs.rejected or match is None:
                media.append(_rejected(old))
            else:
                ours.remove(match)
                media.append(match)
        return attrs.evolve(local, media=tuple(media))

    @property
    def was_answer_remote(self) -> bool:
        """True when the session agreed last was our offer and the peer's answer
        (pjmedia's ``pjmedia_sdp_neg_was_answer_remote``)."""
        return self.state is _S.DONE and self._we_offered

    def receive_answer(self, answer: SessionDescription) -> None:
        """The answer to our offer (LOCAL_OFFER -> WAIT_NEGO); call :meth:`negotiate` next."""
        self._go(_N.RECEIVE_ANSWER)
        self._pending_remote = answer
        self._prov_remote = self._keep(answer, received=True)

    def cancel_offer(self) -> None:
        """Abandon the offer in progress (a 491, a failed re-INVITE): back to the agreed session."""
        self._go(_N.CANCEL_OFFER)
        self._drop_provisional()

    # -- the answerer's side -----------------------------------------------------------------

    def receive_offer(self, offer: SessionDescription) -> None:
        """An offer from the peer (NULL/DONE -> REMOTE_OFFER); answer with :meth:`create_answer`."""
        active_remote = self.active_remote
        if active_remote is not None and len(offer.media) < len(active_remote.media):
            raise SdpNegotiationError("a re-offer may not remove m-lines (RFC 3264 §8)")
        self._go(_N.RECEIVE_OFFER)
        self._we_offered = False
        self._pending_remote = offer
        self._prov_remote = self._keep(offer, received=True)

    def check_offer(self) -> None:
        """Raise :class:`SdpNegotiationError` if our capabilities cannot answer the pending
        offer, changing nothing (an INVITE is refused with 488 before it rings)."""
        offer = self._pending_remote
        if self.state is not _S.REMOTE_OFFER or offer is None:
            raise LocalProtocolError(f"SDP negotiator: no offer to check in state {self.state.name}")
        caps = self._capabilities()
        self._checked = (offer, caps, self._answer_body(offer))

    def create_answer(self, sdp: SessionDescription | None = None) -> SessionDescription:
        """Our answer to the pending offer — ``sdp`` as given, or made from our capabilities;
        REMOTE_OFFER -> WAIT_NEGO -> DONE.

        Raises :class:`SdpNegotiationError` (and returns to the agreed session) when nothing in
        the offer is acceptable, or when the answer given does not answer the offer (RFC 3264
        §6: the same m-lines, a codec in common).
        """
        if sdp is None:
            self._capabilities()  # before any move: a misuse changes nothing
        self._go(_N.CREATE_ANSWER)
        offer = self._pending_remote
        if offer is None:  # pragma: no cover - the table guarantees it
            raise LocalProtocolError("no pending offer")
        checked, self._checked = self._checked, None
        try:
            if sdp is not None:
                answer = self._given(sdp)
            elif checked is not None and checked[0] is offer and checked[1] is self.local:
                answer = self._versioned(checked[2])  # worked out by check_offer already
            else:
                answer = self._versioned(self._answer_body(offer))
        except SdpNegotiationError:
            self._go(_N.NEGOTIATION_FAILED)
            self._drop_provisional()
            raise
        self._pending_local = answer
        self._prov_local = self._keep(answer)
        if sdp is None:
            # Made from the offer's own m-lines and codecs (_answer_body): it answers the
            # offer by construction, so the check of negotiate() has nothing to find.
            self._complete()
        else:
            self.negotiate()
        return answer

    def _answer_body(self, offer: SessionDescription) -> SessionDescription:
        caps = self._capabilities()
        available = list(caps.media)
        media: list[MediaDescription] = []
        for offered in offer.media:
            local = next(
                (m for m in available if m.media == offered.media and m.proto == offered.proto), None
            )
            answered = None if offered.rejected or local is None else self._answer_stream(offered, local)
            if answered is None:
                media.append(_rejected(offered))
            else:
                available.remove(local)  # type: ignore[arg-type]
                media.append(answered)
        if all(m.rejected for m in media):
            raise SdpNegotiationError("no acceptable stream in the offer")
        return attrs.evolve(caps, media=tuple(media))

    def _answer_stream(self, offered: MediaDescription, local: MediaDescription) -> MediaDescription | None:
        theirs = _codecs(offered)
        ours = _codecs(local)
        ours_by_codec = _by_codec(local)
        formats: list[str] = []
        for fmt, codec in theirs.items():  # the offerer's order (pjmedia's default)
            if codec is None:
                if _is_static(fmt) and fmt in ours:
                    formats.append(fmt)
            elif codec in ours_by_codec:
                formats.append(fmt)  # keep the offerer's payload number (RFC 3264 §6.1)
            elif _is_static(fmt) and ours.get(fmt) is None and fmt in ours:
                formats.append(fmt)
        if not formats:
            return None
        keep = set(formats)
        attributes = []
        for attr in offered.attributes:
            if attr.name in ("rtpmap", "fmtp") and attr.value and attr.value.split(" ", 1)[0] in keep:
                attributes.append(attr)
        for attr in local.attributes:
            if attr.name not in ("rtpmap", "fmtp", *DIRECTIONS):
                attributes.append(attr)
        # The answer's direction goes last, as with_direction() puts it (one copy, not two).
        attributes.append(DIRECTION_ATTRIBUTES[_ANSWER_DIRECTION[(offered.direction, local.direction)]])
        return attrs.evolve(local, formats=tuple(formats), attributes=tuple(attributes))

    # -- completing --------------------------------------------------------------------------

    def negotiate(self) -> None:
        """WAIT_NEGO -> DONE: check the answer, make the pair active, swap the pools."""
        if self.state is not _S.WAIT_NEGO:
            raise LocalProtocolError(f"SDP negotiator: cannot negotiate in state {self.state.name}")
        local, remote = self._pending_local, self._pending_remote
        if local is None or remote is None:  # pragma: no cover - the table guarantees it
            raise LocalProtocolError("nothing to negotiate")
        offer, answer = (local, remote) if self._we_offered else (remote, local)
        try:
            _check_answer(offer, answer)
        except SdpNegotiationError:
            self._go(_N.NEGOTIATION_FAILED)
            self._drop_provisional()
            raise
        self._complete()

    def _complete(self) -> None:
        """WAIT_NEGO -> DONE with an answer known to fit: the pair becomes active."""
        self._go(_N.NEGOTIATE)
        self._active_local, self._active_remote = self._prov_local, self._prov_remote
        if self._pool_active is not None:
            self._pool_active.release("superseded by a new negotiation")
        self._pool_active, self._pool_prov = self._pool_prov, None
        self._pending_local = self._pending_remote = None
        self._prov_local = self._prov_remote = None
        self.generation += 1

    def _versioned(self, body: SessionDescription) -> SessionDescription:
        """``o=`` version +1 when what we send changed since the last one (RFC 3264 §8).

        Serialised once: the copy with the final version takes the text but for its o= line."""
        key = body.content_key()
        if self._last_key is not None and key != self._last_key:
            self._version += 1
        self._last_key = key
        return body.with_version(self._version)

    def _given(self, sdp: SessionDescription) -> SessionDescription:
        """An SDP the application brought goes out as it is (its o= line is its own); our own
        later ones continue from its version, so the version never goes down (RFC 3264 §8)."""
        self._version = max(self._version, sdp.origin.session_version)
        self._last_key = sdp.content_key()
        return sdp

    def release(self) -> None:
        """Free both pools (when the session ends)."""
        for pool in (self._pool_prov, self._pool_active):
            if pool is not None:
                pool.release("session ended")
        self._pool_prov = self._pool_active = None
        self._prov_local = self._prov_remote = self._active_local = self._active_remote = None
        self._pending_local = self._pending_remote = self._checked = None


def _rejected(offered: MediaDescription) -> MediaDescription:
    """RFC 3264 §6: port 0, the offered formats (at least one is required), no attributes."""
    return MediaDescription(offered.media, 0, offered.proto, offered.formats[:1] or ("0",))


def _check_answer(offer: SessionDescription, answer: SessionDescription) -> None:
    if len(answer.media) != len(offer.media):
        raise SdpNegotiationError(
            f"the answer has {len(answer.media)} m-lines for {len(offer.media)} offered (RFC 3264 §6)"
        )
    accepted = 0
    for offered, answered in zip(offer.media, answer.media, strict=True):
        if answered.media != offered.media:
            raise SdpNegotiationError(f"m-line {answered.media} answers {offered.media}")
        if answered.rejected or offered.rejected:
            continue
        theirs = _codecs(offered)
        known = {c for c in theirs.values() if c is not None}
        common = [
            f
            for f, c in _codecs(answered).items()
            if (c is None and f in theirs) or (c is not None and c in known)
        ]
        if common:
            accepted += 1
    if accepted == 0:
        raise SdpNegotiationError("no stream with a codec both sides offered")


#: Encodings that do not count as a codec: events, redundancy, comfort noise (pjsua's
#: ``is_non_av_fmt``); a locked offer keeps them beside the one codec.
_NON_AV = frozenset({"telephone-event", "red", "cn"})
_STATIC_CN = "13"


def _is_av(fmt: str, codec: _CodecKey | None) -> bool:
    if codec is not None:
        return codec.encoding not in _NON_AV
    return fmt != _STATIC_CN


def locked_offer(offer: SessionDescription, answer: SessionDescription) -> SessionDescription | None:
    """pjsua's "lock codec": when the answer to ``offer`` kept several codecs in a stream, the
    re-offer that keeps only the one the answer put first (with the offer's payload number),
    plus the offer's events/redundancy/comfort noise the answer kept too; None when no stream
    of the answer has more than one codec (nothing to lock). Other streams, and everything
    else in the offer, stay as they were."""
    media: list[MediaDescription] = []
    locked = False
    for offered, answered in zip(offer.media, answer.media, strict=False):
        if offered.rejected or answered.rejected or answered.direction == "inactive":
            media.append(offered)
            continue
        ours = _codecs(offered)
        theirs = _codecs(answered)
        by_codec = {codec: fmt for fmt, codec in ours.items() if codec is not None}
        kept: list[str] = []  # our payload numbers of what the answer kept, in its order
        for fmt, codec in theirs.items():
            mine = by_codec.get(codec) if codec is not None else (fmt if fmt in ours else None)
            if mine is not None and mine not in kept:
                kept.append(mine)
        av = [f for f in kept if _is_av(f, ours[f])]
        if len(av) < 2:
            media.append(offered)
            continue
        locked = True
        keep = {av[0], *(f for f in kept if not _is_av(f, ours[f]))}
        formats = tuple(f for f in offered.formats if f in keep)
        attributes = tuple(
            a
            for a in offered.attributes
            if a.name not in ("rtpmap", "fmtp") or (a.value or "").split(" ", 1)[0] in keep
        )
        media.append(attrs.evolve(offered, formats=formats, attributes=attributes))
    if not locked:
        return None
    media += offer.media[len(media) :]
    return attrs.evolve(offer, media=tuple(media))
