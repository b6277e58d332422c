"""The application API: :class:`UserAgent` and :class:`Call`, for softphones, B2BUAs and tests.

```python
ua = await UserAgent.create(["udp:127.0.0.1:5070"], sdp=my_sdp)
call = await ua.call("sip:bob@127.0.0.1:5080")
await call.wait_for(InviteState.CONFIRMED)
await call.hold()
await call.hangup()
await call.close()          # releases the references: session first, dialog second
report = await ua.close()   # hangs up what is left, returns the leak report
```

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
import ssl
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from invsess.aio.endpoint import AsyncEndpoint, ListenSpec
from invsess.aio.guard import SendGuard
from invsess.aio.registration import AsyncRegistration, register
from invsess.aio.transport import StreamLimits, UdpLimits
from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import (
    IncomingCall,
    InviteSession,
    InviteState,
    MediaUpdated,
    Rel100,
    SessionLayer,
    SessionStateChanged,
    TimerSettings,
    option_tags,
)
from invsess.memory import LeakReport
from invsess.routeset import next_hop, parse_route_set
from invsess.sdp import SessionDescription
from invsess.sip import LocalProtocolError, NameAddress, SipUri, make_response, parse_uri
from invsess.trace import Trace
from invsess.transaction import RequestReceived

if TYPE_CHECKING:
    from invsess.monitor import MonitorTarget
    from invsess.monitor.server import HttpService

_OWNER = "app-call"


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

    def __init__(self, agent: UserAgent, session: InviteSession, request_uri: str | None = None) -> None:
        self.agent = agent
        self.session = session
        self.dialog = session.dialog
        session.add_ref(_OWNER)
        self.dialog.add_ref(_OWNER)
        self._changed = asyncio.Condition()
        self.history: list[InviteState] = [session.state]
        self.media: MediaUpdated | None = None
        self.closed = False
        self.target = request_uri

    def __repr__(self) -> str:
        return f"<Call {self.session.call_id} {self.state.name}>"

    @property
    def state(self) -> InviteState:
        """The session's state."""
        return self.session.state

    @property
    def cause(self) -> int | None:
        """The status code that ended (or is ending) the call."""
        return self.session.cause

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self.session.call_id

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, state: InviteState, timeout: float | None = 10.0) -> None:
        """Wait until the call reaches ``state`` (or DISCONNECTED, which raises if unwanted)."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                if self.state is state:
                    return
                if self.state is InviteState.DISCONNECTED:
                    raise LocalProtocolError(f"call ended (cause {self.cause}) before reaching {state.name}")
                await self._changed.wait()

    async def answer(self, code: int = 200, reason: str | None = None) -> None:
        """Answer an incoming call: 180/183 rings, 2xx connects, 3xx-6xx rejects."""
        self.agent.layer.answer(self.session, code, self.agent.now(), reason=reason)
        self.agent.flush()

    async def hangup(self) -> None:
        """CANCEL, reject or BYE, as the state calls for; waits for DISCONNECTED."""
        if self.state is InviteState.DISCONNECTED:
            return
        self.agent.layer.hangup(self.session, self.agent.now())
        self.agent.flush()
        await self.wait_for(InviteState.DISCONNECTED, timeout=None)

    async def reinvite(self, direction: str | None = None) -> None:
        """Send a re-INVITE (a new offer); returns when it was agreed."""
        self.agent.layer.reinvite(self.session, self.agent.now(), direction=direction)
        self.agent.flush()
        await self._wait_agreed()

    async def _wait_agreed(self) -> None:
        session = self.session
        async with asyncio.timeout(40), self._changed:
            # Done when no re-INVITE is pending or waiting to retry (after a 491), and the last
            # MediaUpdated seen is the agreement now active (not an earlier one still queued).
            while self.state is not InviteState.DISCONNECTED and (
                session.offers.busy
                or self.media is None
                or self.media.generation != session.negotiator.generation
            ):
                await self._changed.wait()

    async def update(self, direction: str | None = None) -> None:
        """Send an UPDATE with a new offer (RFC 3311); returns when it was agreed."""
        self.agent.layer.update(self.session, self.agent.now(), direction=direction)
        self.agent.flush()
        await self._wait_agreed()

    async def hold(self) -> None:
        """Put the call on hold (a=sendonly)."""
        await self.reinvite("sendonly")

    async def resume(self) -> None:
        """Take the call off hold (a=sendrecv)."""
        await self.reinvite("sendrecv")

    async def close(self) -> None:
        """Release the references: the session first, the dialog second (never the other way)."""
        if not self.closed:
            self.closed = True
            self.agent._calls.pop(self.session, None)
            self.session.dec_ref(_OWNER)
            self.dialog.dec_ref(_OWNER)


class UserAgent:
    """A SIP user agent on asyncio: an endpoint, its session layer, and a task reading events."""

    def __init__(self, aio: AsyncEndpoint, layer: SessionLayer) -> None:
        self.aio = aio
        self.layer = layer
        self._calls: dict[InviteSession, Call] = {}
        self._incoming: asyncio.Queue[Call] = asyncio.Queue()
        #: Out-of-dialog requests other than INVITE (answered 200 unless ``on_request`` is set).
        self.requests: asyncio.Queue[RequestReceived] = asyncio.Queue()
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
        sdp: SessionDescription,
        user: str = "invsess",
        config: EndpointConfig | None = None,
        guard: SendGuard | None = None,
        trace: Trace | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        timer: TimerSettings | None = None,
        rel100: Rel100 | str = Rel100.OFF,
        lock_codec: bool = False,
        stream_limits: StreamLimits | None = None,
        udp_limits: UdpLimits | None = None,
    ) -> UserAgent:
        """Open the listeners and start reading events.

        ``timer`` and ``rel100`` turn on session timers and reliable provisional responses (see
        :class:`~invsess.inv.SessionLayer`); without a ``config``, the default one is made to
        match them (PRACK allowed, "timer"/"100rel" supported). ``lock_codec`` re-offers one codec
        after an answer that kept several (pjsua's option; see :mod:`invsess.inv.lock`).
        ``stream_limits`` and ``udp_limits`` bound the transports (docs/hardening.md); the call,
        transaction and rate limits are the ``config``'s.
        """
        if config is None:
            supported = option_tags(timer, rel100)
            allow = ("INVITE", "BYE", "OPTIONS", "UPDATE", *(("PRACK",) if "100rel" in supported else ()))
            config = EndpointConfig(allow=allow, supported=supported)
        endpoint = Endpoint(config)
        layer = SessionLayer(endpoint, sdp, user=user, timer=timer, rel100=rel100, lock_codec=lock_codec)
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
        for spec in listen:
            await aio.listen(spec)
        return cls(aio, layer)

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

    async def call(
        self,
        uri: str,
        *,
        transport: str | None = None,
        with_offer: bool = True,
        route: Sequence[str | NameAddress] = (),
    ) -> Call:
        """Place a call to ``uri`` (host must be an IP address: nothing here resolves names).
        ``route``: a preloaded route set, e.g. an outbound proxy ``["sip:10.0.0.1:5060;lr"]``
        (the INVITE goes to its first entry)."""
        target = parse_uri(uri)
        if not isinstance(target, SipUri):
            raise LocalProtocolError(f"can only call sip: or sips: URIs, not {uri!r}")
        routes = parse_route_set(route)
        host, port, hop_transport = next_hop(target, routes, "udp")
        transport = (transport or hop_transport).lower()
        session = self.layer.invite(
            uri,
            destination=(host, port),
            now=self.now(),
            transport=transport,
            with_offer=with_offer,
            route=routes,
        )
        call = Call(self, session, uri)
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

    async def _read_events(self) -> None:
        while True:
            event = await self.aio.next_event()
            if isinstance(event, IncomingCall):
                if self._closing:  # no new call while shutting down: the layer releases it
                    self.layer.answer(event.session, 503, self.now(), reason="Shutting Down")
                    self.flush()
                    continue
                new = Call(self, event.session, event.request.uri_text)
                self._calls[event.session] = new
                self._incoming.put_nowait(new)
            elif isinstance(event, SessionStateChanged | MediaUpdated):
                if isinstance(event, SessionStateChanged):
                    self._changed.set()
                call = self._calls.get(event.session)
                if call is None:
                    continue
                if isinstance(event, MediaUpdated):
                    call.media = event
                elif call.history[-1] is not event.new:
                    call.history.append(event.new)
                await call._notify()
            elif isinstance(event, RequestReceived):
                response = make_response(event.request, 200, to_tag=self.endpoint.new_tag())
                self.endpoint.respond(event.transaction, response, self.now())
                self.flush()

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

    async def close(self, timeout: float = 5.0) -> LeakReport:
        """Hang up every call still up, all at once; wait at most ``timeout`` seconds in all
        (less after :meth:`hurry`) for their peers; end the rest by running their timers out;
        release every call; remove our bindings at registrars (``Expires: 0``); close the
        transports; return the leak report.

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
