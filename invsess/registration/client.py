"""A registration client (RFC 3261 §10.2, RFC 5626 §4), sans-IO: PJSIP's ``pjsip_regc``.

A :class:`Registration` keeps one contact of ours bound to an address-of-record at a registrar:

* It sends REGISTER (Request-URI the registrar's domain, To and From the address-of-record,
  one Call-ID for every REGISTER of the registration and a CSeq counting up, §10.2), through a
  preloaded route set when one is given (an outbound proxy, :mod:`invsess.routeset`).
* 401/407: sent again with credentials (:class:`~invsess.auth.ClientAuth`; at most one retry per
  challenge, ``stale=true`` retried without failing). 423 Interval Too Brief: sent again with
  the registrar's Min-Expires (§10.2.8), if that is longer than what we asked.
* The 2xx is checked: our contact must be among its Contacts (matched by ``+sip.instance`` when
  we sent one, else by URI), and its ``expires`` (or the Expires header) is the interval granted.
  A 2xx without our binding is a failure (§10.2.4: the registrar did not keep it).
* Refresh: before the binding expires — at the granted interval less min(interval/2, 32 s)
  (32 s is 64*T1 at the default T1: a refresh whose REGISTER is retransmitted to its end still
  lands in time).
* Failure (a final response other than those, or no response at all): a
  :class:`RegistrationFailed` event, and, unless retries are off, another try after the RFC 5626
  §4.5 back-off: ``min(max_backoff, base * 2**failures)``, 50-100 % of it at random.
* :meth:`Registration.stop` removes the binding (``Expires: 0``, §10.2.2) and ends with
  :class:`Unregistered`.
* RFC 5626: with an ``instance_id`` the Contact carries ``+sip.instance`` and ``reg-id``, and
  Supported lists ``outbound``. Over TCP/TLS the flow is kept alive with double-CRLF pings
  (§4.4.1) every 80-100 % of the registrar's ``Flow-Timer`` (or of ``keepalive``, 95-120 s by
  default); the transport answers the peer's pings and the framer eats the pongs.

It is a :class:`~invsess.node.TransactionUser`: attach it to a session layer
(:meth:`~invsess.inv.SessionLayer.attach`) or feed it the endpoint's events yourself
(:meth:`Registration.on_event`), and read what happened with :meth:`Registration.next_event`.
Never touches a socket or a clock.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs

from invsess.address import uri_host
from invsess.auth import AuthenticationFailedError, ClientAuth, CredentialStore, resubmit
from invsess.endpoint import Endpoint
from invsess.logs import get_logger
from invsess.routeset import next_hop, route_request
from invsess.sip import (
    ContactStar,
    LocalProtocolError,
    NameAddress,
    ParseError,
    Request,
    Response,
    SipUri,
    make_request,
    parse_uri,
)
from invsess.transaction import (
    Event,
    ResponseReceived,
    Transaction,
    TransactionTerminated,
    TransactionTimedOut,
)

_LOG = get_logger("invsess.registration")

#: Refresh this long before the binding expires, at most (and never before half the interval).
REFRESH_MARGIN = 32.0
#: RFC 5626 §4.5: base times of the back-off after a failure, and its ceiling.
RETRY_BASE = 30.0
RETRY_MAX = 1800.0
#: RFC 5626 §4.4.1: keep-alive interval over connection-oriented transports without Flow-Timer.
KEEPALIVE_RANGE = (95.0, 120.0)
#: How many 423s in a row are followed (each must ask for more than the last).
MAX_423_RETRIES = 2
PING = b"\r\n\r\n"


class RegState(enum.Enum):
    """Where a registration is."""

    IDLE = "IDLE"  # made, nothing sent yet
    REGISTERING = "REGISTERING"  # a REGISTER in progress, not (or no longer) registered
    REGISTERED = "REGISTERED"  # the binding is up; a refresh is due before it expires
    REFRESHING = "REFRESHING"  # registered, and a refresh in progress
    FAILED = "FAILED"  # the last attempt failed; another one may be due (retry_at)
    UNREGISTERING = "UNREGISTERING"  # Expires: 0 in progress
    UNREGISTERED = "UNREGISTERED"  # stopped: no binding of ours is left (or it was left to expire)


class RegInput(enum.Enum):
    """What moves a registration."""

    START = "start"
    SEND = "time to register again (refresh, or retry after a failure)"
    BOUND = "2xx with our binding"
    FAILURE = "a final failure, a timeout, a 2xx without our binding"
    STOP = "stop: remove the binding"
    DONE = "the unregistration ended (either way)"


_S, _I = RegState, RegInput
#: ``(state, input) -> next state``; anything missing is a misuse (LocalProtocolError) when the
#: application asked, and ignored when a late response asked (it belongs to a finished attempt).
TRANSITIONS: dict[tuple[RegState, RegInput], RegState] = {
    (_S.IDLE, _I.START): _S.REGISTERING,
    (_S.REGISTERING, _I.BOUND): _S.REGISTERED,
    (_S.REGISTERING, _I.FAILURE): _S.FAILED,
    (_S.REGISTERED, _I.SEND): _S.REFRESHING,
    (_S.REFRESHING, _I.BOUND): _S.REGISTERED,
    (_S.REFRESHING, _I.FAILURE): _S.FAILED,
    (_S.FAILED, _I.SEND): _S.REGISTERING,
    (_S.IDLE, _I.STOP): _S.UNREGISTERED,
    (_S.REGISTERING, _I.STOP): _S.UNREGISTERING,
    (_S.REGISTERED, _I.STOP): _S.UNREGISTERING,
    (_S.REFRESHING, _I.STOP): _S.UNREGISTERING,
    (_S.FAILED, _I.STOP): _S.UNREGISTERING,
    (_S.UNREGISTERING, _I.DONE): _S.UNREGISTERED,
}


@attrs.frozen
class Registered:
    """The binding is up (or was refreshed): ``expires`` seconds granted; ``contacts``: every
    binding the registrar listed for the address-of-record (ours and others')."""

    registration: Registration
    expires: int
    contacts: tuple[str, ...]
    refreshed: bool


@attrs.frozen
class RegistrationFailed:
    """An attempt failed: ``status_code`` and ``reason`` of the final response (408 for no
    response at all); ``retry_at`` is when the next attempt goes (None: none will)."""

    registration: Registration
    status_code: int
    reason: str
    retry_at: float | None


@attrs.frozen
class Unregistered:
    """The registration stopped: ``status_code`` of the unregistration (0: nothing had to be
    sent; a failure leaves the binding to expire at the registrar)."""

    registration: Registration
    status_code: int


RegistrationEvent = Registered | RegistrationFailed | Unregistered


class Registration:
    """One binding kept at a registrar; see the module docstring.

    ``registrar``: the registrar's URI (``sip:127.0.0.1:5060``: the host an IP address, nothing
    here resolves names); ``aor``: the address-of-record (default ``sip:USER@`` the registrar's
    host). ``password`` goes into ``credentials`` for any realm (pass a session layer's store to
    share it with its calls). ``route``: a preloaded route set (outbound proxy).
    ``contact_user``: the user part of our Contact (default ``user``). ``instance_id``: RFC 5626
    (a UUID; with ``reg_id``). ``keepalive``: the ping interval over TCP/TLS without a
    Flow-Timer. ``retry``/``retry_base``: try again after failures, with this back-off base.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        registrar: str,
        user: str,
        *,
        password: str | None = None,
        credentials: CredentialStore | None = None,
        aor: str | None = None,
        expires: int = 3600,
        transport: str = "udp",
        route: Sequence[NameAddress] = (),
        contact_user: str | None = None,
        instance_id: str | None = None,
        reg_id: int = 1,
        keepalive: float | None = None,
        retry: bool = True,
        retry_base: float = RETRY_BASE,
        rng: random.Random | None = None,
    ) -> None:
        uri = parse_uri(registrar)
        if not isinstance(uri, SipUri) or uri.user:
            raise LocalProtocolError(f"a registrar is a sip: URI without user part, not {registrar!r}")
        if expires < 0:
            raise LocalProtocolError("expires cannot be negative")
        if instance_id is not None and not instance_id.startswith("urn:"):
            instance_id = f"urn:uuid:{uuid.UUID(instance_id)}"
        self.endpoint = endpoint
        self.registrar = uri
        self.aor = parse_uri(aor or f"sip:{user}@{uri_host(uri.host_port[0])}")
        self.user = user
        self.requested = expires
        self.expires = expires  # raised by a 423's Min-Expires
        self.transport = transport.lower()
        self.route = tuple(route)
        self.instance_id = instance_id
        self.reg_id = reg_id
        self.keepalive = keepalive
        self.retry = retry
        self.retry_base = retry_base
        self.credentials = credentials if credentials is not None else CredentialStore()
        if password is not None:
            self.credentials.add(user, password)
        self.auth = ClientAuth(self.credentials)
        self._random = rng or random.Random()  # noqa: S311 - back-off jitter, not a secret
        self.state = RegState.IDLE
        self.call_id = f"{endpoint.new_tag()}{endpoint.new_tag()}"
        self.from_tag = endpoint.new_tag()
        self.cseq = 0
        self.contact = self._contact(contact_user or user)
        #: The expiry granted by the last 2xx, and when the binding lapses.
        self.granted: int | None = None
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        self.retry_at: float | None = None
        self.keepalive_at: float | None = None
        self.failures = 0
        self.last_status: int | None = None
        self._tx: Transaction[Any] | None = None
        self._mine: set[Transaction[Any]] = set()  # every REGISTER transaction still alive
        self._flow_timer: int | None = None
        self._retries_423 = 0
        self._events: deque[RegistrationEvent] = deque()
        self.log = _LOG.bind(aor=str(self.aor), call_id=self.call_id)

    def __repr__(self) -> str:
        return f"<Registration {self.aor} at {self.registrar} {self.state.name}>"

    # -- building ----------------------------------------------------------------------------

    def _contact(self, user: str) -> NameAddress:
        host, port = self.endpoint.listeners.get(self.transport, ("127.0.0.1", 5060))
        transport = "" if self.transport == "udp" else f";transport={self.transport}"
        scheme = "sips" if self.transport == "tls" and self.registrar.secure else "sip"
        params: tuple[tuple[str, str | None], ...] = ()
        if self.instance_id is not None:
            params = (("+sip.instance", f'"<{self.instance_id}>"'), ("reg-id", str(self.reg_id)))
        return NameAddress(parse_uri(f"{scheme}:{user}@{uri_host(host)}:{port}{transport}"), None, params)

    @property
    def destination(self) -> tuple[str, int]:
        """Where REGISTERs go: the first route's address, else the registrar's (no DNS here)."""
        host, port, _ = next_hop(self.registrar, self.route, self.transport)
        return host, port

    def _request(self, expires: int) -> Request:
        self.cseq += 1
        request_uri, routes = route_request(self.registrar, self.route)
        headers: list[tuple[str, object]] = [("Route", r) for r in routes]
        headers.append(("Expires", str(expires)))
        if self.instance_id is not None:
            headers.append(("Supported", "outbound, path"))
        headers.append(("User-Agent", self.endpoint.config.user_agent))
        return make_request(
            "REGISTER",
            request_uri,
            via=self.endpoint.via(self.transport),
            from_=NameAddress(self.aor, None, (("tag", self.from_tag),)),
            to=NameAddress(self.aor),
            call_id=self.call_id,
            cseq=self.cseq,
            contact=self.contact,
            headers=headers,
        )

    def _send(self, request: Request, now: float) -> None:
        self._tx = self.endpoint.send_request(request, self.destination, self.transport, now)
        self._mine.add(self._tx)

    # -- the machine -------------------------------------------------------------------------

    def _go(self, event: RegInput) -> RegState:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise LocalProtocolError(f"registration: cannot {event.value} in state {self.state.name}")
        if nxt is not self.state:
            self.log.info("registration state", old=self.state.name, new=nxt.name)
        self.state = nxt
        return nxt

    def start(self, now: float) -> None:
        """Send the first REGISTER."""
        self._go(RegInput.START)
        self._register(now)

    def _register(self, now: float) -> None:
        self.refresh_at = self.retry_at = None
        self._retries_423 = 0
        self._send(self._request(self.expires), now)

    def stop(self, now: float) -> None:
        """Remove our binding (``Expires: 0``); :class:`Unregistered` follows. Nothing to send
        for a registration that never started; calling it again changes nothing."""
        if self.state in (RegState.UNREGISTERING, RegState.UNREGISTERED):
            return
        # Nothing can be bound if we never sent anything, or if the last attempt failed and no
        # earlier binding of ours can still be alive.
        nothing_bound = self.state is RegState.IDLE or (
            self.state is RegState.FAILED and (self.expires_at is None or now >= self.expires_at)
        )
        stopped = self._go(RegInput.STOP)
        self.refresh_at = self.retry_at = self.keepalive_at = None
        if nothing_bound:
            if stopped is RegState.UNREGISTERING:
                self._go(RegInput.DONE)
            self._events.append(Unregistered(self, 0))
            return
        self._send(self._request(0), now)

    # -- the transaction user interface ------------------------------------------------------

    def on_event(self, event: Event, now: float) -> bool:
        """Take the events of our REGISTER transactions (True), leave the rest (False)."""
        tx: Transaction[Any] | None = getattr(event, "transaction", None)
        if tx is None or tx not in self._mine:
            return False  # nothing of ours (and nothing of it touched: it may be freed already)
        if isinstance(event, TransactionTerminated):
            self._mine.discard(tx)
        if tx is not self._tx:
            return True  # a REGISTER another one replaced (after a 401, say): ours, but over
        if isinstance(event, ResponseReceived):
            self._on_response(tx, event.response, now)
        elif isinstance(event, TransactionTimedOut):
            self._failed(408, "Request Timeout", now)
        elif isinstance(event, TransactionTerminated):
            self._tx = None
            if self.state in (RegState.REGISTERING, RegState.REFRESHING, RegState.UNREGISTERING):
                # Gone without a final response (a transport error, say): as good as a timeout.
                self._failed(503, f"transaction ended: {event.reason}", now)
        return True

    def next_deadline(self) -> float | None:
        """The refresh, the retry, or the next keep-alive."""
        times = [t for t in (self.refresh_at, self.retry_at, self.keepalive_at) if t is not None]
        return min(times) if times else None

    def handle_timers(self, now: float) -> None:
        """Refresh, retry, or ping, as due."""
        if self.keepalive_at is not None and now >= self.keepalive_at:
            self.endpoint.send_stateless_bytes(PING, self.destination, self.transport)
            self.keepalive_at = now + self._keepalive_interval()
        if (self.refresh_at is not None and now >= self.refresh_at) or (
            self.retry_at is not None and now >= self.retry_at
        ):
            self._go(RegInput.SEND)
            self._register(now)

    def next_event(self) -> RegistrationEvent | None:
        """What happened since the last call, oldest first."""
        return self._events.popleft() if self._events else None

    # -- responses ---------------------------------------------------------------------------

    def _on_response(self, tx: Transaction[Any], response: Response, now: float) -> None:
        code = response.status_code
        if code < 200:
            return
        self._tx = None
        self.last_status = code
        if code in (401, 407):
            self._authenticate(tx, response, now)
        elif code == 423:
            self._interval_too_brief(tx, response, now)
        elif code >= 300:
            self._failed(code, response.reason, now)
        elif self.state is RegState.UNREGISTERING:
            self._unregistered(response)
        else:
            self._bound(response, now)

    def _authenticate(self, tx: Transaction[Any], response: Response, now: float) -> None:
        try:
            credentials = self.auth.authorize(tx.request, response)
        except AuthenticationFailedError as exc:
            self.log.info("authentication failed", error=str(exc))
            self._failed(response.status_code, response.reason, now)
            return
        self.cseq += 1
        via = self.endpoint.via(self.transport)
        self._send(resubmit(tx.request, via=via, cseq=self.cseq, credentials=credentials), now)

    def _interval_too_brief(self, tx: Transaction[Any], response: Response, now: float) -> None:
        try:
            minimum = response.headers.parsed("Min-Expires")
        except ParseError:
            minimum = None
        if (
            not isinstance(minimum, int)
            or minimum <= self.expires
            or self._retries_423 >= MAX_423_RETRIES
            or self.state is RegState.UNREGISTERING
        ):
            self._failed(423, response.reason, now)
            return
        self._retries_423 += 1
        self.expires = minimum
        self.log.info("423: REGISTER again", expires=minimum)
        request = self._request(minimum)
        credentials = self.auth.renew(tx.request, request)  # the same nonce, the next nc
        if credentials:
            request = resubmit(
                request, via=request.top_via or self.endpoint.via(), cseq=self.cseq, credentials=credentials
            )
        self._send(request, now)

    def _bound(self, response: Response, now: float) -> None:
        granted = self._granted(response)
        if granted is None or granted == 0:
            self._failed(response.status_code, "our binding is not in the 2xx", now)
            return
        refreshed = self.state is RegState.REFRESHING
        self._go(RegInput.BOUND)
        self.failures = 0
        self.granted = granted
        self.expires_at = now + granted
        self.refresh_at = now + granted - min(granted / 2, REFRESH_MARGIN)
        self._flow_timer = _flow_timer(response)
        if self.keepalive_at is None and self._keeps_alive():
            self.keepalive_at = now + self._keepalive_interval()
        contacts = tuple(str(c) for c in response.contact)
        self.log.info("registered", expires=granted)
        self._events.append(Registered(self, granted, contacts, refreshed))

    def _unregistered(self, response: Response) -> None:
        self._go(RegInput.DONE)
        self.granted = self.expires_at = None
        if self._granted(response):
            self.log.warning("the registrar kept our binding after Expires: 0")
        self._events.append(Unregistered(self, response.status_code))

    def _failed(self, code: int, reason: str, now: float) -> None:
        self._tx = None
        if self.state is RegState.UNREGISTERING:
            self._go(RegInput.DONE)
            self._events.append(Unregistered(self, code))
            return
        if self.state not in (RegState.REGISTERING, RegState.REFRESHING):
            return  # a late event of an attempt that no longer matters
        self._go(RegInput.FAILURE)
        self.failures += 1
        self.refresh_at = self.keepalive_at = None
        if self.retry:
            backoff = min(RETRY_MAX, self.retry_base * 2 ** (self.failures - 1))
            self.retry_at = now + backoff * self._random.uniform(0.5, 1.0)
        self.log.warning("registration failed", status=code, reason=reason, retry_at=self.retry_at)
        self._events.append(RegistrationFailed(self, code, reason, self.retry_at))

    def cancel_retries(self) -> None:
        """No further attempt after a failure (the application gives up)."""
        self.retry = False
        self.retry_at = None

    # -- the binding check -------------------------------------------------------------------

    def _granted(self, response: Response) -> int | None:
        """The interval the 2xx grants our contact; None when our binding is not in it."""
        try:
            contacts = response.contact
            header_expires = response.expires
        except ParseError:
            return None
        for contact in contacts:
            if isinstance(contact, ContactStar) or not self._is_ours(contact):
                continue
            value = contact.param("expires")
            if value is not None and value.isdigit():
                return int(value)
            return header_expires if header_expires is not None else self.expires
        return None

    def _is_ours(self, contact: NameAddress) -> bool:
        if self.instance_id is not None:
            instance = contact.param("+sip.instance")
            if instance is not None:
                return instance.strip('"').strip("<>") == self.instance_id
        return same_binding(contact.uri, self.contact.uri)

    # -- keep-alives -------------------------------------------------------------------------

    def _keeps_alive(self) -> bool:
        reliable = self.transport in ("tcp", "tls")
        return reliable and (self.keepalive is not None or self.instance_id is not None)

    def _keepalive_interval(self) -> float:
        if self._flow_timer is not None:
            return self._flow_timer * self._random.uniform(0.8, 1.0)
        if self.keepalive is not None:
            return self.keepalive * self._random.uniform(0.8, 1.0)
        return self._random.uniform(*KEEPALIVE_RANGE)


def same_binding(a: object, b: object) -> bool:
    """RFC 3261 §10.3 step 6 / §19.1.4 in short: the same scheme, user, host, port and transport
    (the registrar may add parameters of its own, such as ``received``)."""
    if not isinstance(a, SipUri) or not isinstance(b, SipUri):
        return False
    return (
        a.scheme == b.scheme
        and (a.user or "") == (b.user or "")
        and a.host_port[0].lower() == b.host_port[0].lower()
        and a.host_port[1] == b.host_port[1]
        and (a.transport or "udp") == (b.transport or "udp")
    )


def _flow_timer(response: Response) -> int | None:
    value = response.headers.get("Flow-Timer")
    return int(value.strip()) if value is not None and value.strip().isdigit() else None


__all__ = [
    "REFRESH_MARGIN",
    "TRANSITIONS",
    "RegInput",
    "RegState",
    "Registered",
    "Registration",
    "RegistrationEvent",
    "RegistrationFailed",
    "Unregistered",
    "same_binding",
]
