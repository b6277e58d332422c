"""Route sets: where a request goes and what its Request-URI and Route headers are.

The same rules serve a dialog's route set (from Record-Route, RFC 3261 §12.2.1.1) and a
preloaded one (an outbound proxy, or a configured route, §8.1.1.1 and §8.1.2): with a first
route that carries ``lr`` (a loose router) the Request-URI stays the target and every route
goes in Route; with a first route without ``lr`` (a strict router, RFC 2543) its URI becomes the
Request-URI and the target goes last in Route (§12.2.1.1, the flow of §16.12.1.2). The request
is sent to the first route's host and port, or, without routes, to the target's. Nothing here
resolves names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from invsess.sip import LocalProtocolError, NameAddress, ParseError, SipUri, Uri, parse_uri


def route_request(target: Uri, routes: Sequence[NameAddress]) -> tuple[Uri, tuple[NameAddress, ...]]:
    """The Request-URI and the Route headers for a request to ``target`` through ``routes``."""
    if not routes:
        return target, ()
    first = routes[0].uri
    if isinstance(first, SipUri) and first.lr:
        return target, tuple(routes)
    return first, (*routes[1:], NameAddress(target))


def next_hop(target: Uri, routes: Sequence[NameAddress], transport: str) -> tuple[str, int, str]:
    """Host, port and transport of the first hop: the first route's, else the target's (its
    ``maddr`` and ``transport`` parameters honoured)."""
    uri = routes[0].uri if routes else target
    if not isinstance(uri, SipUri):
        raise LocalProtocolError(f"cannot send to {uri}")
    host, port = uri.host_port
    if uri.maddr:
        host = uri.maddr
    return host, port, (uri.transport or transport).lower()


def parse_route_set(uris: Iterable[str | NameAddress]) -> tuple[NameAddress, ...]:
    """Route entries from URIs as a user writes them (``sip:proxy.example:5060;lr``, with or
    without angle brackets). Raises :class:`~invsess.sip.LocalProtocolError` for a URI that is
    not ``sip:``/``sips:``."""
    out: list[NameAddress] = []
    for item in uris:
        if isinstance(item, NameAddress):
            out.append(item)
            continue
        text = item.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        try:
            uri = parse_uri(text)
        except ParseError as exc:
            raise LocalProtocolError(f"invalid route {item!r}: {exc}") from None
        if not isinstance(uri, SipUri):
            raise LocalProtocolError(f"a route must be a sip: or sips: URI, not {item!r}")
        out.append(NameAddress(uri))
    return tuple(out)


__all__ = ["next_hop", "parse_route_set", "route_request"]
