"""What the application answers with: a status, and optionally its own SDP and headers.

An :class:`Answer` is a value: the layer may have to keep it while an earlier reliable
provisional response waits for its PRACK (RFC 3262 §3), and sends it as it was given.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from invsess.sdp import SessionDescription

#: Extra header lines for a message: (name, value) pairs, added as given.
HeaderList = tuple[tuple[str, str], ...]


def header_list(value: Iterable[tuple[str, object]] | None) -> HeaderList:
    """``value`` as (name, value) string pairs; TypeError for anything else (a misuse)."""
    out: list[tuple[str, str]] = []
    for item in value or ():
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"a header is a (name, value) pair, not {item!r}")
        if not item[0] or any(c in item[0] for c in ": \r\n") or any(c in str(item[1]) for c in "\r\n"):
            raise ValueError(f"not a header: {item!r}")
        out.append((item[0], str(item[1])))
    return tuple(out)


@attrs.frozen
class Answer:
    """A response the application chose for an INVITE: ``code`` and ``reason``; ``sdp`` is the
    answer (or, for an INVITE without one, the offer) to send instead of one made from the
    layer's capabilities; ``headers`` are added to the response; ``reliable`` (1xx only) asks
    for a reliable provisional (True), an unreliable one (False) or the layer's choice (None)."""

    code: int = attrs.field(
        validator=attrs.validators.and_(attrs.validators.ge(100), attrs.validators.lt(700))
    )
    reason: str | None = None
    sdp: SessionDescription | None = None
    headers: HeaderList = attrs.field(default=(), converter=header_list)
    reliable: bool | None = None


__all__ = ["Answer", "HeaderList", "header_list"]
