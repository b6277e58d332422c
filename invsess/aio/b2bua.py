"""A back-to-back user agent on the public API: each incoming call (leg A) is answered by a call
of its own to a fixed next hop (leg B), and the two are bridged.

```python
b2bua = await B2bua.create(["udp:127.0.0.1:5070"], to="sip:127.0.0.1:5080")
...
report = await b2bua.close()       # "0 leaked blocks"
```

Two independent legs: each has its own dialog, Call-ID, tags, CSeq space, memory pool and SDP
negotiator; nothing of one is shared with the other but the SDP bodies the B2BUA passes between
them. What goes through:

* the offer, both ways and as it is: the caller's SDP is leg B's offer; leg B's answer is leg
  A's (a late offer too: leg B's offer in its 2xx goes in leg A's 2xx, and leg A's answer in its
  ACK goes in leg B's ACK, which waits for it);
* ringing and early media (180/183 with SDP; reliably when the caller does 100rel);
* re-INVITE and UPDATE (hold, resume, codec changes): the offer waits on one leg (100 Trying)
  while the B2BUA asks the other, and gets that leg's answer, or its refusal code; an offer that
  crosses one of the other leg's gets 491 (RFC 3261 §14.1: both retry);
* INFO (DTMF) and MESSAGE, with the other leg's final status;
* the end: CANCEL from the caller cancels leg B (487 on both legs); BYE from either side ends
  both; a failure of leg B is leg A's final response (``map_failure``: redirects and
  challenges are not leg A's to follow); session timers run per leg.

Memory: each leg's :class:`~invsess.aio.Call` holds one reference on its session and one on its
dialog, and :meth:`Bridge.close` releases them session first, dialog second. That order is the
whole lesson of the Asterisk crash this project's debugging tutorial starts from: the session
lives in its dialog's pool, so dropping the dialog's last reference first frees the session
under the B2BUA's feet (``res_pjsip_session.c`` keeps the order, and says why). Under
MALLOC_DEBUG the wrong order raises ``UseAfterFreeError`` at the very next touch, not one crash
in a million calls later; a test does exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from invsess.aio.agent import Call, RequestHandler, UserAgent
from invsess.aio.endpoint import ListenSpec
from invsess.aio.events import (
    CallEnded,
    CallError,
    OfferArrived,
    OfferRefusedError,
    ProgressReceived,
    Reject,
    Reply,
    StateChanged,
)
from invsess.aio.guard import SendGuard
from invsess.aio.resolver import Resolver
from invsess.endpoint import EndpointConfig
from invsess.inv import InviteState, OfferKind, Rel100, TimerSettings, option_tags
from invsess.logs import get_logger
from invsess.memory import LeakReport
from invsess.sdp import SessionDescription, parse_sdp
from invsess.sip import LocalProtocolError, ParseError, Request, SipUri, parse_uri
from invsess.trace import Trace

log = get_logger("invsess.b2bua")

#: What leg A cannot act on from leg B's final response gets a plain failure instead.
_FAILURE_MAP = {401: 403, 407: 403, 422: 500, 423: 500, 420: 500, 421: 500, 494: 500}
_RINGING = (InviteState.INCOMING, InviteState.EARLY)


def map_failure(code: int | None) -> int:
    """Leg A's final response for leg B's failure ``code``: the same, except what only leg B
    could act on — a redirect (480), a challenge or an extension negotiation (403/500)."""
    if code is None:
        return 500
    if 300 <= code < 400:
        return 480
    return _FAILURE_MAP.get(code, code)


def _early_sdp(body: bytes) -> SessionDescription | None:
    if not body:
        return None
    try:
        return parse_sdp(body)
    except ParseError:
        return None


class Bridge:
    """One bridged call: leg ``a`` (the caller's) and leg ``b`` (ours to the next hop)."""

    def __init__(self, b2bua: B2bua, a: Call) -> None:
        self.b2bua = b2bua
        self.a = a
        self.b: Call | None = None
        self.outcome: int | None = None  # leg A's final: 200 once connected, else the failure

    async def run(self) -> None:
        """Bridge until both legs are over, then release them (session first, dialog second)."""
        a = self.a
        try:
            await self._run()
        except Exception as exc:
            log.error("bridge failed", call_id=a.call_id, error=repr(exc))  # noqa: TRY400 - no exception() in the facade
            for leg in (a, self.b):
                if leg is not None and leg.state is not InviteState.DISCONNECTED:
                    with contextlib.suppress(CallError, LocalProtocolError, TimeoutError):
                        async with asyncio.timeout(40):
                            await leg.hangup(500)
        finally:
            await self.close()

    async def _run(self) -> None:
        a, ua = self.a, self.b2bua.outbound
        request = a.request
        try:
            self.b = b = await ua.call(
                self.b2bua.target_for(request),
                sdp=a.remote_offer,
                from_=str(request.from_.uri) if request is not None and request.from_ is not None else None,
                display_name=request.from_.display_name if request is not None and request.from_ else None,
                on_offer=self._offer_from_b,
            )
        except CallError as exc:  # leg B's host does not resolve, say
            self.outcome = map_failure(exc.cause)
            await a.reject(self.outcome, exc.reason or None)
            return
        a.on_offer = self._offer_from_a
        a.on_request = self._relay_request(b)
        b.on_request = self._relay_request(a)
        watcher = asyncio.get_running_loop().create_task(self._watch_a(b))
        try:
            await self._follow_b(b)
        finally:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _follow_b(self, b: Call) -> None:
        """Leg B's progress, answer and end, carried to leg A."""
        a = self.a
        async for event in b.events():
            if isinstance(event, ProgressReceived) and a.state in _RINGING:
                code = event.response.status_code
                with contextlib.suppress(LocalProtocolError):
                    await a.ring(code if code != 100 else 180, sdp=_early_sdp(event.response.body))
            elif isinstance(event, StateChanged) and event.new is InviteState.CONFIRMED:
                if a.state in _RINGING:
                    await self._connect(b)
            elif isinstance(event, CallEnded):
                if a.state in _RINGING:
                    self.outcome = map_failure(event.cause)
                    reason = event.response.reason if event.response is not None else None
                    with contextlib.suppress(LocalProtocolError):
                        await a.reject(self.outcome, reason)
                elif a.state is not InviteState.DISCONNECTED:
                    with contextlib.suppress(CallError, LocalProtocolError):
                        await a.hangup()
                return

    async def _connect(self, b: Call) -> None:
        """Leg B answered: leg A gets its answer (the SDP leg B agreed)."""
        a = self.a
        if b.media is None:  # leg B's 2xx answered nothing usable: it is ending (488)
            return
        try:
            await a.answer(200, sdp=b.media.remote)
            self.outcome = 200
        except LocalProtocolError:  # leg A went away meanwhile (CANCEL): leg B goes too
            with contextlib.suppress(CallError, LocalProtocolError):
                await b.hangup()

    async def _watch_a(self, b: Call) -> None:
        """Leg A's end (CANCEL or BYE) ends leg B: CANCEL while it rings, else BYE."""
        async for event in self.a.events():
            if isinstance(event, CallEnded) and b.state is not InviteState.DISCONNECTED:
                with contextlib.suppress(CallError, LocalProtocolError):
                    await b.hangup()

    # -- offers inside the call --------------------------------------------------------------

    async def _offer_from_a(self, a: Call, offer: OfferArrived) -> SessionDescription | Reject | None:
        b = self.b
        if b is None:
            return Reject(500)
        return await self._relay_offer(offer, b)

    async def _offer_from_b(self, b: Call, offer: OfferArrived) -> SessionDescription | Reject | None:
        a = self.a
        if offer.kind is OfferKind.ACK:
            # Leg B's offer in its 2xx to our INVITE without SDP: it is leg A's 2xx offer, and
            # leg A's answer (in its ACK) is ours, in leg B's ACK.
            if offer.sdp is None or a.state not in _RINGING:
                return Reject(488)
            await a.answer(200, sdp=offer.sdp)
            self.outcome = 200
            await a.wait_for(InviteState.CONFIRMED, timeout=None)
            return a.media.remote if a.media is not None else Reject(488)
        return await self._relay_offer(offer, a)

    @staticmethod
    async def _relay_offer(offer: OfferArrived, other: Call) -> SessionDescription | Reject | None:
        """One leg's offer, asked of the other leg: its answer, or its refusal."""
        if other.state is not InviteState.CONFIRMED and offer.kind is not OfferKind.UPDATE:
            return Reject(491)
        if offer.sdp is None:  # a re-INVITE without SDP: offer what the other leg last sent
            return other.media.remote if other.media is not None else Reject(488)
        try:
            if offer.kind is OfferKind.UPDATE:
                await other.update(sdp=offer.sdp)
            else:
                await other.reinvite(sdp=offer.sdp)
        except OfferRefusedError as exc:
            return Reject(exc.cause or 488, exc.reason or None)
        except LocalProtocolError:  # the other leg has an offer of its own in progress
            return Reject(491)
        return other.media.remote if other.media is not None else Reject(488)

    @staticmethod
    def _relay_request(other: Call) -> RequestHandler:
        """INFO, MESSAGE ...: sent on the other leg; its final status is ours."""

        async def relay(_: Call, request: Request) -> Reply:
            if other.state not in (InviteState.EARLY, InviteState.CONNECTING, InviteState.CONFIRMED):
                return Reply(481)
            ctype = request.content_type
            try:
                answer = await other.send_request(
                    request.method,
                    body=request.body,
                    content_type=str(ctype) if ctype is not None and request.body else None,
                )
            except (CallError, LocalProtocolError):
                return Reply(408)
            answer_type = answer.content_type
            return Reply(
                answer.status_code,
                answer.reason,
                body=answer.body,
                content_type=str(answer_type) if answer_type is not None and answer.body else None,
            )

        return relay

    async def close(self) -> None:
        """Release both legs: each Call drops its session reference, then its dialog's."""
        for leg in (self.a, self.b):
            if leg is not None:
                await leg.close()


class B2bua:
    """Bridges every incoming call to ``to``; see the module docstring."""

    def __init__(self, ua: UserAgent, to: str, *, outbound: UserAgent | None = None) -> None:
        target = parse_uri(to)
        if not isinstance(target, SipUri):
            raise ValueError(f"--to must be a sip: or sips: URI, not {to!r}")  # noqa: TRY004 - a bad value
        self.ua = ua
        #: The agent that places leg B: ``ua`` itself, or one with an address of its own (a
        #: worker sharing ``ua``'s port with others: leg B's answers and requests must reach
        #: this worker, so its Via and Contact name a port no other worker shares).
        self.outbound = outbound or ua
        self.to = target
        self.bridges: set[Bridge] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Calls bridged (200) and failed (by leg A's final code), for the operator.
        self.outcomes: Counter[int] = Counter()
        self.started = 0
        ua.on_incoming = self._accept
        if self.outbound is not ua:  # a call to leg B's address is bridged all the same
            self.outbound.on_incoming = self._accept

    @classmethod
    async def create(
        cls,
        listen: Iterable[str | ListenSpec],
        to: str,
        *,
        config: EndpointConfig | None = None,
        guard: SendGuard | None = None,
        trace: Trace | None = None,
        timer: TimerSettings | None = None,
        rel100: Rel100 | str = Rel100.OFF,
        resolver: Resolver | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        outbound: Iterable[str | ListenSpec] = (),
    ) -> B2bua:
        """A user agent without SDP of its own (every SDP is a leg's), bridging to ``to``.

        ``reuse_port``: the UDP listeners share their ports with other processes (a worker of
        ``invsess b2bua --workers N``, :mod:`invsess.aio.workers`); ``outbound``: listeners of a
        second agent of the same configuration that places every leg B (the worker's own
        port)."""
        if not isinstance(parse_uri(to), SipUri):  # before any socket is opened
            raise ValueError(f"--to must be a sip: or sips: URI, not {to!r}")  # noqa: TRY004 - a bad value
        if config is None:
            supported = option_tags(timer, rel100)
            prack = ("PRACK",) if "100rel" in supported else ()
            allow = ("INVITE", "BYE", "OPTIONS", "UPDATE", "INFO", "MESSAGE", *prack)
            accept = ("application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain")
            config = EndpointConfig(allow=allow, supported=supported, accept=accept)
        ua = await UserAgent.create(
            listen, sdp=None, user="b2bua", config=config, guard=guard, trace=trace, timer=timer,
            rel100=rel100, resolver=resolver, server_ssl=server_ssl, client_ssl=client_ssl,
            reuse_port=reuse_port,
        )  # fmt: skip
        second = None
        outbound = list(outbound)
        if outbound:
            try:
                second = await UserAgent.create(
                    outbound, sdp=None, user="b2bua", config=config, guard=guard, trace=trace,
                    timer=timer, rel100=rel100, resolver=resolver, server_ssl=server_ssl,
                    client_ssl=client_ssl,
                )  # fmt: skip
            except BaseException:
                await ua.close(timeout=0)
                raise
        return cls(ua, to, outbound=second)

    def target_for(self, request: Request | None) -> str:
        """Leg B's Request-URI: ``to``, with the caller's user part when ``to`` has none."""
        target = self.to
        if target.user is None and request is not None:
            uri = request.uri
            if isinstance(uri, SipUri) and uri.user is not None:
                return str(SipUri(target.scheme, target.host, uri.user, None, target.port, target.params))
        return str(target)

    def _accept(self, call: Call) -> None:
        bridge = Bridge(self, call)
        self.bridges.add(bridge)
        self.started += 1
        task = asyncio.get_running_loop().create_task(self._run(bridge))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, bridge: Bridge) -> None:
        try:
            await bridge.run()
        finally:
            self.bridges.discard(bridge)
            self.outcomes[bridge.outcome or 500] += 1

    @property
    def active(self) -> int:
        """Bridges in progress."""
        return len(self.bridges)

    async def close(
        self, timeout: float = 5.0, *, linger: Callable[[], Awaitable[None]] | None = None
    ) -> LeakReport:
        """Hang up what is still up, wait for the bridges to release their legs, report leaks
        (``linger``: see :meth:`UserAgent.close`)."""

        async def hang_up(leg: Call) -> None:
            with contextlib.suppress(CallError, LocalProtocolError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await leg.hangup()

        legs = [leg for b in self.bridges for leg in (b.a, b.b) if leg is not None]
        await asyncio.gather(*(hang_up(leg) for leg in legs if leg.state is not InviteState.DISCONNECTED))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        return await self._close_agents(timeout, linger)

    async def _close_agents(self, timeout: float, linger: Callable[[], Awaitable[None]] | None) -> LeakReport:
        if self.outbound is self.ua:
            return await self.ua.close(timeout=timeout, linger=linger)
        # Both at once: each lingers (its sockets open) until the other is done too.
        first, second = await asyncio.gather(
            self.ua.close(timeout=timeout, linger=linger), self.outbound.close(timeout=timeout)
        )
        # One report for both agents: what leaked in either (largest first, as each report is).
        entries = sorted((*first.entries, *second.entries), key=lambda e: -e.size)
        return LeakReport(tuple(entries), (*first.pools, *second.pools), (*first.dangling, *second.dangling))


__all__ = ["B2bua", "Bridge", "map_failure"]
