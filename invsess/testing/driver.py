"""Drive user agents' events in a test: answer incoming calls, record every state change.

A :class:`~invsess.inv.SessionLayer` only queues its events; something must read them (and
read *past* a DISCONNECTED event: that is when the layer drops the session's references). A test
that writes that loop by hand usually gets one of three things wrong: it reads too rarely (the
answer goes out late), it stops at the DISCONNECTED event (the session then "leaks"), or it
keeps the event's session to read it later (freed memory, under MALLOC_DEBUG an error).
:class:`CallDriver` is that loop, done once:

```python
driver = CallDriver(sip_network, [alice, bob])   # or the plugin's ``call_driver`` fixture
driver.answer(bob, 180, 200)                     # bob rings, then answers, every call
call = alice.invite("sip:bob@127.0.0.2:5060", destination=("127.0.0.2", 5060), now=driver.now)
driver.run(1.0)                                  # the network runs, the events are read
assert driver.states(call) == [CALLING, EARLY, CONNECTING, CONFIRMED]
alice.hangup(call, driver.now)
driver.settle()                                  # until nothing is pending; releases done
```

It records plain values (Call-ID, states, causes), never the sessions themselves, so what it
recorded stays readable after the sessions are freed. Sans-IO: it only calls the network's
``run_until``/``step`` and the layers' ``next_event``/``answer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs

from invsess.inv import (
    ForkedCall,
    IncomingCall,
    InviteSession,
    InviteState,
    MediaUpdated,
    SessionEvent,
    SessionLayer,
    SessionStateChanged,
)
from invsess.sip import make_response
from invsess.testing.loopback import LoopbackNetwork
from invsess.testing.network import SimNetwork
from invsess.transaction import RequestReceived

#: What to do with an incoming call: called with the layer, the new session and the time.
IncomingPolicy = Callable[[SessionLayer, InviteSession, float], None]
#: Something that sees every event as it is read: the layer, the event and the time.
Watcher = Callable[[SessionLayer, SessionEvent, float], None]

#: On real sockets, how often (seconds) events are read while the network runs.
_LOOPBACK_SLICE = 0.01


@attrs.define
class CallRecord:
    """What happened to one session, as plain values (readable after the session is freed)."""

    call_id: str
    role: str
    states: list[InviteState]
    cause: int | None = None
    media: list[str] = attrs.field(factory=list)  # the direction agreed at each MediaUpdated
    released: bool = False  # the layer has dropped its references (the event after DISCONNECTED was read)


class CallDriver:
    """Reads the events of ``layers`` while ``network`` runs; answers and records (see the module
    docstring). ``layers`` may be a callable returning them, so agents made later are driven too."""

    def __init__(
        self, network: SimNetwork, layers: Iterable[SessionLayer] | Callable[[], Iterable[SessionLayer]]
    ) -> None:
        self.network = network
        self._layers = layers
        self._policies: dict[int, IncomingPolicy] = {}
        self._watchers: list[Watcher] = []
        #: Every session seen, by Call-ID and role ("UAC" or "UAS"), oldest first.
        self.calls: list[CallRecord] = []
        #: Out-of-dialog requests the layers passed up (OPTIONS, ...), answered 200 by the driver.
        self.requests: list[str] = []
        self._records: dict[tuple[str, str, int], CallRecord] = {}
        self._pending: list[tuple[SessionLayer, CallRecord]] = []

    # -- configuring -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The network's clock."""
        return self.network.now

    def layers(self) -> list[SessionLayer]:
        """The layers driven now."""
        layers = self._layers() if callable(self._layers) else self._layers
        return list(layers)

    def answer(self, layer: SessionLayer, *codes: int) -> None:
        """``layer`` answers every incoming call with ``codes`` in turn, at once (e.g. 180, 200;
        or 486 to reject). With no codes, incoming calls are left ringing for the test to answer."""
        for code in codes:
            if not 100 <= code < 700:
                raise ValueError(f"{code} is not a status code")

        def policy(layer: SessionLayer, session: InviteSession, now: float) -> None:
            for code in codes:
                if session.state not in (InviteState.INCOMING, InviteState.EARLY):
                    break  # cancelled meanwhile, or already answered
                layer.answer(session, code, now)

        self.on_incoming(layer, policy)

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(layer, event, now)`` for every event read, before the driver acts on it
        (the event's messages and session are valid during the call, not after)."""
        self._watchers.append(watcher)

    def on_incoming(self, layer: SessionLayer, policy: IncomingPolicy) -> None:
        """Call ``policy(layer, session, now)`` for each call ``layer`` receives."""
        self._policies[id(layer)] = policy

    # -- reading what happened -------------------------------------------------------------

    def record(self, session: InviteSession | str, role: str | None = None) -> CallRecord:
        """The record of a session (pass the session while it is alive, or its Call-ID; with a
        Call-ID both ends of a call may be recorded: ``role`` "UAC" or "UAS" picks one)."""
        if isinstance(session, str):
            found = [r for r in self.calls if r.call_id == session and role in (None, r.role)]
            if len(found) != 1:
                raise KeyError(f"{len(found)} records for Call-ID {session!r} (role {role}); pass role=")
            return found[0]
        # The caller holds ``session``, so no live object shares its id; the newest record with
        # that id is its own (older ones belong to objects that are gone). Nothing of the
        # session is read: it may be freed memory by now.
        for (_, _, ident), rec in reversed(self._records.items()):
            if ident == id(session):
                return rec
        raise KeyError(f"no record of {session!r}: was it made by a driven layer?")

    def states(self, session: InviteSession | str, role: str | None = None) -> list[InviteState]:
        """Every state the session went through, from its first one (CALLING or INCOMING)."""
        return list(self.record(session, role).states)

    # -- running ---------------------------------------------------------------------------

    def pump(self) -> int:
        """Read every event the layers queued (answering and recording); returns how many."""
        count = 0
        progress = True
        while progress:
            progress = False
            for layer in self.layers():
                while (event := layer.next_event()) is not None:
                    count += 1
                    progress = True
                    self._on_event(layer, event)
                self._mark_released(layer)
        return count

    def run(self, seconds: float) -> None:
        """Run the network ``seconds`` on, reading the events after every step."""
        self.run_until(self.network.now + seconds)

    def run_until(self, until: float) -> None:
        """Run the network until ``until``, reading the events after every step."""
        net = self.network
        self.pump()
        if isinstance(net, LoopbackNetwork):
            while net.now < until:
                net.run_until(min(until, net.now + _LOOPBACK_SLICE))
                self.pump()
            return
        while (when := net.next_time()) is not None and when <= until:
            net.run_until(when)
            self.pump()
        net.run_until(until)
        self.pump()

    def settle(self, limit: float = 3600.0) -> None:
        """Run until nothing is pending (every transaction ended: the dialogs' pools are
        released then, not at the BYE), reading the events throughout."""
        net = self.network
        end = net.now + limit
        self.pump()
        while net.now <= end and net.step():
            self.pump()
        self.pump()

    # -- inside ----------------------------------------------------------------------------

    def _on_event(self, layer: SessionLayer, event: SessionEvent) -> None:
        now = self.network.now
        for watcher in self._watchers:
            watcher(layer, event, now)
        if isinstance(event, IncomingCall):
            self._record_of(event.session)
            policy = self._policies.get(id(layer))
            if policy is not None:
                policy(layer, event.session, now)
        elif isinstance(event, ForkedCall):
            self._record_of(event.session)
        elif isinstance(event, SessionStateChanged):
            record = self._record_of(event.session)
            if not record.states or record.states[-1] is not event.new:
                record.states.append(event.new)
            if event.new is InviteState.DISCONNECTED:
                record.cause = event.cause
                # Its references go at the layer's next next_event() call: the pump makes it.
                self._pending.append((layer, record))
        elif isinstance(event, MediaUpdated):
            media = event.local.media
            self._record_of(event.session).media.append(media[0].direction if media else "none")
        elif isinstance(event, RequestReceived):  # out of dialog (OPTIONS, ...): answer it
            self.requests.append(event.request.start_line())
            response = make_response(event.request, 200, to_tag=layer.endpoint.new_tag())
            layer.endpoint.respond(event.transaction, response, now)

    def _record_of(self, session: InviteSession) -> CallRecord:
        key = (session.call_id, session.role.name, id(session))
        record = self._records.get(key)
        if record is None:
            state = session.state
            record = CallRecord(
                session.call_id, session.role.name, [] if state is InviteState.NULL else [state]
            )
            self._records[key] = record
            self.calls.append(record)
        return record

    def _mark_released(self, layer: SessionLayer) -> None:
        still: list[tuple[SessionLayer, CallRecord]] = []
        for owner, record in self._pending:
            if owner is layer:
                record.released = True
            else:
                still.append((owner, record))
        self._pending = still


def states_named(states: Sequence[InviteState]) -> list[str]:
    """``[CALLING, EARLY]`` as ``["CALLING", "EARLY"]`` (for messages)."""
    return [s.name for s in states]


__all__ = ["CallDriver", "CallRecord", "IncomingPolicy", "Watcher", "states_named"]
