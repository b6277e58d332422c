"""The application API: :class:`UserAgent` and :class:`Call`, for softphones, B2BUAs and tests.

```python
ua = await UserAgent.create(["udp:127.0.0.1:5070"], sdp=my_sdp)
call = await ua.call("sip:bob@127.0.0.1:5080")
await call.wait_for(InviteState.CONFIRMED)
await call.hold()
await call.hangup()
await call.close()          # releases the references: session first, dialog second
report = await ua.close()   # waits for transactions, returns the leak report
```

A :class:`Call` holds one reference on its session and one on its dialog from creation until
:meth:`Call.close`, so its session stays readable after DISCONNECTED; :meth:`UserAgent.close`
closes the calls the application left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

from invsess.aio.endpoint import AsyncEndpoint, ListenSpec
from invsess.aio.guard import SendGuard
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
from invsess.sdp import SessionDescription
from invsess.sip import LocalProtocolError, SipUri, make_response, parse_uri
from invsess.trace import Trace
from invsess.transaction import RequestReceived

if TYPE_CHECKING:
    from invsess.monitor import MonitorTarget
    from invsess.monitor.server import HttpService

_OWNER = "app-call"


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
    ) -> UserAgent:
        """Open the listeners and start reading events.

        ``timer`` and ``rel100`` turn on session timers and reliable provisional responses (see
        :class:`~invsess.inv.SessionLayer`); without a ``config``, the default one is made to
        match them (PRACK allowed, "timer"/"100rel" supported). ``lock_codec`` re-offers one codec
        after an answer that kept several (pjsua's option; see :mod:`invsess.inv.lock`).
        """
        if config is None:
            supported = option_tags(timer, rel100)
            allow = ("INVITE", "BYE", "OPTIONS", "UPDATE", *(("PRACK",) if "100rel" in supported else ()))
            config = EndpointConfig(allow=allow, supported=supported)
        endpoint = Endpoint(config)
        layer = SessionLayer(endpoint, sdp, user=user, timer=timer, rel100=rel100, lock_codec=lock_codec)
        aio = AsyncEndpoint(
            endpoint, core=layer, guard=guard, trace=trace, server_ssl=server_ssl, client_ssl=client_ssl
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

    async def call(self, uri: str, *, transport: str | None = None, with_offer: bool = True) -> Call:
        """Place a call to ``uri`` (host must be an IP address: nothing here resolves names)."""
        target = parse_uri(uri)
        if not isinstance(target, SipUri):
            raise LocalProtocolError(f"can only call sip: or sips: URIs, not {uri!r}")
        host, port = target.host_port
        transport = (transport or target.transport or "udp").lower()
        session = self.layer.invite(
            uri, destination=(host, port), now=self.now(), transport=transport, with_offer=with_offer
        )
        call = Call(self, session, uri)
        self._calls[session] = call
        self.flush()
        return call

    async def incoming(self, timeout: float | None = None) -> Call:
        """The next incoming call."""
        async with asyncio.timeout(timeout):
            return await self._incoming.get()

    async def _read_events(self) -> None:
        while True:
            event = await self.aio.next_event()
            if isinstance(event, IncomingCall):
                new = Call(self, event.session, event.request.uri_text)
                self._calls[event.session] = new
                self._incoming.put_nowait(new)
            elif isinstance(event, SessionStateChanged | MediaUpdated):
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

    async def close(self, timeout: float = 5.0) -> LeakReport:
        """Hang up what is still up, release every call, close the transports, report leaks."""
        for service in self._services:
            await service.close()
        self._services.clear()
        for call in list(self._calls.values()):
            if call.state is not InviteState.DISCONNECTED:
                with contextlib.suppress(TimeoutError, LocalProtocolError):
                    async with asyncio.timeout(timeout):
                        await call.hangup()
        for call in list(self._calls.values()):
            await call.close()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        return await self.aio.close(timeout=timeout)  # the session layer closes what is left
