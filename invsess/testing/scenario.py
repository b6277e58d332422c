"""Scripting one side of a call flow by hand: send this, expect that (SIPp's idea, in Python).

A :class:`ScriptedPeer` sits on the :class:`~invsess.testing.SimNetwork` like an endpoint, but
does nothing by itself: the test sends raw messages (templates filled with fresh branches,
tags and Call-IDs) and states what it expects back. A failed expectation raises an
``AssertionError`` that shows what did arrive and the ladder of the whole exchange.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from invsess.address import Address, format_address
from invsess.memory import LeakReport
from invsess.sip import ParseError, Request, Response, parse_message
from invsess.testing.network import SimNetwork
from invsess.transaction import Outgoing

Message = Request | Response

_counter = itertools.count(1)


class ScriptedPeer:
    """A hand-driven SIP peer at ``address`` on ``network``."""

    def __init__(self, network: SimNetwork, address: Address, *, name: str = "peer") -> None:
        self.network = network
        self.address = address
        self.name = name
        self._outbox: list[Outgoing] = []
        self._inbox: list[tuple[float, Message]] = []
        self.received: list[tuple[float, Message]] = []  # everything, in order, for reports
        network.attach(self, address)

    # -- the node interface the network drives -------------------------------------------------

    def add_listener(self, transport: str, address: Address) -> None:
        """Nothing to do: a scripted peer is where the network says it is."""

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """Keep what arrives (unparsable bytes are kept as a failed expectation's evidence)."""
        try:
            message = parse_message(data)
        except ParseError:
            return
        self._inbox.append((now, message))
        self.received.append((now, message))

    def datagrams_to_send(self) -> list[Outgoing]:
        """What the script sent since the network last asked."""
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        """A scripted peer has no timers."""
        return None

    def handle_timers(self, now: float) -> None:
        """A scripted peer has no timers."""

    def next_event(self) -> Message | None:
        """A scripted peer reports nothing by itself: the script reads with :meth:`expect`."""
        return None

    def close(self, now: float = 0.0) -> LeakReport:
        """Nothing to end: a scripted peer holds no pools (its report is empty)."""
        return LeakReport((), ())

    def transport_error(self, destination: Address, transport: str, now: float, *, reason: str = "") -> None:
        """Nothing to end: a scripted peer keeps no transactions."""

    # -- scripting ---------------------------------------------------------------------------

    def fill(self, template: str, **values: object) -> bytes:
        """Fill ``{branch}``, ``{tag}``, ``{call_id}``, ``{local}`` (host:port) and any ``values``.

        Line ends become CRLF and Content-Length is computed when the template says
        ``{content_length}``.
        """
        n = next(_counter)
        host, port = self.address
        fields: dict[str, object] = {
            "branch": f"z9hG4bKscript{n}",
            "tag": f"{self.name}-tag-{n}",
            "call_id": f"{self.name}-call-{n}@{host}",
            "local": f"{host}:{port}",
            "content_length": 0,
            **values,
        }
        text = template.replace("\r\n", "\n").replace("\n", "\r\n")
        head, sep, body = text.partition("\r\n\r\n")
        fields["content_length"] = (
            len(body.encode()) if "content_length" not in values else values["content_length"]
        )
        return (head.format(**fields) + sep + body).encode()

    def send(
        self,
        message: bytes | str | Message,
        destination: Address,
        /,
        *,
        transport: str = "udp",
        **values: object,
    ) -> bytes:
        """Send a message to ``destination`` (a template string is filled first with ``values``,
        which may be named anything, ``to`` included); returns the bytes sent."""
        if isinstance(message, Request | Response):
            data = message.serialize()
        elif isinstance(message, str):
            data = self.fill(message, **values)
        else:
            data = message
        self._outbox.append(Outgoing(data, destination, transport))
        return data

    def expect(
        self,
        *,
        status: int | None = None,
        method: str | None = None,
        within: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> Message:
        """Run the network until a matching message arrives here (earlier ones are skipped)."""
        wanted = _describe(status, method)
        deadline = self.network.now + within
        while True:
            while self._inbox:
                _, message = self._inbox.pop(0)
                if _matches(message, status, method) and (where is None or where(message)):
                    return message
            if self.network.now >= deadline or not self._step(deadline):
                raise AssertionError(self._report(f"expected {wanted} within {within} s"))

    def expect_nothing(self, within: float = 1.0) -> None:
        """Run the network for ``within`` seconds; fail if anything arrives here."""
        self.network.run_until(self.network.now + within)
        if self._inbox:
            raise AssertionError(self._report(f"expected nothing within {within} s"))

    def _step(self, deadline: float) -> bool:
        self.network.flush()
        when = self.network.next_time()
        if when is None or when > deadline:
            self.network.run_until(deadline)
            return bool(self._inbox)
        return self.network.step()

    def _report(self, what: str) -> str:
        got = "\n".join(f"  {t:8.3f} {m.start_line()}" for t, m in self.received) or "  (nothing)"
        where = format_address(self.address)
        return f"{self.name} at {where}: {what}\nreceived:\n{got}\n\nladder:\n{self.network.ladder()}"


def _describe(status: int | None, method: str | None) -> str:
    if status is not None:
        return f"a {status} response"
    if method is not None:
        return f"a {method} request"
    return "any message"


def _matches(message: Message, status: int | None, method: str | None) -> bool:
    if status is not None:
        return isinstance(message, Response) and message.status_code == status
    if method is not None:
        return isinstance(message, Request) and message.method == method
    return True
