"""The sans-IO endpoint: bytes, addresses and time in; bytes, deadlines and events out.

Driven the way aioquic's connection is: the driver calls :meth:`Endpoint.receive` with each
datagram or framed stream message and the current time, sends what
:meth:`Endpoint.datagrams_to_send` returns, re-arms one timer at :meth:`Endpoint.next_deadline`
and calls :meth:`Endpoint.handle_timers`. The application pulls events with
:meth:`Endpoint.next_event`.

Memory: every received message is parsed into a pool of its own. A request that starts a
server transaction hands its pool to the transaction; a response delivered to a client
transaction is kept by it until the next response or its end; a message carried by a
transaction-less event lives until the following :meth:`next_event` call; everything else is
released before :meth:`receive` returns. Never sends to an address it was not given or told by
the message itself (RFC 3261 §18.2.2); the transports add a send guard on top.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
from collections import Counter, deque
from typing import Any, Protocol

import attrs

from invsess.address import Address, uri_host
from invsess.counters import (
    CounterGroup,
    Counters,
    MemoryGroup,
    MessageCounters,
    ProvidedGroup,
    TransactionCounters,
    retransmission_counters,
)
from invsess.endpoint.config import KNOWN_METHODS, EndpointConfig
from invsess.endpoint.limits import LimitsGroup, LimitStats, Rejection
from invsess.endpoint.overload import Kind, SourceRateLimiter, call_id_of, classify
from invsess.endpoint.routing import response_destination, stamp_via
from invsess.logs import get_logger
from invsess.memory import LeakReport, Pool, PoolExhaustedError, PoolFactory
from invsess.sip import (
    Check,
    LocalProtocolError,
    ParseError,
    Request,
    Response,
    Via,
    check_request,
    make_response,
    parse_message,
    response_for,
    salvage_request,
)
from invsess.transaction import (
    MAGIC_COOKIE,
    TRANSPORT_ERROR,
    AckReceived,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Event,
    Outgoing,
    RequestReceived,
    ServerInviteState,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    Transaction,
    TransactionKey,
    TransactionTerminated,
)
from invsess.transaction.base import is_rfc3261_branch

ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction
_COOKIE_LENGTH = len(MAGIC_COOKIE)
#: Client transaction states in which the final answer has not come yet.
_AWAITING_ANSWER = frozenset({"CALLING", "TRYING", "PROCEEDING"})


@attrs.frozen
class CancelReceived:
    """A CANCEL matched a pending INVITE; the endpoint answered the CANCEL with 200.

    The application ends the INVITE (487) with :meth:`Endpoint.respond` on ``invite``.
    """

    invite: ServerInviteTransaction
    request: Request


AnyEvent = Event | CancelReceived


class ScreenAnswer(Protocol):
    """How a :class:`RequestScreen` refuses a request: answered statelessly with these."""

    @property
    def status_code(self) -> int:
        """The response's code."""

    @property
    def headers(self) -> tuple[tuple[str, object], ...]:
        """Added to the response (the challenge)."""

    @property
    def reason(self) -> str | None:
        """The reason phrase (None: the standard one)."""

    @property
    def why(self) -> str:
        """What went wrong, for the log."""


class RequestScreen(Protocol):
    """Consulted for each new request before a transaction is made for it (a
    :class:`~invsess.auth.DigestAuthenticator` is one): None lets it through; an answer is sent
    statelessly, and nothing is allocated for the request."""

    def screen(self, request: Request, source: Address, now: float) -> ScreenAnswer | None:
        """The stateless answer ``request`` gets, or None."""


