"""The application API: :class:`UserAgent` and :class:`Call`, for softphones, B2BUAs and tests.

```python
ua = await UserAgent.create(["udp:127.0.0.1:5070"], sdp=my_sdp)
call = await ua.call("sip:bob@example.com", headers=[("X-Account", "42")])
await call.wait_for(InviteState.CONFIRMED)        # CallFailed(response=...) if it was refused
await call.hold()
await call.send_dtmf("5")                          # INFO, application/dtmf-relay
await call.hangup(reason="done")
await call.close()          # releases the references: session first, dialog second
report = await ua.close()   # hangs up what is left, returns the leak report
```

Incoming calls come from ``await ua.incoming()`` (or ``async for call in
ua.incoming_calls()``, or an ``on_incoming`` callback); before answering, ``call.request`` is
the INVITE as received and ``call.remote_offer`` its SDP, and ``call.ring()``,
``call.answer(sdp=...)`` or ``call.reject()`` decide. ``async for event in call.events()``
follows a call to its end (:mod:`invsess.aio.events`); pjsua2-style callbacks (``on_state``,
``on_media``, ``on_dtmf``) sit on the same stream. Offers of the peer inside a call go to the
call's ``on_offer`` handler (or the agent's), which may take its time — a B2BUA awaits the
other leg — while the peer's re-INVITE waits with 100 Trying; without one they are answered at
once from the call's SDP. INFO and MESSAGE go to ``on_request`` (200 without one).

A :class:`Call` holds one reference on its session and one on its dialog from creation until
:meth:`Call.close`, so its session stays readable after DISCONNECTED; :meth:`UserAgent.close`
closes the calls the application left open.

Shutdown (:meth:`UserAgent.close`) hangs up every call still up at once and waits a bounded
total time; a call whose peer never answers is then ended the way a long enough wait would
have ended it (its timers run out now: the BYE times out), so the session layer releases it
in the documented order, session first, dialog second. :meth:`UserAgent.hurry` (a second
Ctrl-C) stops waiting at once. :attr:`UserAgent.shutdown` then says what was still up.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from invsess.aio.endpoint import AsyncEndpoint, ListenSpec
from invsess.aio.events import (
    CallEnded,
    CallEvent,
    CallFailed,
    CallTimedOut,
    DtmfReceived,
    MediaChanged,
    OfferArrived,
    OfferFailed,
    OfferRefusedError,
    ProgressReceived,
    Reject,
    Reply,
    RequestArrived,
    SessionRefreshed,
    StateChanged,
    TransportFailed,
    parse_dtmf,
)
from invsess.aio.guard import SendGuard
from invsess.aio.registration import AsyncRegistration, register
from invsess.aio.resolver import ResolutionError, Resolver, SystemResolver
from invsess.aio.transport import StreamLimits, UdpLimits
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    DialogRequestReceived,
    DialogResponseReceived,
    ForkedCall,
    IncomingCall,
    InviteResponseReceived,
    InviteSession,
    InviteState,
    MediaUpdated,
    OfferReceived,
    OfferRefused,
    OfferWithdrawn,
    Rel100,
    SessionLayer,
    SessionStateChanged,
    TimerSettings,
    option_tags,
)
from invsess.inv import (
    SessionRefreshed as LayerRefreshed,
)
from invsess.inv.events import detached_request
from invsess.logs import get_logger
from invsess.memory import LeakReport
from invsess.routeset import parse_route_set
from invsess.sdp import SessionDescription
from invsess.sip import LocalProtocolError, NameAddress, Request, Response, SipUri, make_response, parse_uri
from invsess.trace import Trace
from invsess.transaction import RequestReceived, Transaction

if TYPE_CHECKING:
    from invsess.monitor import MonitorTarget
    from invsess.monitor.server import HttpService

_OWNER = "app-call"
log = get_logger("invsess.aio")

#: An offer handler: the SDP to answer with (None: the call's own), or a :class:`Reject`.
OfferHandler = Callable[["Call", OfferArrived], Awaitable[SessionDescription | Reject | None]]
#: An ``on_request`` handler: a status code or a :class:`Reply`, directly or awaited.
RequestHandler = Callable[["Call", Request], "int | Reply | Awaitable[int | Reply]"]
Callback = Callable[["Call", Any], None]

#: What the default configuration serves and accepts besides SDP (RFC 6086 DTMF, MESSAGE text).
ACCEPT = ("application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain")


def _default_reply(request: Request) -> Reply:
    """What a request in a call gets when the application has no ``on_request``: 200 for INFO
    (legacy usage, DTMF) and MESSAGE; 469 for an INFO of an Info Package we never said we take
    (RFC 6086 §4.2.2); 501 for the rest of what the endpoint lets through."""
    if request.method == "INFO" and "Info-Package" in request.headers:
        return Reply(469, "Bad Info Package")
    return Reply(200 if request.method in ("INFO", "MESSAGE") else 501)


@attrs.frozen
class ShutdownReport:
    """What :meth:`UserAgent.close` found and did: calls still up when it started, how many
    ended by the protocol while it waited (their peer answered), and how many it ended itself
    when the wait was over or cut short (their peer never answered: BYE, CANCEL or ACK timed
    out). Those are calls still up at shutdown, not leaks: all were released."""

    up: int
    answered: int
    timed_out: int
    hurried: bool
    seconds: float

    def format(self) -> str:
        """One line for a command's exit report."""
        return (
            f"{self.up} calls still up at shutdown: {self.answered} ended by their peer, "
            f"{self.timed_out} ended without an answer{' (stopped at once)' if self.hurried else ''} "
            f"in {self.seconds:.1f} s"
        )


