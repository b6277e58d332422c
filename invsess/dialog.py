"""Dialogs (RFC 3261 §12): identity, tags, CSeq, route set, remote target, and their life.

A :class:`Dialog` owns a pool (it is itself the first block of it). Its reference count is
PJSIP's *session count* (``pjsip_dlg_inc_session``/``dec_session``); it also counts the
transactions working for it. It is destroyed, and its pool released, when both reach zero —
which is what makes the INVITE session, allocated from that pool, freed memory at that moment.

Never touches a socket or a clock: it builds requests and checks requests, nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from invsess.memory import Pool, PoolFactory, RefCounted
from invsess.routeset import next_hop, route_request
from invsess.sip import (
    CSeq,
    LocalProtocolError,
    NameAddress,
    RemoteProtocolError,
    Request,
    Response,
    SipUri,
    Uri,
    Via,
    make_request,
    parse_uri,
)
from invsess.sip.headers import ContactStar, parse_name_address

if TYPE_CHECKING:
    from invsess.counters import StateGauge


class DialogState(enum.Enum):
    """RFC 3261 §12: early (after a provisional with a To tag), confirmed, terminated.

    NULL is PJSIP's: a UAC dialog whose INVITE went out and no response with a To tag came yet.
    """

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    NULL = "NULL"
    EARLY = "EARLY"
    CONFIRMED = "CONFIRMED"
    TERMINATED = "TERMINATED"


class DialogInput(enum.Enum):
    """What moves a dialog."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    #: A 1xx with a To tag: the first response that creates the (early) dialog of a UAC.
    RECV_1XX = "receive 1xx"
    #: A 2xx: creates the (confirmed) dialog of a UAC, or confirms its early one.
    RECV_2XX = "receive 2xx"
    #: A 2xx of another fork than the early dialog's: the dialog takes that fork's identity.
    ADOPT = "adopt fork"
    #: We send a 2xx (UAS).
    SEND_2XX = "send 2xx"
    TERMINATE = "terminate"


_D, _DI = DialogState, DialogInput
#: ``(state, input) -> next state`` (RFC 3261 §12). Terminating is allowed from anywhere (and
#: again): a dialog ends once, whoever notices first.
TRANSITIONS: dict[tuple[DialogState, DialogInput], DialogState] = {
    (_D.NULL, _DI.RECV_1XX): _D.EARLY,
    (_D.NULL, _DI.RECV_2XX): _D.CONFIRMED,
    (_D.EARLY, _DI.RECV_1XX): _D.EARLY,
    (_D.EARLY, _DI.RECV_2XX): _D.CONFIRMED,
    (_D.EARLY, _DI.ADOPT): _D.CONFIRMED,
    (_D.EARLY, _DI.SEND_2XX): _D.CONFIRMED,
    **{(state, _DI.TERMINATE): _D.TERMINATED for state in DialogState},
}


class DialogRole(enum.Enum):
    """Which side created the dialog."""

    # Members are singletons compared by identity: an identity hash, computed in C
    # (Enum's own __hash__ is Python code, run on every look-up of a transition table).
    __hash__ = object.__hash__

    UAC = "UAC"
    UAS = "UAS"


DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)

_METHODS_WITHOUT_CSEQ_CHECK = frozenset({"ACK", "CANCEL"})


def _contact_uri(message: Request | Response) -> SipUri | None:
    """The remote target a message offers; RFC 3261 §8.1.1.8: it must be a SIP or SIPS URI."""
    for contact in message.contact:
        if not isinstance(contact, ContactStar):
            if not isinstance(contact.uri, SipUri):
                raise RemoteProtocolError(f"a Contact that is not a SIP URI: {contact.uri}", status_code=400)
            return contact.uri
    return None


