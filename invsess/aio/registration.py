"""Registration on asyncio: ``await ua.register(registrar, user, password)``.

```python
ua = await UserAgent.create(["udp:127.0.0.1:0"], sdp=my_sdp, user="alice")
reg = await ua.register("sip:127.0.0.1:5060", "alice", "secret", expires=600)
reg.expires              # what the registrar granted
async for event in reg.events():   # Registered (refreshes), RegistrationFailed, Unregistered
    ...
await reg.unregister()   # Expires: 0; ua.close() does it for every registration still up
```

:func:`register` makes a sans-IO :class:`~invsess.registration.Registration`, attaches it to the
user agent's session layer (which routes its responses and drives its refresh, retry and
keep-alive timers with the sessions'), and puts ``password`` in the layer's credential store:
calls through the same proxy answer its 401/407 with the same credentials. It returns once the
registrar's 2xx arrived, or raises :class:`RegistrationError` with the final response (the
registration is then stopped: no retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from invsess.errors import InvsessError
from invsess.registration import (
    Registered,
    Registration,
    RegistrationEvent,
    RegistrationFailed,
    RegState,
    Unregistered,
)
from invsess.routeset import parse_route_set
from invsess.sip import NameAddress, SipUri, parse_uri

if TYPE_CHECKING:
    from invsess.aio.agent import UserAgent


class RegistrationError(InvsessError):
    """The registrar refused (or never answered): ``status_code`` and ``reason`` of its final
    response (408 when nothing came)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"registration refused: {status_code} {reason}")
        self.status_code = status_code
        self.reason = reason


class AsyncRegistration:
    """A :class:`~invsess.registration.Registration` on the loop; made by :func:`register`."""

    def __init__(self, agent: UserAgent, core: Registration) -> None:
        self.agent = agent
        self.core = core
        self._queue: asyncio.Queue[RegistrationEvent] = asyncio.Queue()
        self._changed = asyncio.Event()
        self.history: list[RegistrationEvent] = []
        agent.aio.flush_hooks.append(self._drain)

    def __repr__(self) -> str:
        return f"<AsyncRegistration {self.core.aor} {self.state.name}>"

    @property
    def state(self) -> RegState:
        """Where the registration is."""
        return self.core.state

    @property
    def expires(self) -> int | None:
        """The interval the last 2xx granted."""
        return self.core.granted

    @property
    def contact(self) -> NameAddress:
        """Our Contact in the binding."""
        return self.core.contact

    def _drain(self) -> None:
        while (event := self.core.next_event()) is not None:
            self.history.append(event)
            self._queue.put_nowait(event)
            self._changed.set()

    async def _wait(self, done: set[RegState], timeout: float | None) -> None:
        async with asyncio.timeout(timeout):
            while self.core.state not in done:
                self._changed.clear()
                await self._changed.wait()

    async def wait_registered(self, timeout: float | None = 32.0) -> None:
        """Until the binding is up; raises :class:`RegistrationError` when an attempt fails."""
        async with asyncio.timeout(timeout):
            while True:
                if self.core.state in (RegState.REGISTERED, RegState.REFRESHING):
                    return
                failed = next((e for e in reversed(self.history) if isinstance(e, RegistrationFailed)), None)
                if self.core.state is RegState.FAILED and failed is not None:
                    raise RegistrationError(failed.status_code, failed.reason)
                if self.core.state is RegState.UNREGISTERED:
                    raise RegistrationError(self.core.last_status or 0, "stopped")
                self._changed.clear()
                await self._changed.wait()

    async def events(self) -> AsyncIterator[RegistrationEvent]:
        """Every event from now on (each once, whoever reads first), until Unregistered."""
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, Unregistered):
                return

    async def unregister(self, timeout: float = 5.0) -> int:
        """Remove the binding (``Expires: 0``) and detach; returns the registrar's status code
        (0: nothing had to be sent). Safe to call twice."""
        if self.core.state is not RegState.UNREGISTERED:
            self.core.stop(self.agent.now())
            self.agent.flush()
            with contextlib.suppress(TimeoutError):
                await self._wait({RegState.UNREGISTERED}, timeout)
        self.close()
        last = next((e for e in reversed(self.history) if isinstance(e, Unregistered)), None)
        return last.status_code if last is not None else 0

    def close(self) -> None:
        """Detach without unregistering (the binding is left to expire)."""
        self.core.cancel_retries()
        self.agent.layer.detach(self.core)
        if self._drain in self.agent.aio.flush_hooks:
            self.agent.aio.flush_hooks.remove(self._drain)
        if self in self.agent.registrations:
            self.agent.registrations.remove(self)


async def register(
    agent: UserAgent,
    registrar: str,
    user: str,
    password: str | None = None,
    *,
    expires: int = 3600,
    transport: str | None = None,
    route: Sequence[str | NameAddress] = (),
    aor: str | None = None,
    instance_id: str | None = None,
    keepalive: float | None = None,
    retry: bool = True,
    timeout: float = 32.0,
) -> AsyncRegistration:
    """Register ``user`` at ``registrar`` (``sip:HOST[:PORT][;transport=tcp]``, an IP address:
    nothing here resolves names) and wait for the 2xx; see the module docstring.

    ``route``: an outbound proxy / preloaded route set (``["sip:10.0.0.1:5060;lr"]``).
    ``instance_id``: RFC 5626 (``+sip.instance``, ``reg-id``, CRLF keep-alives over TCP/TLS).
    ``retry``: after a later failure (a refresh refused or unanswered), try again with back-off.
    Raises :class:`RegistrationError` when the first attempt fails (nothing is left running).
    """
    uri = parse_uri(registrar)
    if not isinstance(uri, SipUri):
        raise RegistrationError(416, f"not a sip: registrar URI: {registrar!r}")
    kind = (transport or uri.transport or "udp").lower()
    core = Registration(
        agent.endpoint,
        registrar,
        user,
        password=password,
        credentials=agent.layer.credentials,
        aor=aor,
        expires=expires,
        transport=kind,
        route=parse_route_set(route),
        instance_id=instance_id,
        keepalive=keepalive,
        retry=retry,
    )
    wrapper = AsyncRegistration(agent, core)
    agent.registrations.append(wrapper)
    agent.layer.attach(core)
    core.start(agent.now())
    agent.flush()
    try:
        await wrapper.wait_registered(timeout)
    except (RegistrationError, TimeoutError) as exc:
        core.cancel_retries()
        core.stop(agent.now())  # sends Expires: 0 only if a binding of ours may exist
        agent.flush()
        wrapper.close()
        if isinstance(exc, TimeoutError):
            raise RegistrationError(408, "no answer from the registrar") from None
        raise
    return wrapper


__all__ = ["AsyncRegistration", "Registered", "RegistrationError", "register"]