class Endpoint:
    """One SIP endpoint's transaction layer; see the module docstring."""

    def __init__(
        self,
        config: EndpointConfig | None = None,
        *,
        factory: PoolFactory | None = None,
        logger: Any = None,
        authenticator: RequestScreen | None = None,
    ) -> None:
        self.config = config or EndpointConfig()
        #: Screens new requests before any transaction exists for them (digest authentication:
        #: a request without valid credentials gets a stateless 401/407). None: every request is
        #: let through.
        self.authenticator = authenticator
        self.factory = factory or PoolFactory(
            total_size=self.config.total_memory, malloc_debug=self.config.malloc_debug
        )
        #: A logger that does no I/O of its own (h2's rule); silent until structlog is configured.
        self.log = logger if logger is not None else get_logger("invsess.endpoint")
        # Not for secrets: tags and branches need uniqueness (RFC 3261 §19.3), and a fixed seed
        # makes a test's trace reproducible; with no seed, Random() seeds from os.urandom.
        self._random = random.Random(self.config.seed)  # noqa: S311
        self._listeners: dict[str, Address] = {}
        self._server: dict[TransactionKey, ServerTransaction[Any]] = {}
        self._client: dict[TransactionKey, ClientTransaction] = {}
        self._merge: dict[MergeKey, ServerTransaction[Any]] = {}
        self._heap: list[tuple[float, int, Transaction[Any]]] = []
        self._heap_serial = 0
        self._out: list[Outgoing] = []
        self._events: deque[tuple[AnyEvent, Pool | None]] = deque()
        self._event_pool: Pool | None = None
        self._handed_on: Pool | None = None  # the rx pool a transaction or an event took over
        self._dialogs: set[tuple[str, str, str]] = set()
        # Live calls, counted here so the limit is checked before the session layer sees an
        # INVITE: by Call-ID, each registered dialog or initial INVITE under way counting once
        # for it (a UAS's INVITE and the dialog it makes are one call, and so are the forks of
        # ours). The Call-ID strings are the dialogs' own: no key object per call.
        self._calls: Counter[str] = Counter()
        self._call_of_tx: dict[TransactionKey, str] = {}
        # Server transactions still waiting for their final answer: the work max_transactions
        # limits. One that has answered only absorbs retransmissions until Timer I/J/L (up to
        # 32 s): counting those would refuse calls at a steady ~140 calls/s with the default
        # limit, with nothing at all in progress.
        self._answering = 0
        self._rate = SourceRateLimiter(self.config.rate_limit) if self.config.rate_limit else None
        self._rate_now = 0.0  # the time of the last rate check, for the blocked_sources gauge
        self._driver_admits: set[str] = set()  # transports whose driver calls admit() itself
        #: Counters: stray responses and ACKs, parse failures, stateless answers by code, ...
        self.stats: Counter[str] = Counter()
        #: Every limit's current value, maximum and rejections (docs/hardening.md).
        self.limit_stats = LimitStats()
        self.limit_stats.gauge("transactions", lambda: self._answering, self.config.max_transactions)
        self.limit_stats.gauge("client_transactions", lambda: len(self._client))
        self.limit_stats.gauge("calls", lambda: len(self._calls), self.config.max_calls)
        self.limit_stats.gauge("blocked_sources", self._blocked_sources)
        #: The statistics groups (Kamailio-shaped and Prometheus), kept as things happen; the
        #: groups the endpoint updates itself are also attributes: ``messages`` (``core``),
        #: ``retransmissions``, ``tx_counters`` (``tm``), ``sanity_failures``; ``limits``
        #: is ``limit_stats``. See docs/monitoring.md.
        self.counters = Counters()
        self.counters.add(MemoryGroup(self.factory))
        self.messages = self.counters.add(MessageCounters(KNOWN_METHODS, self.stats))
        self.retransmissions = self.counters.add(retransmission_counters())
        self.tx_counters = self.counters.add(TransactionCounters(self.retransmissions))
        self.sanity_failures = self.counters.add(
            CounterGroup(
                "sanity",
                prefix="failed_",
                metric="invsess_sanity_failures",
                label="check",
                documentation="Requests refused by a sanity check (or not parsable at all)",
                keys=[*(check.name.lower() for check in Check if check.name), "unparsable"],
            )
        )
        self.counters.add(LimitsGroup(self.limit_stats))
        self.counters.add(
            ProvidedGroup(
                "endpoint",
                lambda: {key.replace(":", "").replace(" ", "_"): n for key, n in self.stats.items()},
                metric="invsess_endpoint_events",
                label="event",
                documentation="What the endpoint did by itself (absorbed, stray, stateless answers)",
                kind="counter",
            )
        )

    # -- configuration by the driver ---------------------------------------------------------

    def add_listener(self, transport: str, address: Address) -> None:
        """Tell the endpoint where it listens, for the Via and Contact of what it sends."""
        self._listeners[transport.lower()] = address

    @property
    def listeners(self) -> dict[str, Address]:
        """Transport -> local address."""
        return dict(self._listeners)

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch (seeded: reproducible under a fixed seed)."""
        return f"{MAGIC_COOKIE}{self._random.getrandbits(64):016x}"

    def new_tag(self) -> str:
        """A fresh From/To tag."""
        return f"{self._random.getrandbits(48):012x}"

    def via(self, transport: str = "udp") -> Via:
        """A Via for a new request over ``transport``: our address, a new branch, ``rport``."""
        host, port = self._local(transport)
        return Via(transport.upper(), uri_host(host), port, (("branch", self.new_branch()), ("rport", None)))

    def _local(self, transport: str) -> Address:
        try:
            return self._listeners[transport.lower()]
        except KeyError:
            raise LocalProtocolError(f"no {transport} listener: call add_listener first") from None

    # -- the sans-IO interface ---------------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        """Everything queued for sending since the last call, in order."""
        out, self._out = self._out, []
        sent = self.messages.sent
        for item in out:
            sent(item.data)
        return out

    def next_event(self) -> AnyEvent | None:
        """The next event, or None.

        A received response or ACK carried by an event is valid until the following call (under
        MALLOC_DEBUG, a touch after that fails); a ``RequestReceived`` request lives as long as
        its transaction.
        """
        if self._event_pool is not None:
            self._event_pool.release("event consumed")
            self._event_pool = None
        if not self._events:
            return None
        event, pool = self._events.popleft()
        self._event_pool = pool
        return event

    def next_deadline(self) -> float | None:
        """The earliest timer of any transaction."""
        heap = self._heap
        while heap:
            deadline, _, tx = heap[0]
            if tx.terminated or tx.heap_deadline != deadline:
                heapq.heappop(heap)  # stale entry: the transaction moved on
                continue
            return deadline
        return None

    def handle_timers(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, tx = heapq.heappop(heap)
            if tx.terminated or tx.heap_deadline != deadline:
                continue  # stale entry: the transaction moved on
            tx.heap_deadline = None  # its entry is gone
            tx.handle_timers(now)
            self._touch(tx)

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """Feed one datagram, or one message cut from a stream by the framer."""
        transport = transport.lower()
        if (
            self._rate is not None
            and transport not in self._driver_admits
            and not self.admit(data, source, now)
        ):
            return
        try:
            pool = self.factory.create_pool(
                "rx-msg", 2048, 2048, max_size=4 * self.config.limits.max_message_size
            )
        except PoolExhaustedError:
            self.stats["dropped: out of memory"] += 1
            self.limit_stats.reject(Rejection.MEMORY)
            return
        self._handed_on = None
        try:
            self._receive(pool, data, source, transport, now)
        except PoolExhaustedError:
            self.stats["dropped: pool exhausted"] += 1
            self.limit_stats.reject(Rejection.MEMORY)
        finally:
            # Ownership is tracked where it moves, not by return values: even an unexpected
            # exception must neither leak this pool nor free one a transaction now owns.
            if self._handed_on is not pool:
                pool.release("message handled")

    def send_request(
        self, request: Request, destination: Address, transport: str, now: float
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` (its top Via must carry a new branch)."""
        if request.method == "ACK":
            raise LocalProtocolError("an ACK is not a transaction: use send_stateless")
        top = request.top_via
        if top is None or not is_rfc3261_branch(top.branch) or request.cseq is None:
            raise LocalProtocolError("a request needs a top Via with an RFC 3261 branch, and a CSeq")
        transport = transport.lower()
        if (
            transport == "udp"
            and "tcp" in self._listeners
            and len(request.serialize()) > self.config.udp_mtu_limit
        ):
            # §18.1.1: too big for a datagram without fragmentation: the same request over TCP.
            host, port = self._listeners["tcp"]
            request.headers.remove_first("Via")
            request.headers.prepend("Via", attrs.evolve(top, transport="TCP", host=uri_host(host), port=port))
            transport = "tcp"
            self.stats["requests moved to tcp"] += 1
        key = TransactionKey(top.branch or "", "", request.cseq.method)
        if key in self._client:
            raise LocalProtocolError(f"branch {top.branch} is already in use")
        self._stamp(request)
        pool = self.factory.create_pool(f"tsx-c-{top.branch}", 2048, 2048)
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        tx = cls(
            key,
            request,
            pool=pool,
            transport=transport,
            peer=destination,
            timers=self.config.timers,
            now=now,
            sink=self._queue,
            on_event=self._on_tx_event,
            observer=self.tx_counters,
        )
        self._client[key] = tx
        tx.start(now)
        self._touch(tx)
        if request.method == "CANCEL":
            # RFC 3261 §9.1: the INVITE it cancels (same branch) is given up 64*T1 from now
            # unless a final response comes.
            invite = self._client.get(TransactionKey(key.branch, "", "INVITE"))
            if isinstance(invite, ClientInviteTransaction):
                invite.cancelled(now)
                self._touch(invite)
        return tx

    def send_stateless(self, message: Request | Response, destination: Address, transport: str) -> None:
        """Send without a transaction (an ACK for a 2xx, a 2xx retransmitted by a session)."""
        self._stamp(message)
        self._out.append(Outgoing(message.serialize(), destination, transport.lower()))

    def send_stateless_bytes(self, data: bytes, destination: Address, transport: str) -> None:
        """Send bytes serialised before (an ACK or 2xx retransmitted by a session)."""
        self._out.append(Outgoing(data, destination, transport.lower()))

    def respond(self, transaction: ServerTransaction[Any], response: Response, now: float) -> None:
        """Send a response through a server transaction."""
        if transaction.terminated:
            raise LocalProtocolError(f"{transaction!r} is terminated")
        self._stamp(response)
        answered = transaction.answered
        transaction.respond(response, now)
        if not answered and transaction.answered:
            self._end_answering(transaction)
        self._touch(transaction)

    def transactions(self) -> list[Transaction[Any]]:
        """Every live transaction."""
        return [*self._server.values(), *self._client.values()]

    def awaiting_answers(self) -> list[ClientTransaction]:
        """Client transactions whose final answer has not come yet (what a shutdown waits for)."""
        return [tx for tx in self._client.values() if tx.state.name in _AWAITING_ANSWER]

    def transport_error(
        self, destination: Address, transport: str, now: float = 0.0, *, reason: str = TRANSPORT_ERROR
    ) -> None:
        """A send to ``destination`` failed (refused by the send guard, a name nothing here
        resolves, a TCP connection refused or lost): end the transactions talking to it, as RFC
        3261 §8.1.3.1 says, each with a TransactionTerminated whose reason starts with
        "transport error" (``reason`` says what failed). ``now`` is the node interface's."""
        for tx in self.transactions():
            peer = tx.response_destination if isinstance(tx, ServerTransaction) else tx.peer
            if peer == destination and tx.transport == transport.lower():
                tx.transport_error(reason)
                self._touch(tx)

    def register_dialog(self, dialog_id: tuple[str, str, str]) -> None:
        """Let in-dialog requests for (Call-ID, local tag, remote tag) through (else 481).

        A registered dialog is a live call for ``max_calls`` until it is unregistered."""
        if dialog_id not in self._dialogs:
            self._dialogs.add(dialog_id)
            self._count_call(dialog_id[0], 1)

    def unregister_dialog(self, dialog_id: tuple[str, str, str]) -> None:
        """In-dialog requests for this dialog get 481 again."""
        if dialog_id in self._dialogs:
            self._dialogs.discard(dialog_id)
            self._count_call(dialog_id[0], -1)

    @property
    def calls(self) -> int:
        """Live calls: registered dialogs, plus initial INVITEs not answered with a final
        response yet (what ``max_calls`` limits)."""
        return len(self._calls)

    def admit(self, data: bytes, source: Address, now: float) -> bool:
        """The per-source rate (``rate_limit``, Kamailio's pike), before a message costs a pool
        or a parse: counts a request outside any dialog against its source, and says False
        when the message must be ignored (its source is over its rate; counted as rejected).

        :meth:`receive` calls it, unless the driver declared with :meth:`driver_admits` that it
        calls it itself as it reads (so that a flood is counted as it arrives, not as it is
        served, and dropped before it takes a place in the driver's queue)."""
        limiter = self._rate
        if limiter is None:
            return True
        host = source[0]
        self._rate_now = now
        kind = classify(data)
        if kind is Kind.RESPONSE:
            return True
        if kind.rate_limited:
            if limiter.allow(host, now):
                return True
        elif not limiter.is_blocked(host, now) or self._live_call(data):
            return True  # a blocked source's own live calls still go on
        self.limit_stats.reject(Rejection.RATE)
        return False

    def driver_admits(self, transport: str) -> None:
        """The driver calls :meth:`admit` itself for messages over ``transport`` (the asyncio
        UDP reader does, as it reads); :meth:`receive` then does not count them again."""
        self._driver_admits.add(transport.lower())

    def shed(self, data: bytes, source: Address, transport: str, now: float) -> None:
        """New work the driver has no time for (its reader is behind): answered 503 with
        Retry-After from the start line and headers alone (no transaction, no parse of the
        body), or ignored when its source is over its rate or nothing can be answered."""
        transport = transport.lower()
        limiter = self._rate
        if limiter is not None:
            if transport in self._driver_admits:  # counted as it was read: only look now
                if limiter.is_blocked(source[0], now) and not self._live_call(data):
                    self.limit_stats.reject(Rejection.RATE)
                    return
            elif not self.admit(data, source, now):
                return
        self.limit_stats.reject(Rejection.SHED)
        salvaged = salvage_request(data, limits=self.config.limits)
        if salvaged is None or salvaged.method in ("ACK", "CANCEL") or "Via" not in salvaged.headers:
            return
        with contextlib.suppress(ParseError):
            stamp_via(salvaged, source)
        retry = [("Retry-After", str(self.config.retry_after))]
        self._stateless(
            salvaged,
            make_response(salvaged, 503, to_tag=self.new_tag(), headers=retry),
            source,
            transport.lower(),
        )

    def answer_unparsable(self, data: bytes, error: ParseError, source: Address, transport: str) -> None:
        """Answer a message the driver could not even frame (``error`` says how: 513 for one
        over ``max_message_size``), when its start line and Via are readable; else nothing."""
        self._answer_unparsable(data, error, source, transport.lower())

    def _knows_dialog(self, call_id: str, local_tag: str, remote_tag: str) -> bool:
        """A registered dialog; or one whose 2xx came without To tag (RFC 3261 §12.1.2): its
        null remote tag is filled in by the peer's first request, so any From tag may do."""
        dialogs = self._dialogs
        return (call_id, local_tag, remote_tag) in dialogs or (call_id, local_tag, "") in dialogs

    def leak_report(self) -> LeakReport:
        """Pools still alive (transactions, undelivered events): empty once idle."""
        return self.factory.leak_report()

    def terminate(self, transaction: Transaction[Any], reason: str) -> None:
        """Terminate one transaction now (its TransactionTerminated event is queued)."""
        if not transaction.terminated:
            transaction.terminate(reason)
            self._touch(transaction)

    def terminate_all(self) -> None:
        """Terminate every transaction now (their TransactionTerminated events are queued)."""
        for tx in self.transactions():
            self.terminate(tx, "endpoint closed")

    def close(self, now: float = 0.0) -> LeakReport:
        """Terminate every transaction, drop pending events, release everything; report leaks.
        (``now`` is the node interface's; ending everything needs no clock.)"""
        self.terminate_all()
        while self.next_event() is not None:
            pass
        return self.factory.leak_report()

    # -- inside ------------------------------------------------------------------------------

    def _touch(self, tx: Transaction[Any]) -> None:
        """After any call into a transaction: re-arm its timer, or forget it if it ended.

        A transaction has at most one valid heap entry, the one whose deadline is its
        ``heap_deadline``; older ones are stale and dropped when they reach the top. A message
        that leaves the deadline as it was (a retransmission absorbed, a provisional) pushes
        nothing."""
        if tx.terminated:
            self._forget(tx)
            return
        deadline = tx.next_deadline()
        if deadline != tx.heap_deadline:
            tx.heap_deadline = deadline
            if deadline is not None:
                self._heap_serial += 1
                heapq.heappush(self._heap, (deadline, self._heap_serial, tx))

    def _forget(self, tx: Transaction[Any]) -> None:
        server = isinstance(tx, ServerTransaction)
        table: dict[TransactionKey, Any] = self._server if server else self._client
        key = tx.key
        if table.get(key) is tx:
            del table[key]
            if server:
                if not tx.answered:
                    self._end_answering(tx)  # ended unanswered (a transport error, a close)
                merge_key = tx.merge_key
                if merge_key is not None and self._merge.get(merge_key) is tx:
                    del self._merge[merge_key]
            tx.pool.release(f"transaction terminated ({tx.terminated_reason})")

    def _end_answering(self, tx: ServerTransaction[Any]) -> None:
        """``tx`` has its final answer, or ended without one: it leaves max_transactions, and
        an initial INVITE's call leaves max_calls (a 2xx's call lives on as its dialog,
        register_dialog; a failure's is over). Counting either until the transaction ends
        would hold it for Timer I/J/L (up to 64*T1) after the answer: at a steady 63 calls/s,
        2,000 calls long gone would refuse the next."""
        self._answering -= 1
        call = self._call_of_tx.pop(tx.key, None)
        if call is not None:
            self._count_call(call, -1)

    def _queue(self, item: Outgoing) -> None:
        self._out.append(item)

    def _count_call(self, call_id: str, delta: int) -> None:
        calls = self._calls
        calls[call_id] += delta
        if calls[call_id] <= 0:
            del calls[call_id]

    def _blocked_sources(self) -> int:
        return 0 if self._rate is None else len(self._rate.blocked(self._rate_now))

    def _live_call(self, data: bytes) -> bool:
        call_id = call_id_of(data)
        return call_id is not None and call_id in self._calls

    def _stamp(self, message: Request | Response) -> None:
        """Our Server (responses) or User-Agent (requests) header, when configured."""
        if isinstance(message, Response):
            name, value = "Server", self.config.server
        else:
            name, value = "User-Agent", self.config.user_agent
        if value is not None and name not in message.headers:
            message.headers.add(name, value)

    def _on_tx_event(self, event: Event) -> None:
        self._events.append((event, None))

    def _attach(self, pool: Pool, message: Request | Response) -> bool:
        """Give ``pool`` to the queued event carrying ``message``: it lives until consumed."""
        for i in range(len(self._events) - 1, -1, -1):
            event, owner = self._events[i]
            carried = getattr(event, "response", None) or getattr(event, "request", None)
            if owner is None and carried is message:
                self._events[i] = (event, pool)
                self._handed_on = pool
                return True
        return False

    def _receive(self, pool: Pool, data: bytes, source: Address, transport: str, now: float) -> None:
        try:
            msg = parse_message(data, limits=self.config.limits, pool=pool)
            if isinstance(msg, Request):
                msg.parse_all()
            else:
                _ = msg.top_via, msg.cseq  # a response must at least match something
        except ParseError as exc:
            self.stats["parse errors"] += 1
            self.sanity_failures.inc("unparsable")
            self._answer_unparsable(data, exc, source, transport)
            return
        if isinstance(msg, Response):
            self._receive_response(pool, msg, now)
        else:
            self._receive_request(pool, msg, source, transport, now)

    def _answer_unparsable(self, data: bytes, exc: ParseError, source: Address, transport: str) -> None:
        salvaged = salvage_request(data, limits=self.config.limits)
        if salvaged is None or salvaged.method == "ACK" or "Via" not in salvaged.headers:
            return  # a response, or nothing readable, or no Via to answer along: dropped
        with contextlib.suppress(ParseError):  # an unreadable Via: answer the source (§18.2.2 cannot apply)
            stamp_via(salvaged, source)
        self._stateless(salvaged, make_response(salvaged, exc.status_code, exc.reason), source, transport)

    def _receive_response(self, pool: Pool, response: Response, now: float) -> None:
        top, cseq = response.top_via, response.cseq
        self.messages.received_response(response.status_code, cseq.method if cseq is not None else "")
        if top is None or cseq is None:
            self.stats["stray responses"] += 1
            return
        tx = self._client.get(TransactionKey(top.branch or "", "", cseq.method))
        if tx is None:
            self.stats["stray responses"] += 1
            return
        delivered = tx.receive(response, now)
        self._touch(tx)
        if not delivered:
            self.stats["absorbed responses"] += 1
            return
        self._attach(pool, response)

    def _server_key(self, request: Request, method: str) -> TransactionKey:
        top = request.top_via
        if top is not None:
            branch = top.branch
            if branch is not None and len(branch) > _COOKIE_LENGTH and branch.startswith(MAGIC_COOKIE):
                port = top.port
                sent_by = f"{top.host}:{port}" if port else top.host
                return TransactionKey(branch, sent_by.lower(), method)
        # RFC 2543 fallback (§17.2.3): the request's identifying fields stand in for the branch.
        from_tag = request.from_.tag if request.from_ else None
        cseq = request.cseq.number if request.cseq else 0
        # The To tag is left out: an INVITE has none, and its ACK carries the one we answered with.
        ident = f"2543|{request.uri_text}|{from_tag}|{request.call_id}|{cseq}|{top}"
        return TransactionKey(ident, "", method)

    def _receive_request(
        self, pool: Pool, request: Request, source: Address, transport: str, now: float
    ) -> None:
        stamp_via(request, source)
        self.messages.received_request(request.method)
        failure = check_request(request, self.config.checks, supported=self.config.supported)
        if failure is not None:
            self.sanity_failures.inc(failure.check.name.lower() if failure.check.name else "unknown")
            if request.method != "ACK":
                self._stateless(
                    request, response_for(request, failure, to_tag=self.new_tag()), source, transport
                )
            return
        method = request.method
        if method == "ACK":
            self._receive_ack(pool, request, source, now)
            return
        key = self._server_key(request, "INVITE" if method == "INVITE" else method)
        existing = self._server.get(key)
        if existing is not None and _cseq_number(existing.request) != _cseq_number(request):
            # The branch of a transaction we have, another CSeq: not a retransmission but a
            # broken new request (a re-INVITE re-using its INVITE's Via branch). Absorbing it
            # would leave it unanswered for ever; PJSIP answers 400 (sip_transaction.c).
            self.stats["branch reused with another CSeq"] += 1
            warning = ("Warning", '399 invsess "Retransmission with different CSeq"')
            response = make_response(request, 400, to_tag=self.new_tag(), headers=[warning])
            self._stateless(request, response, source, transport)
            return
        if existing is not None:
            existing.receive_request(request, source, now)
            self._touch(existing)
            self.stats["absorbed requests"] += 1
            return
        if method == "CANCEL":
            self._receive_cancel(pool, request, source, transport, now)
            return
        merge_key = _merge_key(request)
        answer = self._screen_new_request(request, merge_key)
        if answer is not None:
            code, reason, headers = answer
            if code == 481 and self._rate is not None:
                self._rate.penalise(source[0], now)  # a made-up dialog: counts like a new request
            self._stateless(
                request,
                make_response(request, code, reason, to_tag=self.new_tag(), headers=headers),
                source,
                transport,
            )
            return
        if self.authenticator is not None:
            refused = self.authenticator.screen(request, source, now)
            if refused is not None:
                self.stats["auth refused"] += 1
                if self.log.is_enabled_for(logging.DEBUG):
                    self.log.debug("request refused", method=method, why=refused.why, source=source[0])
                response = make_response(
                    request,
                    refused.status_code,
                    refused.reason,
                    to_tag=self.new_tag(),
                    headers=refused.headers,
                )
                self._stateless(request, response, source, transport)
                return
        tx = self._new_server_tx(
            key, pool, request, source=source, transport=transport, now=now, merge_key=merge_key
        )
        if method == "OPTIONS" and self.config.answer_options:
            self.respond(tx, self._options_answer(request), now)
            return
        self._events.append((RequestReceived(tx, request, source), None))
        return

    def _screen_new_request(
        self, request: Request, merge_key: MergeKey
    ) -> tuple[int, str | None, list[tuple[str, object]]] | None:
        """The stateless answer a new request gets, or None when it is for the application."""
        cfg = self.config
        method = request.method
        to_tag = request.to.tag if request.to else None
        from_tag = request.from_.tag if request.from_ else None
        if to_tag is None and merge_key in self._merge:
            return 482, "Loop Detected", []  # §8.2.2.2 merged request
        if any(TransactionKey(v.branch or "", "", method) in self._client for v in request.via[1:]):
            return 482, "Loop Detected", []  # a request we sent came back to us (§16.3 item 4)
        if method not in KNOWN_METHODS:
            return 501, None, [("Allow", cfg.allow_header)]
        if method not in cfg.allow:
            return 405, None, [("Allow", cfg.allow_header)]
        if to_tag is not None and not self._knows_dialog(request.call_id or "", to_tag, from_tag or ""):
            return 481, None, []  # an in-dialog request for a dialog we do not have
        busy = self._overloaded(method, to_tag is not None)
        if busy is not None:
            self.limit_stats.reject(busy)
            return 503, None, [("Retry-After", str(cfg.retry_after))]
        if request.body:
            ctype = request.content_type
            if ctype is None or ctype.mime not in cfg.accept:
                return 415, None, [("Accept", ", ".join(cfg.accept))]
        if method in ("INVITE", "UPDATE") and request.accept and not _accepts_any(request, cfg.accept):
            return 406, None, [("Accept", ", ".join(cfg.accept))]
        return None

    def _overloaded(self, method: str, in_dialog: bool) -> Rejection | None:
        """Which limit a new request hits, if any: pings and requests inside dialogs may use
        every transaction; new calls stop a tenth earlier, and at ``max_calls``."""
        cfg = self.config
        transactions = self._answering
        if transactions >= cfg.max_transactions:
            return Rejection.TRANSACTIONS
        if in_dialog or method == "OPTIONS":
            return None
        if transactions >= cfg.invite_transactions:
            return Rejection.TRANSACTIONS
        if method == "INVITE" and cfg.max_calls is not None and len(self._calls) >= cfg.max_calls:
            return Rejection.CALLS
        return None

    def _new_server_tx(
        self,
        key: TransactionKey,
        pool: Pool,
        request: Request,
        *,
        source: Address,
        transport: str,
        now: float,
        merge_key: MergeKey | None = None,
    ) -> ServerTransaction[Any]:
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = cls(
            key,
            request,
            pool=pool,
            transport=transport,
            peer=source,
            timers=self.config.timers,
            now=now,
            sink=self._queue,
            on_event=self._on_tx_event,
            response_destination=response_destination(request.top_via, source, transport),
            observer=self.tx_counters,
        )
        self._server[key] = tx
        self._answering += 1
        self._handed_on = pool
        tx.merge_key = merge_key = merge_key or _merge_key(request)
        self._merge[merge_key] = tx
        if request.method == "INVITE" and (request.to is None or request.to.tag is None):
            call_id = request.call_id or ""
            self._call_of_tx[key] = call_id
            self._count_call(call_id, 1)
        tx.start(now)
        self._touch(tx)
        return tx

    def _receive_ack(self, pool: Pool, ack: Request, source: Address, now: float) -> None:
        tx = self._server.get(self._server_key(ack, "INVITE"))
        if isinstance(tx, ServerInviteTransaction):
            before = len(self._events)
            tx.receive_request(ack, source, now)
            self._touch(tx)
            if len(self._events) > before:  # AckReceived in Accepted: the event keeps the ACK
                self._attach(pool, ack)
            return
        if ack.to is not None and ack.to.tag is not None:
            # The ACK for a 2xx: its own branch, no transaction (RFC 3261 §17.1.1.3, §13.2.2.4).
            self._events.append((AckReceived(ack, source, None), pool))
            self._handed_on = pool
            return
        self.stats["stray ACKs"] += 1
        return

    def _receive_cancel(
        self, pool: Pool, cancel: Request, source: Address, transport: str, now: float
    ) -> None:
        invite = self._server.get(self._server_key(cancel, "INVITE"))
        if not isinstance(invite, ServerInviteTransaction):
            self._stateless(cancel, make_response(cancel, 481, to_tag=self.new_tag()), source, transport)
            return
        tx = self._new_server_tx(
            self._server_key(cancel, "CANCEL"), pool, cancel, source=source, transport=transport, now=now
        )
        self.respond(tx, make_response(cancel, 200, to_tag=self.new_tag()), now)
        if invite.state is ServerInviteState.PROCEEDING:
            self._events.append((CancelReceived(invite, cancel), None))
        return

    def _options_answer(self, request: Request) -> Response:
        cfg = self.config
        headers: list[tuple[str, object]] = [("Allow", cfg.allow_header), ("Accept", ", ".join(cfg.accept))]
        if cfg.supported:
            headers.append(("Supported", ", ".join(cfg.supported)))
        return make_response(request, 200, to_tag=self.new_tag(), headers=headers)

    def _stateless(self, request: Request, response: Response, source: Address, transport: str) -> None:
        self.stats[f"stateless {response.status_code}"] += 1
        self._stamp(response)
        if self.log.is_enabled_for(logging.DEBUG):
            self.log.debug(
                "stateless answer",
                method=request.method,
                call_id=request.headers.get("Call-ID"),
                status=response.status_code,
                reason=response.reason,
            )
        try:
            via = request.headers.first("Via") if "Via" in request.headers else None
        except ParseError:
            via = None
        self._out.append(
            Outgoing(response.serialize(), response_destination(via, source, transport), transport)
        )


MergeKey = tuple[str | None, str | None, int, str]


def _merge_key(request: Request) -> MergeKey:
    """§8.2.2.2: From tag, Call-ID and CSeq identify a request arriving by several paths."""
    from_tag = request.from_.tag if request.from_ else None
    cseq = request.cseq.number if request.cseq else 0
    return from_tag, request.call_id, cseq, request.method


def _cseq_number(request: Request) -> int | None:
    return request.cseq.number if request.cseq is not None else None


def _accepts_any(request: Request, ours: tuple[str, ...]) -> bool:
    for media in request.accept:
        mime = media.mime
        if (
            mime == "*/*"
            or mime in ours
            or (mime.endswith("/*") and any(o.startswith(mime[:-1]) for o in ours))
        ):
            return True
    return False


__all__ = [
    "AnyEvent",
    "CancelReceived",
    "ClientTransaction",
    "Endpoint",
    "RequestScreen",
    "ScreenAnswer",
    "TransactionTerminated",
]