class Dialog(RefCounted):
    """One dialog; create it with :meth:`create_uac` or :meth:`create_uas`."""

    __slots__ = (
        "_id",
        "_local_uri",
        "_remote_target",
        "_remote_uri",
        "call_id",
        "created",
        "gauge",
        "local_contact",
        "local_cseq",
        "local_tag",
        "pool",
        "remote_cseq",
        "remote_tag",
        "role",
        "route_set",
        "secure",
        "state",
        "transport",
        "tsx_count",
    )
    ref_label: ClassVar[str] = "dialog session count"

    def __init__(
        self,
        pool: Pool,
        *,
        role: DialogRole,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddress | str,
        remote_uri: NameAddress | str,
        local_cseq: int,
        remote_cseq: int | None,
        route_set: tuple[NameAddress, ...],
        remote_target: Uri | str,
        local_contact: NameAddress,
        secure: bool,
        transport: str,
        state: DialogState,
        created: float | None = None,
        gauge: StateGauge[DialogState] | None = None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.role = role
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self._id: DialogId | None = None
        # The URIs are kept as their text (RFC 3261 §12 state, not the parsed objects of the
        # messages the dialog was made from): parsed when read, sent as they are. Given as text
        # (the header values of the message, as received or as written when it was built),
        # they are not written out again.
        self._local_uri = local_uri if isinstance(local_uri, str) else str(local_uri)
        self._remote_uri = remote_uri if isinstance(remote_uri, str) else str(remote_uri)
        self._remote_target = remote_target if isinstance(remote_target, str) else str(remote_target)
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.route_set = route_set
        self.local_contact = local_contact
        self.secure = secure
        self.transport = transport
        self.state = state
        self.tsx_count = 0
        #: When the dialog was made (the driver's clock), if its maker said.
        self.created = created
        #: The dialogs-by-state counters it keeps up to date (see :mod:`invsess.counters`).
        self.gauge = gauge
        pool.set_context(self._context)

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self.state.name}>"

    def _context(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "state": self.state.name,
        }

    @property
    def id(self) -> DialogId:
        """(Call-ID, local tag, remote tag): one tuple, shared by every table keyed by it."""
        dialog_id = self._id
        if dialog_id is None or dialog_id[2] != self.remote_tag:
            dialog_id = self._id = (self.call_id, self.local_tag, self.remote_tag)
        return dialog_id

    @property
    def local_uri(self) -> NameAddress:
        """Our URI, with our tag (the From of what we send)."""
        return parse_name_address(self._local_uri, "From")

    @property
    def remote_uri(self) -> NameAddress:
        """The peer's URI, with its tag (the To of what we send)."""
        return parse_name_address(self._remote_uri, "To")

    @remote_uri.setter
    def remote_uri(self, value: NameAddress) -> None:
        self._remote_uri = str(value)

    @property
    def remote_target(self) -> Uri:
        """Where in-dialog requests go (the peer's Contact), unless the route set says otherwise."""
        return parse_uri(self._remote_target)

    @remote_target.setter
    def remote_target(self, value: Uri) -> None:
        self._remote_target = str(value)

    # -- creation ----------------------------------------------------------------------------

    @classmethod
    def _allocate(cls, factory: PoolFactory, name: str, **fields: Any) -> Dialog:
        """A new pool with the dialog as its first block; the pool goes if construction fails."""
        pool = factory.create_pool(name, 2048, 2048)
        try:
            dialog = pool.alloc(cls, pool, **fields)
        except BaseException:
            pool.release("dialog creation failed")
            raise
        if dialog.gauge is not None:
            dialog.gauge.added(dialog.state)
        return dialog

    @classmethod
    def create_uac(
        cls,
        factory: PoolFactory,
        request: Request,
        response: Response,
        *,
        transport: str = "udp",
        now: float | None = None,
        gauge: StateGauge[DialogState] | None = None,
    ) -> Dialog:
        """The dialog a 1xx (early) or 2xx (confirmed) with a To tag creates for our request.
        (``now``: when, for its age; ``gauge``: the dialogs-by-state counters to keep.)"""
        if not 100 < response.status_code < 300:
            raise LocalProtocolError(f"a {response.status_code} does not create a dialog")
        dialog = cls.create_uac_initial(factory, request, transport=transport, now=now, gauge=gauge)
        try:
            dialog.establish(response)
        except BaseException:
            dialog._destroy("dialog creation failed")
            raise
        return dialog

    @classmethod
    def create_uac_initial(
        cls,
        factory: PoolFactory,
        request: Request,
        *,
        transport: str = "udp",
        now: float | None = None,
        gauge: StateGauge[DialogState] | None = None,
    ) -> Dialog:
        """The dialog of an INVITE we are about to send (NULL: no remote tag yet; see establish)."""
        to, from_, call_id, cseq = request.to, request.from_, request.call_id, request.cseq
        if to is None or from_ is None or from_.tag is None or call_id is None or cseq is None:
            raise LocalProtocolError(
                "a dialog-creating request needs From (with a tag), To, Call-ID and CSeq"
            )
        contact = next((c for c in request.contact if isinstance(c, NameAddress)), None)
        if contact is None:
            raise LocalProtocolError("a dialog-creating request needs a Contact")
        return cls.create_uac_for(
            factory,
            call_id=call_id,
            local_tag=from_.tag,
            local_uri=_text(request, "From", from_),
            remote_uri=_text(request, "To", to),
            cseq=cseq.number,
            target=request.uri,
            contact=contact,
            transport=transport,
            now=now,
            gauge=gauge,
        )

    @classmethod
    def create_uac_for(
        cls,
        factory: PoolFactory,
        *,
        call_id: str,
        local_tag: str,
        local_uri: NameAddress | str,
        remote_uri: NameAddress | str,
        cseq: int,
        target: Uri,
        contact: NameAddress,
        transport: str = "udp",
        now: float | None = None,
        gauge: StateGauge[DialogState] | None = None,
    ) -> Dialog:
        """The dialog of an INVITE we are about to build and send, from what it will carry
        (its From with ``local_tag``, its To, Call-ID, CSeq, Request-URI and Contact): the
        request can then be made once, complete, with the session's offer in it."""
        return cls._allocate(
            factory,
            f"dlg-{call_id}-{local_tag}",
            role=DialogRole.UAC,
            call_id=call_id,
            local_tag=local_tag,
            remote_tag="",
            local_uri=local_uri,
            remote_uri=remote_uri,
            local_cseq=cseq,
            remote_cseq=None,
            route_set=(),
            remote_target=target,
            local_contact=contact,
            secure=_is_sips(target),
            transport=transport,
            state=DialogState.NULL,
            created=now,
            gauge=gauge,
        )

    def _go(self, event: DialogInput) -> None:
        """Move by the table; an input it lacks here is a misuse by whoever called us."""
        old = self.state
        nxt = TRANSITIONS.get((old, event))
        if nxt is None:
            raise LocalProtocolError(f"dialog: cannot {event.value} in state {old.name}")
        self.state = nxt
        if self.gauge is not None and nxt is not old:
            self.gauge.moved(old, nxt)

    def establish(self, response: Response) -> None:
        """NULL -> EARLY (1xx) or CONFIRMED (2xx): the first response with a To tag."""
        if self.state is not DialogState.NULL:
            raise LocalProtocolError(f"dialog already {self.state.name}")
        self._take_identity(response)
        self._go(DialogInput.RECV_1XX if response.status_code < 200 else DialogInput.RECV_2XX)

    def _take_identity(self, response: Response) -> None:
        """The remote tag, URI, target and route set a dialog-creating response gives.

        A 2xx without a To tag still creates the dialog, with a null remote tag (RFC 3261
        §12.1.2, for RFC 2543 peers); a 1xx without one creates none.
        """
        to = response.to
        target = _contact_uri(response)
        if to is None or (to.tag is None and response.status_code < 200):
            raise RemoteProtocolError("a dialog-creating response without a To tag", status_code=400)
        if target is None:
            raise RemoteProtocolError("a dialog-creating response without a Contact", status_code=400)
        self.remote_tag = to.tag or ""
        remote_uri = _text(response, "To", to)
        self._remote_uri = remote_uri if isinstance(remote_uri, str) else str(remote_uri)
        self.route_set = tuple(reversed(response.record_route))
        self.remote_target = target

    def learn_remote_tag(self, tag: str) -> None:
        """Fill in the null remote tag of a dialog a 2xx without To tag created, from the From
        tag of the peer's first request in it (as PJSIP accepts). The dialog's id changes:
        whoever routes by it must re-register it."""
        if self.remote_tag or self.role is not DialogRole.UAC:
            raise LocalProtocolError(f"dialog {self.id} has a remote tag already, or is not ours")
        self.remote_tag = tag
        self.remote_uri = self.remote_uri.with_tag(tag)

    def adopt(self, response: Response) -> None:
        """EARLY -> CONFIRMED with another fork's identity (RFC 3261 §13.2.2.4).

        A forked INVITE can ring at one place and be answered at another: the session goes
        on with the fork that answered, so its dialog takes that fork's tag, target and route
        set. (The fork's own early dialog, if there was one, is the caller's to release.)
        """
        if self.role is not DialogRole.UAC or self.state is not DialogState.EARLY:
            raise LocalProtocolError(f"only an early UAC dialog adopts a fork, not a {self.state.name} one")
        if response.status_code // 100 != 2:
            raise LocalProtocolError("a fork is adopted on its 2xx")
        self._take_identity(response)
        self.remote_cseq = None
        self._go(DialogInput.ADOPT)

    @classmethod
    def create_uas(
        cls,
        factory: PoolFactory,
        request: Request,
        *,
        local_tag: str,
        local_contact: NameAddress,
        transport: str = "udp",
        now: float | None = None,
        gauge: StateGauge[DialogState] | None = None,
    ) -> Dialog:
        """The dialog we create by answering ``request`` (early until we send a 2xx)."""
        to, from_, call_id, cseq = request.to, request.from_, request.call_id, request.cseq
        if to is None or from_ is None or call_id is None or cseq is None:
            raise RemoteProtocolError(
                "a dialog-creating request needs From, To, Call-ID and CSeq", status_code=400
            )
        # An RFC 2543 INVITE may lack a Contact (RFC 4475 inv2543): the From URI is the best target.
        target = _contact_uri(request) or from_.uri
        return cls._allocate(
            factory,
            f"dlg-{call_id}-{local_tag}",
            role=DialogRole.UAS,
            call_id=call_id,
            local_tag=local_tag,
            remote_tag=from_.tag or "",
            # The To as received, with our tag (it has none: the request starts the dialog).
            local_uri=f"{_text(request, 'To', to)};tag={local_tag}"
            if to.tag is None
            else to.with_tag(local_tag),
            remote_uri=_text(request, "From", from_),
            local_cseq=0,
            remote_cseq=cseq.number,
            route_set=tuple(request.record_route),
            remote_target=target,
            local_contact=local_contact,
            secure=_is_sips(request.uri),
            transport=transport,
            state=DialogState.EARLY,
            created=now,
            gauge=gauge,
        )

    # -- life cycle --------------------------------------------------------------------------

    def confirm(self, response: Response | None = None) -> None:
        """EARLY -> CONFIRMED. A UAC passes the 2xx: its route set and target are the final ones."""
        uac = response is not None and self.role is DialogRole.UAC
        self._go(DialogInput.RECV_2XX if uac else DialogInput.SEND_2XX)
        if response is not None and uac:
            self.route_set = tuple(reversed(response.record_route))
            target = _contact_uri(response)
            if target is not None:
                self.remote_target = target

    def terminate(self) -> None:
        """Mark the dialog terminated (its memory goes when the counts reach zero)."""
        self._go(DialogInput.TERMINATE)

    def inc_tsx(self) -> None:
        """A transaction started working for this dialog."""
        self.tsx_count += 1

    def dec_tsx(self) -> None:
        """A transaction of this dialog terminated."""
        if self.tsx_count == 0:
            raise LocalProtocolError("dialog transaction count below zero")
        self.tsx_count -= 1
        if self.tsx_count == 0 and self.ref_count == 0:
            self._destroy("dialog transaction count 1 -> 0")

    def _on_last_ref(self, reason: str) -> None:
        if self.tsx_count == 0:
            self._destroy(reason)

    def _destroy(self, reason: str) -> None:
        self._go(DialogInput.TERMINATE)
        if self.gauge is not None:
            self.gauge.removed(self.state)
        self.pool.release(reason)

    # -- requests ----------------------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        cseq: int | None = None,
        headers: Iterable[tuple[str, object]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """An in-dialog request: the next CSeq (ACK and CANCEL reuse the INVITE's), the route set.

        Loose routing when the first route has ``lr`` (or there is none): Request-URI = remote
        target, Route = route set. Strict routing otherwise (RFC 3261 §12.2.1.1).
        """
        if self.state is DialogState.TERMINATED and method != "ACK":  # a late 2xx still gets its ACK
            raise LocalProtocolError(f"cannot send {method} in a terminated dialog")
        if method in _METHODS_WITHOUT_CSEQ_CHECK:
            if cseq is None:
                raise LocalProtocolError(f"{method} reuses the CSeq number of the request it goes with")
            number = cseq
        else:
            self.local_cseq += 1
            number = self.local_cseq
        uri, routes = self._request_uri_and_routes()
        return make_request(
            method,
            uri,
            via=via,
            from_=self._local_uri,
            to=self._remote_uri,
            call_id=self.call_id,
            cseq=CSeq(number, method),
            contact=self.local_contact
            if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER")
            else None,
            headers=[*(("Route", str(r)) for r in routes), *headers],
            body=body,
            content_type=content_type,
        )

    def _request_uri_and_routes(self) -> tuple[Uri | str, tuple[NameAddress, ...]]:
        if not self.route_set:
            return self._remote_target, ()  # the text as kept: nothing to parse
        return route_request(self.remote_target, self.route_set)

    def next_hop(self) -> tuple[str, int, str]:
        """Where an in-dialog request goes: the first route, else the remote target (no DNS)."""
        return next_hop(self.remote_target, self.route_set, self.transport)

    def receive_request(self, request: Request) -> None:
        """Check and record an in-dialog request (RFC 3261 §12.2.2).

        A CSeq lower than or equal to the last one (other than ACK/CANCEL) is an error the peer
        deserves a 500 for. A re-INVITE or UPDATE with a Contact refreshes the remote target.
        """
        cseq = request.cseq
        if cseq is None:
            raise RemoteProtocolError("in-dialog request without CSeq", status_code=400)
        if request.method not in _METHODS_WITHOUT_CSEQ_CHECK:
            if self.remote_cseq is not None and cseq.number <= self.remote_cseq:
                raise RemoteProtocolError(
                    f"CSeq {cseq.number} is not above {self.remote_cseq}",
                    status_code=500,
                    reason="Server Internal Error",
                )
            self.remote_cseq = cseq.number
        if request.method in ("INVITE", "UPDATE"):
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target


def _text(message: Request | Response, name: str, parsed: NameAddress) -> str | NameAddress:
    """The header's value as the message carries it (it parsed as ``parsed``): kept as the
    dialog's text rather than ``parsed`` written out again. ``parsed`` itself when the message
    has several such lines (only the first is meant)."""
    raw = message.headers.get_all(name)
    return raw[0] if len(raw) == 1 else parsed


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.secure


__all__ = ["TRANSITIONS", "Dialog", "DialogId", "DialogInput", "DialogRole", "DialogState"]
