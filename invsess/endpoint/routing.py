"""Where responses go (RFC 3261 §18.2.2, RFC 3581) and what a received request's Via gets."""

from __future__ import annotations

from invsess.address import Address
from invsess.sip import Request, Via
from invsess.transaction.base import RELIABLE


def stamp_via(request: Request, source: Address) -> Via | None:
    """Add ``received`` when the sent-by host differs from the source, fill a bare ``rport``.

    Rewrites the request's top Via in place (so responses copy it) and returns the new Via.
    """
    top = request.top_via
    if top is None:
        return None
    host, port = source
    changes: dict[str, str | None] = {}
    if top.host.strip("[]") != host:
        changes["received"] = host
    if top.rport is True:
        changes["rport"] = str(port)
    if not changes:
        return top
    stamped = top.with_params(**changes)
    request.headers.remove_first("Via")
    request.headers.prepend("Via", stamped)
    return stamped


def response_destination(via: Via | None, source: Address, transport: str) -> Address:
    """§18.2.2: reliable -> back where it came from; else received (or sent-by) and rport/port."""
    if via is None or transport.lower() in RELIABLE:
        return source
    host = via.received or via.host
    rport = via.rport
    port = rport if isinstance(rport, int) and rport is not True else (via.port or 5060)
    return host.strip("[]"), port
