"""A soak run: many calls through two user agents in one process, memory sampled as it goes.

Alice calls Bob at ``rate`` calls per (virtual) second, each call held ``hold`` seconds then
hung up, on the simulated network, in virtual time (so 100,000 calls take minutes, not hours).
Every ``probe_every`` calls a misconfigured phone (Alice's endpoint again) sends Bob a SUBSCRIBE
with ``Proxy-Require: sip.example.com``, the request of Kamailio's GH #1990; Bob's
``request_handler`` answers it (the default: 200 without looking). Every ``sample_every`` ended
calls the pool factories' figures are sampled — what Kamailio's ``pkg.stats`` would show for
each endpoint — and at the end the slope test of :mod:`invsess.testing.trend` says whether
``used_size`` rose.

The warm-up is left out of the fit: until ``64*T1 + hold`` seconds have passed, the
transactions of finished calls are still being kept (Timers J, K, L, M) and memory rises for a
good reason. After the last call the run goes on until everything has ended, and the snapshot
diff from the end of the warm-up to then shows only what stayed: a leak, by allocation site.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Any

import attrs

from invsess.endpoint import Endpoint, EndpointConfig
from invsess.inv import IncomingCall, InviteSession, InviteState, SessionLayer, SessionStateChanged
from invsess.memory import LeakReport, MemorySnapshot, SiteDiff
from invsess.sdp import parse_sdp
from invsess.sip import NameAddress, Request, make_request, make_response, parse_uri
from invsess.testing.network import SimNetwork
from invsess.testing.trend import MIN_SAMPLES, Trend, trend
from invsess.transaction import RequestReceived, ServerTransaction, TimerConfig

ALICE = ("127.0.0.1", 5060)
BOB = ("127.0.0.2", 5060)

#: What Bob does with a request outside any dialog other than INVITE (the misconfigured phone's
#: SUBSCRIBEs): answer it through ``layer.endpoint.respond(tx, response, now)``.
RequestHandler = Callable[[SessionLayer, ServerTransaction[Any], Request, float], None]


def answer_ok(layer: SessionLayer, tx: ServerTransaction[Any], request: Request, now: float) -> None:
    """The default handler: 200, without looking at the request."""
    layer.endpoint.respond(tx, make_response(request, 200, to_tag=layer.endpoint.new_tag()), now)


@attrs.frozen
class SoakConfig:
    """How long and how hard (see the module docstring); ``tolerance`` in bytes per call."""

    calls: int = 100_000
    sample_every: int = 1000
    rate: float = 50.0
    hold: float = 1.0
    probe_every: int = 10
    t1: float = 0.5
    confidence: float = 0.99
    tolerance: float = 0.5
    malloc_debug: bool = False
    seed: int = 1

    def __attrs_post_init__(self) -> None:
        if self.calls < 1 or self.sample_every < 1 or self.rate <= 0 or self.hold < 0 or self.t1 <= 0:
            raise ValueError("calls, sample_every, rate and t1 must be positive, hold not negative")
        if self.probe_every < 0:
            raise ValueError("probe_every must not be negative (0: no probes)")
        if self.sample_count - self.warmup_samples < MIN_SAMPLES:
            raise ValueError(
                f"{self.calls} calls sampled every {self.sample_every} give "
                f"{self.sample_count - self.warmup_samples} samples after a warm-up of "
                f"{self.warmup_calls} calls: the slope test needs {MIN_SAMPLES}"
            )

    @property
    def warmup_calls(self) -> int:
        """Calls before the steady state: those of the first ``64*T1 + hold + 1`` seconds
        (while finished calls' transactions still pile up), and at least a tenth of the run."""
        settle = (64 * self.t1 + self.hold + 1.0) * self.rate
        return max(math.ceil(settle), self.calls // 10)

    @property
    def sample_count(self) -> int:
        """How many samples the run takes."""
        return self.calls // self.sample_every

    @property
    def warmup_samples(self) -> int:
        """Samples taken during the warm-up (left out of the fit)."""
        return math.ceil(self.warmup_calls / self.sample_every)


@attrs.frozen
class SoakSample:
    """The figures after ``calls`` calls had ended (``started`` had been placed): memory per
    endpoint and in total, pools, live sessions and transactions. ``time`` is virtual,
    ``elapsed`` real seconds."""

    calls: int
    started: int
    time: float
    elapsed: float
    used_size: int
    real_used_size: int
    fragments: int
    pools: int
    caller_used: int
    callee_used: int
    sessions: int
    transactions: int
    probes: int

    def as_dict(self) -> dict[str, float]:
        """The sample as a flat dict (a CSV row)."""
        return attrs.asdict(self)


@attrs.frozen
class SoakResult:
    """What a run found: the samples, the trend, what stayed (diff from the end of the warm-up
    to the idle end, callee side), the leak reports at close, and how the calls went."""

    config: SoakConfig
    samples: tuple[SoakSample, ...]
    trend: Trend
    callee_growth: tuple[SiteDiff, ...]
    caller_leaks: LeakReport
    callee_leaks: LeakReport
    failed_calls: int
    probes_answered: dict[int, int]
    elapsed: float

    @property
    def fitted(self) -> tuple[SoakSample, ...]:
        """The samples the trend was fitted on: after the warm-up, before the cool-down."""
        return fitted(self.config, self.samples)

    @property
    def leaked(self) -> bool:
        """True when memory rose or anything was left at close."""
        return self.trend.rising or bool(self.caller_leaks) or bool(self.callee_leaks)


def fitted(config: SoakConfig, samples: tuple[SoakSample, ...] | list[SoakSample]) -> tuple[SoakSample, ...]:
    """The samples of the steady state: after the warm-up, and while calls were still being
    placed (once the last one is, fewer and fewer are in flight: the cool-down)."""
    return tuple(s for s in samples[config.warmup_samples :] if s.started < config.calls)


def _sdp(user: str, host: str, port: int) -> Any:
    return parse_sdp(
        f"v=0\r\no={user} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


class _Soak:
    def __init__(self, config: SoakConfig, handler: RequestHandler) -> None:
        self.config = config
        self.handler = handler
        self.net = SimNetwork(seed=config.seed)
        timers = TimerConfig(t1=config.t1, t2=max(4.0, config.t1), t4=max(5.0, config.t1))
        allow = ("INVITE", "BYE", "OPTIONS", "SUBSCRIBE")

        def layer(user: str, address: tuple[str, int], seed: int) -> SessionLayer:
            endpoint = Endpoint(
                EndpointConfig(seed=seed, malloc_debug=config.malloc_debug, allow=allow, timers=timers)
            )
            made = SessionLayer(endpoint, _sdp(user, address[0], 40000 + seed), user=user)
            self.net.attach(made, address)
            return made

        self.alice = layer("alice", ALICE, config.seed * 10 + 1)
        self.bob = layer("bob", BOB, config.seed * 10 + 2)
        self.agenda: list[tuple[float, int, str, InviteSession | None]] = []
        self.serial = 0
        self.started = 0
        self.ended = 0
        self.failed = 0
        self.probes = 0
        self.samples: list[SoakSample] = []
        self.snapshot: MemorySnapshot | None = None
        self.began = time.perf_counter()

    def _at(self, when: float, what: str, session: InviteSession | None = None) -> None:
        self.serial += 1
        heapq.heappush(self.agenda, (when, self.serial, what, session))

    def run(self, progress: Callable[[SoakSample], None] | None) -> SoakResult:
        config, net = self.config, self.net
        for i in range(config.calls):
            self._at(i / config.rate, "call")
        while self.agenda or net.next_time() is not None:
            due = self.agenda[0][0] if self.agenda else None
            when = net.next_time()
            if due is not None and (when is None or due <= when):
                net.run_until(due)
                _, _, what, session = heapq.heappop(self.agenda)
                self._act(what, session)
            else:
                net.step()
            net.trace.clear()  # the wire's record would grow with the run: nobody reads it here
            self._events(progress)
        end = self.bob.endpoint.factory.snapshot()
        diffs = end.compare_to(self.snapshot) if self.snapshot is not None else ()
        # The end is idle: what shrank was calls in flight at the snapshot; what grew, stayed.
        growth = tuple(d for d in diffs if d.size_diff > 0)
        steady = fitted(config, self.samples)
        verdict = trend(
            [s.calls for s in steady],
            [s.used_size for s in steady],
            confidence=config.confidence,
            tolerance=config.tolerance,
        )
        # The answers the probes got, as Alice's endpoint counted them (responses by code and method).
        replies = self.alice.endpoint.messages.rcv_replies
        answers = {code: n for (code, method), n in replies.items() if method == "SUBSCRIBE"}
        caller_leaks = self.alice.close(net.now)
        callee_leaks = self.bob.close(net.now)
        return SoakResult(
            config,
            tuple(self.samples),
            verdict,
            growth,
            caller_leaks,
            callee_leaks,
            self.failed,
            dict(sorted(answers.items())),
            time.perf_counter() - self.began,
        )

    def _act(self, what: str, session: InviteSession | None) -> None:
        net, config = self.net, self.config
        if what == "call":
            self.alice.invite(f"sip:bob@{BOB[0]}:{BOB[1]}", destination=BOB, now=net.now)
            self.started += 1
            if config.probe_every and self.started % config.probe_every == 0:
                self._probe()
        elif what == "bye" and session is not None:
            self.alice.hangup(session, net.now)

    def _probe(self) -> None:
        """The misconfigured phone re-SUBSCRIBEs, with an extension the proxy does not support."""
        endpoint = self.alice.endpoint
        self.probes += 1
        request = make_request(
            "SUBSCRIBE",
            f"sip:phone_0@{BOB[0]}:{BOB[1]}",
            via=endpoint.via("udp"),
            from_=NameAddress(parse_uri(f"sip:phone_0@{ALICE[0]}"), None, (("tag", endpoint.new_tag()),)),
            to=NameAddress(parse_uri(f"sip:phone_0@{BOB[0]}")),
            call_id=f"probe-{endpoint.new_tag()}@{ALICE[0]}",
            cseq=1,
            contact=NameAddress(parse_uri(f"sip:phone_0@{ALICE[0]}:{ALICE[1]}")),
            headers=[
                ("Event", "as-feature-event"),
                ("Expires", "3630"),
                ("Proxy-Require", "sip.example.com"),  # the misconfigured phone of GH #1990
            ],
        )
        endpoint.send_request(request, BOB, "udp", self.net.now)

    def _events(self, progress: Callable[[SoakSample], None] | None) -> None:
        net, config = self.net, self.config
        while (event := self.bob.next_event()) is not None:
            if isinstance(event, IncomingCall):
                self.bob.answer(event.session, 200, net.now)
            elif isinstance(event, RequestReceived):
                self.handler(self.bob, event.transaction, event.request, net.now)
        while (event := self.alice.next_event()) is not None:
            if isinstance(event, SessionStateChanged):
                if event.new is InviteState.CONFIRMED:
                    self._at(net.now + config.hold, "bye", event.session)
                elif event.new is InviteState.DISCONNECTED:
                    self.ended += 1
                    if event.cause not in (200, None):
                        self.failed += 1
                    if self.ended % config.sample_every == 0:
                        self._sample(progress)
            elif isinstance(event, RequestReceived):  # nothing is sent to Alice outside a call
                answer_ok(self.alice, event.transaction, event.request, net.now)

    def _sample(self, progress: Callable[[SoakSample], None] | None) -> None:
        caller, callee = self.alice.endpoint.factory, self.bob.endpoint.factory
        a, b = caller.statistics(), callee.statistics()
        sample = SoakSample(
            calls=self.ended,
            started=self.started,
            time=round(self.net.now, 3),
            elapsed=round(time.perf_counter() - self.began, 3),
            used_size=a.used_size + b.used_size,
            real_used_size=a.real_used_size + b.real_used_size,
            fragments=a.fragments + b.fragments,
            pools=len(caller.pools) + len(callee.pools),
            caller_used=a.used_size,
            callee_used=b.used_size,
            sessions=len(self.alice.sessions) + len(self.bob.sessions),
            transactions=len(self.alice.endpoint.transactions()) + len(self.bob.endpoint.transactions()),
            probes=self.probes,
        )
        self.samples.append(sample)
        if len(self.samples) == self.config.warmup_samples:
            self.snapshot = callee.snapshot()
        if progress is not None:
            progress(sample)


def run_soak(
    config: SoakConfig,
    *,
    request_handler: RequestHandler = answer_ok,
    progress: Callable[[SoakSample], None] | None = None,
) -> SoakResult:
    """Run the soak (see the module docstring); ``progress`` is called with each sample."""
    return _Soak(config, request_handler).run(progress)


__all__ = ["RequestHandler", "SoakConfig", "SoakResult", "SoakSample", "answer_ok", "run_soak"]
