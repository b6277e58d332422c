"""Building requests (RFC 3261 §8.1.1) and responses (§8.2.6).

:func:`make_response` works from the request's *raw* header values, so it can answer even a
request whose From or To does not parse, or that lacks them (a 400 must still go out).
"""

from __future__ import annotations

from collections.abc import Iterable

from invsess.sip.errors import LocalProtocolError, ParseError
from invsess.sip.headers import CSeq, MediaType, NameAddress, Via, parse_name_address
from invsess.sip.message import Headers, Request, Response
from invsess.sip.uri import Uri

HeaderItems = Iterable[tuple[str, object]]


def make_request(
    method: str,
    uri: Uri | str,
    *,
    via: Via | Iterable[Via],
    from_: NameAddress | str,
    to: NameAddress | str,
    call_id: str,
    cseq: int | CSeq,
    max_forwards: int = 70,
    contact: NameAddress | None = None,
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: MediaType | str | None = None,
) -> Request:
    """A request with the mandatory headers of RFC 3261 §8.1.1, in the conventional order.

    From and To may be given as objects or as header values already serialised (a dialog's).
    """
    if isinstance(cseq, int):
        cseq = CSeq(cseq, method)
    if cseq.method != method and method not in ("ACK", "CANCEL"):
        raise LocalProtocolError(f"CSeq method {cseq.method} does not match {method}")
    hdrs = Headers()
    for v in [via] if isinstance(via, Via) else via:
        hdrs.add("Via", v)
    hdrs.add("Max-Forwards", str(max_forwards))
    hdrs.add("From", from_)
    hdrs.add("To", to)
    hdrs.add("Call-ID", call_id)
    hdrs.add("CSeq", cseq)
    if contact is not None:
        hdrs.add("Contact", contact)
    for name, value in headers:
        hdrs.add(name, value)
    _add_body_headers(hdrs, body, content_type)
    return Request(method, uri, hdrs, body)


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: MediaType | str | None = None,
    copy_record_route: bool = False,
) -> Response:
    """A response to ``request``: Via (all, in order), From, To, Call-ID and CSeq copied.

    ``to_tag`` is added to To when the request's To has none and the response is not a 100
    (RFC 3261 §8.2.6.2). ``copy_record_route`` copies Record-Route, as a dialog-creating
    response from a UAS must (§12.1.1).
    """
    hdrs = Headers()
    src = request.headers
    for via in src.get_all("Via"):
        hdrs.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        raw = src.get(name)
        if raw is None:
            continue
        if name == "To" and to_tag is not None and status_code != 100:
            raw = _with_to_tag(raw, to_tag)
        hdrs.add(name, raw)
    if copy_record_route:
        for value in src.get_all("Record-Route"):
            hdrs.add("Record-Route", value)
    for name, item in headers:
        hdrs.add(name, item)
    _add_body_headers(hdrs, body, content_type)
    return Response(status_code, reason, hdrs, body, version="SIP/2.0")


def _add_body_headers(hdrs: Headers, body: bytes, content_type: MediaType | str | None) -> None:
    if body:
        if content_type is None:
            raise LocalProtocolError("a body needs a Content-Type")
        hdrs.add("Content-Type", content_type)
    hdrs.add("Content-Length", str(len(body)))


def _with_to_tag(raw_to: str, tag: str) -> str:
    try:
        parsed = parse_name_address(raw_to, "To")
    except ParseError:
        return raw_to  # cannot tell whether it has a tag; answer with it unchanged
    if parsed.tag is not None:
        return raw_to
    return f"{raw_to};tag={tag}"