class Call:
    """One call; made by :meth:`UserAgent.call` or handed out by :meth:`UserAgent.incoming`."""

    def __init__(
        self,
        agent: UserAgent,
        session: InviteSession,
        request_uri: str | None = None,
        *,
        request: Request | None = None,
        offer: SessionDescription | None = None,
    ) -> None:
        self.agent = agent
        self.session = session
        self.dialog = session.dialog
        session.add_ref(_OWNER)
        self.dialog.add_ref(_OWNER)
        #: The INVITE as received (an incoming call's; a copy the call keeps), else None.
        self.request = request
        #: The caller's SDP offer in that INVITE (None for a late offer or a call we placed).
        self.remote_offer = offer
        #: The final failure response to the INVITE of a call we placed, once it came.
        self.final_response: Response | None = None
        # Tasks waiting for the call's next event (wait_for, events, hangup ...): woken all at
        # once by _record. A plain list of futures: the pump records from the loop's own
        # thread, so nothing needs a lock.
        self._waiters: list[asyncio.Future[None]] = []
        self._log: list[CallEvent] = []
        self.history: list[InviteState] = [session.state]
        self.media: MediaUpdated | None = None
        self.closed = False
        self.target = request_uri
        self._on_offer: OfferHandler | None = None
        #: pjsua2-style callbacks, called with (call, event) from the agent's event loop task.
        self.on_state: Callback | None = None
        self.on_media: Callback | None = None
        self.on_dtmf: Callback | None = None
        #: Answers the peer's INFO, MESSAGE, ... (a status or a :class:`Reply`); default 200/501.
        self.on_request: RequestHandler | None = None

    def __repr__(self) -> str:
        return f"<Call {self.session.call_id} {self.state.name}>"

    @property
    def state(self) -> InviteState:
        """The call's state as its events have told it (``session.state`` may be ahead by the
        events not read yet: a call reported CONFIRMED has its media known)."""
        return self.history[-1]

    @property
    def cause(self) -> int | None:
        """The status code that ended (or is ending) the call."""
        return self.session.cause

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self.session.call_id

    @property
    def on_offer(self) -> OfferHandler | None:
        """The handler of the peer's offers in this call (else the agent's, else automatic)."""
        return self._on_offer

    @on_offer.setter
    def on_offer(self, handler: OfferHandler | None) -> None:
        self._on_offer = handler
        self.agent.layer.defer_offers(self.session, (handler or self.agent.on_offer) is not None)

    # -- the event stream --------------------------------------------------------------------

    def _record(self, event: CallEvent) -> None:
        self._log.append(event)
        callback = None
        if isinstance(event, StateChanged | CallEnded):
            callback = self.on_state
        elif isinstance(event, MediaChanged):
            callback = self.on_media
        elif isinstance(event, DtmfReceived):
            callback = self.on_dtmf
        if callback is not None:
            try:
                callback(self, event)
            except Exception as exc:
                log.error(  # noqa: TRY400 - logged as a value: the facade has no exception()
                    "call callback failed", call_id=self.call_id, error=repr(exc)
                )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _next_event(self) -> None:
        """Return after the call's next event is recorded."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done() or waiter.cancelled():  # a timeout: stop waiting for it
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def events(self) -> AsyncIterator[CallEvent]:
        """Every event of the call, from its first, in order, ending with :class:`CallEnded`."""
        index = 0
        while True:
            while index >= len(self._log):
                await self._next_event()
            batch = self._log[index:]
            index += len(batch)
            for event in batch:
                yield event
                if isinstance(event, CallEnded):
                    return

    async def wait_for(self, state: InviteState, timeout: float | None = 10.0) -> None:
        """Wait until the call reaches ``state``; raises :class:`CallFailed` (or its kinds) if
        it ends first, TimeoutError after ``timeout``."""
        if timeout is None:
            await self._until(state)
        else:
            async with asyncio.timeout(timeout):
                await self._until(state)

    async def _until(self, state: InviteState) -> None:
        while self.state is not state:
            if self.state is InviteState.DISCONNECTED:
                raise self.failure(f"before reaching {state.name}")
            await self._next_event()

    def failure(self, when: str = "") -> CallFailed:
        """The error that says why the call ended: the final response, a timeout, a transport."""
        cause, response = self.cause, self.final_response
        what = f"call ended (cause {cause}) {when}".rstrip()
        if response is not None:
            return CallFailed(
                f"{what}: {response.status_code} {response.reason}", cause, response.reason, response
            )
        if cause == 408:
            return CallTimedOut(f"{what}: no answer in time", cause, "Request Timeout")
        if cause == 503:
            return TransportFailed(f"{what}: could not be sent", cause, "Service Unavailable")
        return CallFailed(what, cause)

    # -- answering an incoming call ----------------------------------------------------------

    async def answer(
        self,
        code: int = 200,
        reason: str | None = None,
        *,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Answer an incoming call: 2xx connects (``sdp``: the answer to send, checked against the
        offer; default: made from the agent's SDP), 1xx rings, 3xx-6xx rejects."""
        self.answer_now(code, reason, sdp=sdp, headers=headers)

    def answer_now(
        self,
        code: int = 200,
        reason: str | None = None,
        *,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """:meth:`answer`, from a callback that cannot await (``on_incoming``, ``on_state``):
        the answer is sent before this returns."""
        self.agent.layer.answer(
            self.session, code, self.agent.now(), reason=reason, sdp=sdp, headers=headers or ()
        )
        self.agent.flush()

    async def ring(
        self, code: int = 180, *, sdp: SessionDescription | None = None, reliable: bool | None = None
    ) -> None:
        """A provisional response: ``sdp`` for early media (183), ``reliable`` True/False to
        force or refuse 100rel (None: reliable when both sides do 100rel)."""
        if not 100 < code < 200:
            raise LocalProtocolError(f"ring() sends 101-199, not {code}")
        self.agent.layer.answer(self.session, code, self.agent.now(), sdp=sdp, reliable=reliable)
        self.agent.flush()

    async def reject(
        self, code: int = 486, reason: str | None = None, *, headers: Iterable[tuple[str, str]] | None = None
    ) -> None:
        """Refuse an incoming call with a 3xx-6xx."""
        if not 300 <= code < 700:
            raise LocalProtocolError(f"reject() sends 3xx-6xx, not {code}")
        await self.answer(code, reason, headers=headers)

    async def hangup(self, code: int | None = None, reason: str | None = None) -> None:
        """CANCEL, reject (``code``, 603 by default) or BYE, as the state calls for; with
        ``reason``, a ``Reason: SIP;cause=...;text=...`` header (RFC 3326). Waits for the end."""
        if self.state is InviteState.DISCONNECTED:
            return
        self.agent.layer.hangup(self.session, self.agent.now(), code=code, reason=reason)
        self.agent.flush()
        await self._until(InviteState.DISCONNECTED)

    # -- offers inside the call --------------------------------------------------------------

    async def reinvite(
        self,
        direction: str | None = None,
        *,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Send a re-INVITE (a new offer: ``sdp``, or ours with ``direction``); returns when it
        was agreed, raises :class:`OfferRefusedError` when the peer refused it."""
        start = len(self._log)
        self.agent.layer.reinvite(
            self.session, self.agent.now(), direction=direction, sdp=sdp, headers=headers or ()
        )
        self.agent.flush()
        await self._wait_agreed(start)

    async def update(
        self,
        direction: str | None = None,
        *,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Send an UPDATE with a new offer (RFC 3311); returns when it was agreed, raises
        :class:`OfferRefusedError` when the peer refused it."""
        start = len(self._log)
        self.agent.layer.update(
            self.session, self.agent.now(), direction=direction, sdp=sdp, headers=headers or ()
        )
        self.agent.flush()
        await self._wait_agreed(start)

    async def _wait_agreed(self, start: int) -> None:
        """Until our offer (sent when the log had ``start`` events) was agreed; raises
        :class:`OfferRefusedError` when it was refused, CallFailed when the call ended."""
        session = self.session
        limit = 64 * session.ctx.endpoint.config.timers.t1 + 10  # the request's own timeout, and some
        async with asyncio.timeout(limit):
            while True:
                refused = next((e for e in self._log[start:] if isinstance(e, OfferFailed)), None)
                if refused is not None:
                    text = f"offer refused: {refused.code} {refused.reason}"
                    raise OfferRefusedError(text, refused.code, refused.reason)
                if self.state is InviteState.DISCONNECTED:
                    raise self.failure("before the offer was answered")
                # Agreed when no request of ours is pending or waiting to retry (after a 491),
                # and the last MediaUpdated seen is the agreement now in force.
                if (
                    session.offers.pending is None
                    and session.offers.retry_at is None
                    and self.media is not None
                    and self.media.generation == session.negotiator.generation
                ):
                    return
                await self._next_event()

    async def hold(self) -> None:
        """Put the call on hold (a=sendonly)."""
        await self.reinvite("sendonly")

    async def resume(self) -> None:
        """Take the call off hold (a=sendrecv)."""
        await self.reinvite("sendrecv")

    # -- requests inside the call ------------------------------------------------------------

    async def send_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:
        """Send INFO, MESSAGE, ... in the call's dialog; returns the final response (a copy).
        Raises :class:`CallTimedOut` when none came (the call then ends, RFC 3261 §12.2.1.2)."""
        agent = self.agent
        tx = agent.layer.send_request(
            self.session, method, agent.now(), headers=headers or (), body=body, content_type=content_type
        )
        waiter: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        agent._requests[tx] = waiter
        agent.flush()
        response = await waiter
        if response is None:
            raise CallTimedOut(f"no response to {method.upper()}", 408, "Request Timeout")
        return response

    async def send_dtmf(self, digit: str, *, duration: int = 160, relay: bool = True) -> Response:
        """One DTMF digit by INFO (RFC 6086 legacy usage): ``application/dtmf-relay`` (SIP INFO
        as PJSIP and Cisco send it), or ``application/dtmf`` with ``relay=False``."""
        if len(digit) != 1 or digit.upper() not in "0123456789*#ABCD":
            raise ValueError(f"not a DTMF digit: {digit!r}")
        if relay:
            body = f"Signal={digit.upper()}\r\nDuration={duration}\r\n".encode()
            return await self.send_request("INFO", body=body, content_type="application/dtmf-relay")
        return await self.send_request("INFO", body=digit.upper().encode(), content_type="application/dtmf")

    async def close(self) -> None:
        """Release the references: the session first, the dialog second (never the other way)."""
        self.release()

    def release(self) -> None:
        """:meth:`close`, from a callback that cannot await (``on_state`` at :class:`CallEnded`)."""
        if not self.closed:
            self.closed = True
            self.agent._calls.pop(self.session, None)
            self.session.dec_ref(_OWNER)
            self.dialog.dec_ref(_OWNER)


class UserAgent:
    """A SIP user agent on asyncio: an endpoint, its session layer, and a task reading events."""

    def __init__(self, aio: AsyncEndpoint, layer: SessionLayer, *, resolver: Resolver | None = None) -> None:
        self.aio = aio
        self.layer = layer
        #: How URIs become addresses (A/AAAA by default; :class:`DnsResolver` for RFC 3263).
        self.resolver: Resolver = resolver or SystemResolver()
        #: The default handler of the peer's offers, for calls that set none.
        self.on_offer: OfferHandler | None = None
        #: When set, incoming calls go to it instead of :meth:`incoming`.
        self.on_incoming: Callable[[Call], None] | None = None
        self._calls: dict[InviteSession, Call] = {}
        self._incoming: asyncio.Queue[Call] = asyncio.Queue()
        self._requests: dict[Transaction[Any], asyncio.Future[Response | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Out-of-dialog requests other than INVITE (OPTIONS when not automatic, MESSAGE ...)
        #: are answered 200.
        #: Registrations made by :meth:`register` and not yet unregistered.
        self.registrations: list[AsyncRegistration] = []
        self._changed = asyncio.Event()  # any call changed state (what close() waits on)
        self._hurry = asyncio.Event()
        self._closing = False
        #: Set by :meth:`close`: the calls it found still up and what became of them.
        self.shutdown: ShutdownReport | None = None
        self._pump = asyncio.get_running_loop().create_task(self._read_events())
        self._services: list[HttpService] = []

    @classmethod
    async def create(
        cls,
        listen: Iterable[str | ListenSpec],
        *,
        sdp: SessionDescription | None = None,
        user: str = "invsess",
        config: EndpointConfig | None = None,
        guard: SendGuard | None = None,
        trace: Trace | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        timer: TimerSettings | None = None,
        rel100: Rel100 | str = Rel100.OFF,
        resolver: Resolver | None = None,
        offer_timeout: float = 30.0,
        lock_codec: bool = False,
        stream_limits: StreamLimits | None = None,
        udp_limits: UdpLimits | None = None,
        reuse_port: bool = False,
    ) -> UserAgent:
        """Open the listeners and start reading events.

        ``sdp`` is what calls offer and answer with unless they bring their own (None: every
        call and answer must: a B2BUA). ``timer`` and ``rel100`` turn on session timers and
        reliable provisional responses (see :class:`~invsess.inv.SessionLayer`); without a
        ``config``, the default one is made to match them (PRACK allowed, "timer"/"100rel"
        supported) and serves INFO and MESSAGE too. ``resolver``: see :mod:`invsess.aio.resolver`.
        ``lock_codec`` re-offers one codec after an answer that kept several (pjsua's option;
        see :mod:`invsess.inv.lock`). ``stream_limits`` and ``udp_limits`` bound the transports
        (docs/hardening.md); the call, transaction and rate limits are the ``config``'s.
        ``reuse_port``: the UDP listeners share their ports with other processes (one of
        ``invsess answer --workers N``; see :mod:`invsess.aio.workers`).
        """
        if config is None:
            supported = option_tags(timer, rel100)
            prack = ("PRACK",) if "100rel" in supported else ()
            allow = ("INVITE", "BYE", "OPTIONS", "UPDATE", "INFO", "MESSAGE", *prack)
            config = EndpointConfig(allow=allow, supported=supported, accept=ACCEPT)
        endpoint = Endpoint(config)
        layer = SessionLayer(
            endpoint, sdp, user=user, timer=timer, rel100=rel100, offer_timeout=offer_timeout,
            lock_codec=lock_codec,
        )  # fmt: skip
        aio = AsyncEndpoint(
            endpoint,
            core=layer,
            guard=guard,
            trace=trace,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
            stream_limits=stream_limits,
            udp_limits=udp_limits,
        )
        try:
            for spec in listen:
                await aio.listen(spec, reuse_port=reuse_port)
        except BaseException:
            await aio.close(timeout=0)
            raise
        return cls(aio, layer, resolver=resolver)

    @property
    def endpoint(self) -> Endpoint:
        """The sans-IO endpoint underneath."""
        return self.aio.endpoint

    def now(self) -> float:
        """The driver's clock."""
        return self.aio.now()

    def flush(self) -> None:
        """Send what the core queued and re-arm its timer."""
        self.aio.flush()

    @property
    def calls(self) -> list[Call]:
        """The calls not closed yet, oldest first."""
        return list(self._calls.values())

    async def call(
        self,
        uri: str,
        *,
        sdp: SessionDescription | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
        from_: str | None = None,
        display_name: str | None = None,
        route: Sequence[str | NameAddress] = (),
        transport: str | None = None,
        with_offer: bool = True,
        on_offer: OfferHandler | None = None,
    ) -> Call:
        """Place a call to ``uri``: our offer is ``sdp`` (else the agent's SDP; none at all —
        a late offer — when neither exists or ``with_offer`` is False). ``headers`` go in the
        INVITE; ``from_`` (a URI) and ``display_name`` make the From; ``route`` is a preloaded
        route set, e.g. an outbound proxy ``["sip:proxy.example.com;lr"]`` (the INVITE goes to
        its first entry). That host is resolved by the agent's resolver; a name that does not
        resolve raises :class:`TransportFailed`. ``on_offer`` handles the peer's offers in this
        call (also the one in a 2xx to a late offer)."""
        target = parse_uri(uri)
        if not isinstance(target, SipUri):
            raise LocalProtocolError(f"can only call sip: or sips: URIs, not {uri!r}")
        routes = parse_route_set(route)
        hop = routes[0].uri if routes else target
        if not isinstance(hop, SipUri):
            raise LocalProtocolError(f"a route must be a sip: or sips: URI, not {hop}")
        if transport is not None:
            hop = hop.with_params(transport=transport.lower())
        try:
            targets = await self.resolver.resolve(hop, tuple(self.endpoint.listeners))
        except ResolutionError as exc:
            raise TransportFailed(str(exc), 503, "Service Unavailable") from None
        first_target = targets[0]
        handler = on_offer or self.on_offer
        session = self.layer.invite(
            uri,
            destination=(first_target.host, first_target.port),
            now=self.now(),
            transport=first_target.transport,
            from_uri=from_,
            with_offer=with_offer,
            sdp=sdp,
            display_name=display_name,
            headers=headers or (),
            route=routes,
            defer_offers=handler is not None,
        )
        call = Call(self, session, uri)
        call._on_offer = on_offer
        self._calls[session] = call
        self.flush()
        return call

    async def register(
        self, registrar: str, user: str, password: str | None = None, **options: Any
    ) -> AsyncRegistration:
        """Register ``user`` at ``registrar`` and keep the binding refreshed until
        :meth:`close` (or the registration's ``unregister()``); the password also answers the
        401/407 of calls through the same proxy. ``options``: ``expires``, ``transport``,
        ``route``, ``aor``, ``instance_id``, ``keepalive``, ``retry``, ``timeout`` — see
        :func:`invsess.aio.registration.register`, which raises ``RegistrationError`` when the
        registrar refuses."""
        return await register(self, registrar, user, password, **options)

    async def incoming(self, timeout: float | None = None) -> Call:
        """The next incoming call."""
        async with asyncio.timeout(timeout):
            return await self._incoming.get()

    async def incoming_calls(self) -> AsyncIterator[Call]:
        """Incoming calls, as they come, for ever: ``async for call in ua.incoming_calls()``."""
        while True:
            yield await self._incoming.get()

    # -- the event pump ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_events(self) -> None:
        # Every event queued is handled in one go, and the pump sleeps only when there is
        # none left: one wake-up per flush, not a coroutine round per event.
        aio = self.aio
        while True:
            event = aio.poll_event()
            if event is None:
                await aio.news()
                continue
            try:
                self._dispatch(event)
            except Exception as exc:
                log.error(  # noqa: TRY400 - logged as a value: the facade has no exception()
                    "event dispatch failed", kind=type(event).__name__, error=repr(exc)
                )

    def _dispatch(self, event: object) -> None:
        if isinstance(event, SessionStateChanged):
            self._changed.set()  # (what close() waits on)
        if isinstance(event, IncomingCall):
            if self._closing:  # no new call while shutting down: the layer releases it
                self.layer.answer(event.session, 503, self.now(), reason="Shutting Down")
                self.flush()
                return
            self._new_call(event)
            return
        if isinstance(event, RequestReceived) and not isinstance(event, DialogRequestReceived):
            response = make_response(event.request, 200, to_tag=self.endpoint.new_tag())
            self.endpoint.respond(event.transaction, response, self.now())
            self.flush()
            return
        if isinstance(event, DialogResponseReceived):
            waiter = self._requests.pop(event.transaction, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.response)
            return
        if isinstance(event, ForkedCall):
            return  # only with keep_forks, which the agent does not set
        session = getattr(event, "session", None)
        call = self._calls.get(session) if isinstance(session, InviteSession) else None
        if call is None:
            if isinstance(event, DialogRequestReceived):  # the call was closed: still answer
                self.layer.respond(event.session, event.transaction, 481, self.now())
                self.flush()
            return
        if isinstance(event, SessionStateChanged):
            if call.history[-1] is not event.new:
                call.history.append(event.new)
            call._record(StateChanged(event.old, event.new, event.cause))
            if event.new is InviteState.DISCONNECTED:
                call._record(CallEnded(event.cause, call.final_response))
        elif isinstance(event, MediaUpdated):
            call.media = event
            call._record(MediaChanged(event.local, event.remote))
        elif isinstance(event, InviteResponseReceived):
            code = event.response.status_code
            if code < 200:
                call._record(ProgressReceived(event.response))
            elif code >= 300:
                call.final_response = event.response
        elif isinstance(event, OfferReceived):
            request = detached_request(event.request) if event.request is not None else None
            arrived = OfferArrived(event.offer, event.kind, request)
            call._record(arrived)
            self._spawn(self._answer_offer(call, arrived))
        elif isinstance(event, OfferRefused):
            call._record(OfferFailed(event.code, event.reason))
        elif isinstance(event, OfferWithdrawn):
            log.info("offer withdrawn", call_id=call.call_id, code=event.code)
        elif isinstance(event, LayerRefreshed):
            call._record(SessionRefreshed(event.interval))
        elif isinstance(event, DialogRequestReceived):
            self._answer_request(call, event)

    def _new_call(self, event: IncomingCall) -> None:
        new = Call(self, event.session, event.request.uri_text, request=detached_request(event.request),
                   offer=event.offer)  # fmt: skip
        self._calls[event.session] = new
        if self.on_offer is not None:
            self.layer.defer_offers(event.session)
        new._record(StateChanged(InviteState.NULL, event.session.state, None))
        if self.on_incoming is not None:
            try:
                self.on_incoming(new)
            except Exception as exc:
                log.error(  # noqa: TRY400 - logged as a value: the facade has no exception()
                    "on_incoming failed", call_id=new.call_id, error=repr(exc)
                )
        else:
            self._incoming.put_nowait(new)

    async def _answer_offer(self, call: Call, offer: OfferArrived) -> None:
        """Run the call's offer handler and give the layer its answer (or refusal)."""
        handler = call.on_offer or self.on_offer
        result: SessionDescription | Reject | None
        try:
            result = await handler(call, offer) if handler is not None else None
        except Exception as exc:
            log.error(  # noqa: TRY400 - logged as a value: the facade has no exception()
                "offer handler failed", call_id=call.call_id, error=repr(exc)
            )
            result = Reject(500, "Offer Handler Failed")
        if call.closed:
            return
        try:
            if isinstance(result, Reject):
                self.layer.reject_offer(call.session, self.now(), code=result.code, reason=result.reason)
            else:
                self.layer.answer_offer(call.session, self.now(), sdp=result)
        except LocalProtocolError as exc:  # withdrawn meanwhile (CANCEL, BYE, timeout)
            log.info("offer answer dropped", call_id=call.call_id, reason=str(exc))
        self.flush()

    def _answer_request(self, call: Call, event: DialogRequestReceived) -> None:
        request = detached_request(event.request)
        dtmf = parse_dtmf(request) if request.method == "INFO" else None
        handler = call.on_request
        if handler is None:
            self._respond(call, event, _default_reply(request), request)
        else:
            self._spawn(self._run_request_handler(call, event, handler, request))
        if dtmf is not None:
            call._record(DtmfReceived(dtmf[0], dtmf[1], request))

    async def _run_request_handler(
        self, call: Call, event: DialogRequestReceived, handler: RequestHandler, request: Request
    ) -> None:
        try:
            outcome = handler(call, request)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:
            log.error(  # noqa: TRY400 - logged as a value: the facade has no exception()
                "request handler failed", call_id=call.call_id, error=repr(exc)
            )
            outcome = Reply(500)
        reply = outcome if isinstance(outcome, Reply) else Reply(int(outcome))
        if not call.closed:
            self._respond(call, event, reply, request)

    def _respond(self, call: Call, event: DialogRequestReceived, reply: Reply, request: Request) -> None:
        if event.transaction.terminated:
            return
        self.layer.respond(
            call.session, event.transaction, reply.code, self.now(), reason=reply.reason,
            headers=reply.headers, body=reply.body, content_type=reply.content_type,
        )  # fmt: skip
        self.flush()
        # Recorded after what the request's own handling records (a DtmfReceived), as before.
        asyncio.get_running_loop().call_soon(call._record, RequestArrived(request, reply.code))

    # -- monitoring --------------------------------------------------------------------------

    def monitor_target(self, name: str | None = None) -> MonitorTarget:
        """This agent as something a monitoring server watches (named by its listeners)."""
        from invsess.monitor import MonitorTarget  # noqa: PLC0415 - the monitor layer sits above this one

        shown = name or ", ".join(f"{t}:{h}:{p}" for t, (h, p) in self.endpoint.listeners.items())
        return MonitorTarget(shown or "invsess", self.endpoint, self.now)

    async def serve_rpc(self, bind: str = "127.0.0.1:0", *, token: str | None = None) -> HttpService:
        """Serve Kamailio-compatible JSON-RPC 2.0 about this agent at ``http://bind/RPC``
        (``core.shmmem``, ``pkg.stats``, ``stats.get_statistics``, ``invsess.dialogs`` ...; see
        docs/monitoring.md). Loopback unless ``bind`` says otherwise; with ``token``, requests
        need ``Authorization: Bearer <token>``. Stopped by :meth:`close`. Needs the monitor extra."""
        from invsess.monitor import serve_rpc  # noqa: PLC0415 - optional extra, imported when used

        service = await serve_rpc([self.monitor_target()], bind, token=token)
        self._services.append(service)
        return service

    async def serve_metrics(self, bind: str = "127.0.0.1:0", *, token: str | None = None) -> HttpService:
        """Serve the Prometheus text format about this agent at ``http://bind/metrics``."""
        from invsess.monitor import serve_metrics  # noqa: PLC0415 - optional extra, imported when used

        service = await serve_metrics([self.monitor_target()], bind, token=token)
        self._services.append(service)
        return service

    def hurry(self) -> None:
        """Make a :meth:`close` under way (or the next one) stop waiting for peers at once."""
        self._hurry.set()
        self.aio.hurry()

    async def close(
        self, timeout: float = 5.0, *, linger: Callable[[], Awaitable[None]] | None = None
    ) -> LeakReport:
        """Hang up every call still up, all at once; wait at most ``timeout`` seconds in all
        (less after :meth:`hurry`) for their peers; end the rest by running their timers out;
        release every call; remove our bindings at registrars (``Expires: 0``); close the
        transports; return the leak report.

        ``linger``, when given, is awaited once all that is done and before the transports
        close, with the agent still serving (a new call gets 503): a worker sharing its port
        with others keeps its socket in the group until every worker is done, so that the
        kernel's choice of socket for the others' calls does not change under them
        (:mod:`invsess.aio.workers`).

        :attr:`shutdown` says how many calls were still up and how each ended.
        """
        for service in self._services:
            await service.close()
        self._services.clear()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout
        self._closing = True
        # Every session the layer holds, not only the application's calls: a Call closed
        # while its session was up leaves the session to us.
        up = self._live()
        for session in up:
            with contextlib.suppress(LocalProtocolError):
                self.layer.hangup(session, self.now())
        self.flush()
        while self._live() and not self._hurry.is_set() and loop.time() < deadline:
            self._changed.clear()
            waiters = [loop.create_task(self._changed.wait()), loop.create_task(self._hurry.wait())]
            await asyncio.wait(waiters, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        was_up = {id(session) for session in up}
        timed_out = sum(1 for session in self._live() if id(session) in was_up)
        await self._run_out()
        self.shutdown = ShutdownReport(
            up=len(up),
            answered=len(up) - timed_out,
            timed_out=timed_out,
            hurried=self._hurry.is_set(),
            seconds=loop.time() - start,
        )
        for call in list(self._calls.values()):
            await call.close()  # the application's references: session first, dialog second
        # Requests of ours still waiting for their answer (a CANCEL, a BYE of a call ended by
        # the application just before) get what is left of the wait, with the event pump still
        # turning: an INVITE arriving meanwhile is refused (503) and released. Transactions
        # that only absorb retransmissions are not waited for; nor anything once the peers
        # proved silent (their requests were run out above) or after hurry().
        if not timed_out:
            while self.endpoint.awaiting_answers() and not self._hurry.is_set() and loop.time() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), min(0.05, max(deadline - loop.time(), 0)))
        for registration in list(self.registrations):  # our bindings at registrars go too
            await registration.unregister(
                timeout=0.5 if self._hurry.is_set() else max(deadline - loop.time(), 1.0)
            )
        if linger is not None:
            await linger()
        for task in list(self._tasks):  # offer and request handlers still running
            task.cancel()
        for pending in self._requests.values():  # send_request() still waiting: no answer
            if not pending.done():
                pending.set_result(None)
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        # No await from here until the core is closed: nothing can arrive in between.
        self._refuse_queued_calls()
        return await self.aio.close(timeout=0)  # the session layer closes what is left

    def _refuse_queued_calls(self) -> None:
        """Events the pump did not get to: a call that came in is refused (503), so the layer
        releases it instead of closing with it still ringing."""
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, IncomingCall) and event.session.state is InviteState.INCOMING:
                self.layer.answer(event.session, 503, self.now(), reason="Shutting Down")
        self.flush()

    def _live(self) -> list[InviteSession]:
        """Sessions the layer still holds and that are not DISCONNECTED (the layer's list holds
        only sessions it has not released, so reading their state is safe)."""
        return [s for s in self.layer.sessions if s.state is not InviteState.DISCONNECTED]

    async def _run_out(self) -> None:
        """End the calls whose peer did not answer as waiting long enough would have: their
        transactions' and sessions' timers run out now (a BYE times out, an unacknowledged
        2xx gives up, an INVITE without final response ends), so the session layer's own paths
        disconnect and release them."""
        timers = self.endpoint.config.timers
        horizon = 64 * timers.t1 + 32.0 + timers.t4 + 1.0  # past every RFC 3261 timer (D is 32 s)
        at = self.now()
        for _ in range(4):  # an ended call may start one more transaction (a BYE after no ACK)
            live = self._live()
            if not live:
                break
            for session in live:  # one that came in while we waited: end it too
                with contextlib.suppress(LocalProtocolError):
                    self.layer.hangup(session, self.now())
            at += horizon
            self.aio.core.handle_timers(at)
            self.flush()
            for _ in range(3):  # the event pump runs the releases due
                await asyncio.sleep(0)


__all__ = ["ACCEPT", "Call", "OfferHandler", "RequestHandler", "ShutdownReport", "UserAgent"]
