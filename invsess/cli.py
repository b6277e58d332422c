"""The ``invsess`` command line (click)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from invsess import __version__, collector
from invsess.aio import (
    Call,
    CallEnded,
    CallError,
    ListenSpec,
    RegistrationError,
    SendGuard,
    StateChanged,
    StreamLimits,
    UserAgent,
)
from invsess.aio.loop import ENV as LOOP_ENV
from invsess.aio.loop import LOOPS, running_loop_name
from invsess.aio.loop import run as run_loop
from invsess.aio.workers import Worker, WorkerLink, WorkerMain, WorkerPool, WorkerStartError
from invsess.auth import Algorithm, DigestAuthenticator
from invsess.b2bua import B2bua
from invsess.cli_report import AnswererStats, AnswerWorkerReport, B2buaWorkerReport, CallerStats
from invsess.cli_workers import Supervisor
from invsess.demo import run_demo
from invsess.demo_call import run_call
from invsess.endpoint import KNOWN_METHODS, EndpointConfig, RateLimit
from invsess.errors import UsageError
from invsess.inv import InviteState, TimerSettings, option_tags
from invsess.logs import configure, get_logger
from invsess.memory import LeakReport
from invsess.monitor import EXTRA_HINT, BindAddress
from invsess.registration import Registrar
from invsess.sdp import parse_sdp
from invsess.sip import LocalProtocolError, ParseError, SipUri, parse_uri
from invsess.trace import Trace, render_svg, render_text, write_pcap
from invsess.transaction import TimerConfig

if TYPE_CHECKING:
    from invsess.monitor.server import HttpService

log = get_logger("invsess.cli")


@click.group()
@click.version_option(__version__, prog_name="invsess")
def main() -> None:
    """invsess: SIP INVITE sessions and dialogs, built to be debugged."""


@main.command()
def demo() -> None:
    """A real call between two user agents over loopback UDP, then the memory model's lesson."""
    configure("warning")
    leaked = asyncio.run(run_call(click.echo))
    click.echo("")
    leaked += run_demo(click.echo)
    click.echo("")
    click.echo(f"{leaked} leaked blocks")
    if leaked:
        raise SystemExit(1)


DEFAULT_SDP = (
    "v=0\r\no={user} 1 1 IN IP4 {host}\r\ns=invsess {user}\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)
#: Bytes in a mebibyte (--memory is given in MiB, as Kamailio's -m).
MIB = 1024 * 1024
#: Each command's default RTP port: ``answer``'s and ``call``'s SDPs differ (o= user and port),
#: so a trace of one talking to the other tells them apart.
DEFAULT_RTP_PORT = {"answer": 40000, "call": 40002}
#: Bodies an INFO may carry when --allow info is given (DTMF relay, as PJSIP sends it).
INFO_BODIES = ("application/dtmf-relay", "application/dtmf")


def _listen_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options `answer` and `call` share."""
    for option in reversed(
        [
            click.option(
                "--listen",
                "listen",
                multiple=True,
                default=["udp:127.0.0.1:0"],
                show_default=True,
                help="udp:|tcp:|tls:HOST:PORT, repeatable ([::1] for IPv6).",
            ),
            click.option(
                "--cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate chain (PEM)."
            ),
            click.option(
                "--key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM)."
            ),
            click.option(
                "--loopback-only/--any-destination",
                default=True,
                show_default=True,
                help="Refuse to send anywhere but 127.0.0.0/8 and ::1 (the send guard).",
            ),
            click.option(
                "--sdp",
                "sdp_file",
                type=click.Path(exists=True, dir_okay=False),
                help="Our SDP (capabilities) from a file; default: PCMU, PCMA, telephone-event "
                "(answer: o=answer, port 40000; call: o=call, port 40002).",
            ),
            click.option("--t1", type=float, default=0.5, show_default=True, help="RFC 3261 T1 in seconds."),
            click.option(
                "--timer",
                "timer_spec",
                metavar="SE[,uac|uas]",
                help="Session timers (RFC 4028): ask for (or grant at most) SE seconds; "
                "optionally who should refresh.",
            ),
            click.option(
                "--min-se",
                type=click.IntRange(1),
                default=None,
                help="Smallest session interval accepted (default 90; below 90 only for test beds).",
            ),
            click.option(
                "--100rel",
                "rel100",
                type=click.Choice(["off", "supported", "required"]),
                default="off",
                show_default=True,
                help="Reliable provisional responses (RFC 3262).",
            ),
            click.option(
                "--lock-codec/--no-lock-codec",
                default=True,
                show_default=True,
                help="After an answer that kept several of our codecs, offer the chosen one alone "
                "(UPDATE or re-INVITE), as pjsua does.",
            ),
            click.option(
                "--reinvite-after",
                type=click.FloatRange(0),
                default=None,
                metavar="S",
                help="Send one re-INVITE (with our SDP) S seconds after each call is confirmed.",
            ),
            click.option(
                "--update-after",
                type=click.FloatRange(0),
                default=None,
                metavar="S",
                help="Send one UPDATE (with our SDP) S seconds after each call is confirmed "
                "(answer with --ring: S seconds after the ringing response, in the early dialog; "
                "give --100rel supported --ring-code 183 too, so the INVITE's answer went reliably).",
            ),
            click.option(
                "--allow",
                "allow",
                multiple=True,
                type=click.Choice(sorted(KNOWN_METHODS - {"ACK", "CANCEL"}), case_sensitive=False),
                help="Serve this method too, in dialogs and out (200), repeatable; INVITE, BYE, "
                "OPTIONS and UPDATE are always served.",
            ),
            click.option(
                "--trace",
                "trace_path",
                type=click.Path(dir_okay=False),
                help="Write a JSON-lines trace here at exit (draw it with `invsess ladder`).",
            ),
            click.option(
                "--log-level",
                type=click.Choice(["debug", "info", "warning", "error"]),
                default="warning",
                show_default=True,
            ),
        ]
    ):
        f = option(f)
    return f


@attrs.frozen
class Limits:
    """The values of :func:`_limit_options`, as the command gets them; the defaults are the
    options' (safe for one process: docs/hardening.md)."""

    max_calls: int = 2000
    max_transactions: int = 10_000
    #: MiB for the pool factory. Each call's answered transactions keep their pools until
    #: Timer I/J/L (up to 32 s over UDP): ~6 KiB per call per second of that window, so a
    #: steady 700 calls/s (one process's capacity here) holds ~140 MiB.
    memory: int = 256
    rate_limit: str = "1000/2"
    rate_block: float = 10.0
    max_connections: int = StreamLimits().max_connections
    max_connections_per_ip: int = StreamLimits().max_connections_per_ip
    tcp_read_timeout: float = StreamLimits().read_timeout
    tcp_idle_timeout: float = StreamLimits().idle_timeout
    tls_handshake_timeout: float = StreamLimits().handshake_timeout
    shutdown_timeout: float = 5.0
    user_agent: str | None = None

    def rate(self) -> RateLimit | None:
        """``--rate-limit`` and ``--rate-block`` as a RateLimit (None: off)."""
        if self.rate_limit.strip().lower() in ("off", "none", "0"):
            return None
        try:
            parsed = RateLimit.parse(self.rate_limit)
            return attrs.evolve(parsed, block=self.rate_block)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--rate-limit") from None

    def stream(self) -> StreamLimits:
        """The TCP/TLS limits."""
        return StreamLimits(
            max_connections=self.max_connections,
            max_connections_per_ip=self.max_connections_per_ip,
            read_timeout=self.tcp_read_timeout,
            idle_timeout=self.tcp_idle_timeout,
            handshake_timeout=self.tls_handshake_timeout,
        )


def _limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Overload control, connection limits and shutdown (docs/hardening.md)."""
    defaults = Limits()
    for option in reversed(
        [
            click.option(
                "--max-calls",
                type=click.IntRange(0),
                default=defaults.max_calls,
                show_default=True,
                help="Live calls at most; a new INVITE beyond gets 503 + Retry-After.",
            ),
            click.option(
                "--max-transactions",
                type=click.IntRange(1),
                default=defaults.max_transactions,
                show_default=True,
                help="Server transactions waiting for their final answer at most (503 beyond; the "
                "last tenth is kept for OPTIONS and in-dialog requests).",
            ),
            click.option(
                "--rate-limit",
                "rate_limit",
                metavar="N/SECONDS|off",
                default=defaults.rate_limit,
                show_default=True,
                help="Per source address: more than N new requests in SECONDS and it is ignored "
                "for --rate-block seconds (Kamailio's pike).",
            ),
            click.option(
                "--memory",
                type=click.IntRange(1),
                default=defaults.memory,
                show_default=True,
                help="MiB of memory for the pools (Kamailio's -m); beyond it a new message is "
                "dropped (counted) until memory is freed.",
            ),
            click.option(
                "--rate-block",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.rate_block,
                show_default=True,
                help="Seconds a source over --rate-limit is ignored (renewed while it keeps going).",
            ),
            click.option(
                "--max-connections",
                type=click.IntRange(1),
                default=defaults.max_connections,
                show_default=True,
                help="TCP/TLS connections at most (lowered to what `ulimit -n` allows).",
            ),
            click.option(
                "--max-connections-per-ip",
                type=click.IntRange(1),
                default=defaults.max_connections_per_ip,
                show_default=True,
                help="TCP/TLS connections from one address at most.",
            ),
            click.option(
                "--tcp-read-timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.tcp_read_timeout,
                show_default=True,
                help="Seconds a streamed message may take from its first byte to its last.",
            ),
            click.option(
                "--tcp-idle-timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.tcp_idle_timeout,
                show_default=True,
                help="Seconds of silence before a connection is closed.",
            ),
            click.option(
                "--tls-handshake-timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.tls_handshake_timeout,
                show_default=True,
                help="Seconds a TLS handshake may take.",
            ),
            click.option(
                "--shutdown-timeout",
                type=click.FloatRange(min=0),
                default=defaults.shutdown_timeout,
                show_default=True,
                help="At the first Ctrl-C, wait this long in all for calls to end (a second "
                "Ctrl-C or SIGTERM: stop at once).",
            ),
            click.option(
                "--user-agent",
                "user_agent",
                metavar="TEXT",
                default=None,
                help="Send this as User-Agent (requests) and Server (responses); default: neither.",
            ),
        ]
    ):
        f = option(f)
    return f


def _loop_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--loop``: which event loop runs the command (invsess.aio.loop)."""
    return click.option(
        "--loop",
        type=click.Choice(LOOPS),
        envvar=LOOP_ENV,
        default=None,
        help="The event loop: uvloop when installed (auto, the default; pip install "
        "'invsess[fast]'), or asyncio's own. Also $INVSESS_LOOP.",
    )(f)


def _worker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--workers`` and ``--port-per-worker`` (invsess.aio.workers)."""
    f = click.option(
        "--port-per-worker",
        is_flag=True,
        help="With --workers: worker K listens on PORT+K-1 of each --listen (port 0: a free "
        "port each) instead of sharing PORT: for a proxy in front that spreads the calls.",
    )(f)
    return click.option(
        "--workers",
        type=click.IntRange(1, 256),
        default=1,
        show_default=True,
        help="Processes answering calls, sharing the UDP port (SO_REUSEPORT; one per core). "
        "See docs/performance.md.",
    )(f)


def _check_workers(workers: int, port_per_worker: bool, listen: Sequence[str], registrar: str | None) -> None:
    """What --workers cannot do, said before anything starts."""
    if workers == 1:
        if port_per_worker:
            raise click.UsageError("--port-per-worker goes with --workers N (N > 1)")
        return
    try:
        specs = [ListenSpec.parse(spec) for spec in listen]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    if not port_per_worker and any(spec.transport != "udp" for spec in specs):
        raise click.UsageError(
            "--workers shares UDP ports only (a TCP or TLS connection would be bound to the one "
            "worker that accepted it): listen on udp, or add --port-per-worker"
        )
    if port_per_worker and any(spec.port and spec.port + workers - 1 > 65535 for spec in specs):
        raise click.BadParameter("not enough ports above it for every worker", param_hint="--listen")
    if registrar is not None:
        raise click.UsageError(
            "--register goes with one worker: the registrar's answers to a shared port would "
            "reach any of the workers, not the one that registered"
        )


def _limits(options: dict[str, Any]) -> Limits:
    """Take the :func:`_limit_options` values out of a command's keyword arguments."""
    return Limits(**{field.name: options.pop(field.name) for field in attrs.fields(Limits)})


def _stop_on_signals(agent: UserAgent, stop: asyncio.Event) -> None:
    """First SIGINT: stop (calls get --shutdown-timeout to end). A second SIGINT, or SIGTERM:
    stop at once."""
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        seen.append(sig)
        if sig == signal.SIGTERM or len(seen) > 1:
            click.echo(f"{sig.name}: stopping at once", err=True)
            agent.hurry()
        else:
            click.echo(f"{sig.name}: stopping (again to stop at once)", err=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)


def _exit_lines(agent: UserAgent, report: LeakReport) -> list[str]:
    """What a command prints at exit: calls still up, limits that refused something, leaks."""
    lines = []
    if agent.shutdown is not None and agent.shutdown.up:
        lines.append(agent.shutdown.format())
    rejected = {reason.value: n for reason, n in sorted(agent.endpoint.limit_stats.rejected.items()) if n}
    if rejected:
        lines.append(f"refused by limits: {rejected}")
    lines.append(report.format())
    return lines


def _exit_report(agent: UserAgent, report: LeakReport) -> None:
    """Print :func:`_exit_lines` on stderr."""
    for line in _exit_lines(agent, report):
        click.echo(line, err=True)


@attrs.frozen
class MonitoringOptions:
    """``--rpc``, ``--metrics`` and ``--rpc-token`` of a command (see :func:`monitoring_options`)."""

    rpc: BindAddress | None = None
    metrics: BindAddress | None = None
    token: str | None = None

    @property
    def wanted(self) -> bool:
        """Anything to serve."""
        return self.rpc is not None or self.metrics is not None

    def private(self) -> MonitoringOptions:
        """What each worker of ``--workers`` serves: the same, on loopback ports of its own,
        for the supervisor to read (and anyone on this host who has the token)."""
        loopback = BindAddress("127.0.0.1", 0)
        return MonitoringOptions(
            loopback if self.rpc is not None else None,
            loopback if self.metrics is not None else None,
            self.token,
        )

    async def start(self, agents: Sequence[UserAgent], *, announce: bool = True) -> list[HttpService]:
        """Serve what was asked for about ``agents``; print the URLs on stderr (``announce``)."""
        if not self.wanted:
            return []
        try:
            from invsess.monitor.server import serve_metrics, serve_rpc  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise click.ClickException(
                f"--rpc/--metrics need the monitor extra ({EXTRA_HINT}): {exc}"
            ) from None
        targets = [agent.monitor_target() for agent in agents]
        return await self._serve(
            targets, ((self.rpc, serve_rpc, "rpc"), (self.metrics, serve_metrics, "metrics")),
            "" if announce else None,
        )  # fmt: skip

    async def start_for_workers(self, workers: Sequence[Worker]) -> list[HttpService]:
        """The supervisor's view of ``--workers``: one JSON-RPC and one Prometheus URL for all,
        each worker's figures under its rank (invsess.monitor.workers); print the URLs."""
        if not self.wanted:
            return []
        try:
            from invsess.monitor.workers import WorkerEndpoint, serve_worker_metrics, serve_worker_rpc  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise click.ClickException(
                f"--rpc/--metrics need the monitor extra ({EXTRA_HINT}): {exc}"
            ) from None
        peers = [
            WorkerEndpoint(w.rank, w.pid or 0, (w.info or {}).get("rpc"), (w.info or {}).get("metrics"))
            for w in workers
        ]
        return await self._serve(
            peers,
            ((self.rpc, serve_worker_rpc, "rpc"), (self.metrics, serve_worker_metrics, "metrics")),
            f" (all {len(peers)} workers)",
        )

    async def _serve(
        self,
        subject: Any,
        servers: Sequence[tuple[BindAddress | None, Callable[..., Awaitable[HttpService]], str]],
        announce: str | None,
    ) -> list[HttpService]:
        """Start each server asked for about ``subject`` (all or none: a bind failure closes
        those started and is a ClickException); print each URL, followed by ``announce``,
        unless it is None."""
        services: list[HttpService] = []
        for bind, serve, what in servers:
            if bind is None:
                continue
            if not bind.loopback and self.token is None:
                click.echo(
                    f"warning: --{what} on {bind.host}, beyond loopback, without --rpc-token", err=True
                )
            try:
                service = await serve(subject, bind, token=self.token)
            except OSError as exc:
                for started in services:
                    await started.close()
                raise click.ClickException(
                    f"--{what} {bind.host}:{bind.port}: {exc.strerror or exc}"
                ) from None
            services.append(service)
            if announce is not None:
                click.echo(f"{what}: {service.url}{announce}", err=True)
        return services

    @staticmethod
    async def stop(services: Sequence[HttpService]) -> None:
        """Stop serving."""
        for service in services:
            await service.close()


def _bind_option(ctx: click.Context, param: click.Parameter, value: str | None) -> BindAddress | None:
    if value is None:
        return None
    try:
        return BindAddress.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def monitoring_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--rpc``, ``--metrics`` and ``--rpc-token`` to a command: it then receives one
    ``monitoring: MonitoringOptions`` argument, and serves with ``await monitoring.start(agents)``
    (``answer``, ``call``, and any command built on user agents)."""

    @functools.wraps(f)
    def wrapper(*args: Any, rpc_bind: Any, metrics_bind: Any, rpc_token: str | None, **kwargs: Any) -> Any:
        return f(*args, monitoring=MonitoringOptions(rpc_bind, metrics_bind, rpc_token or None), **kwargs)

    for option in reversed(
        [
            click.option(
                "--rpc",
                "rpc_bind",
                metavar="[HOST:]PORT",
                callback=_bind_option,
                help="Serve Kamailio-compatible JSON-RPC 2.0 at http://HOST:PORT/RPC (host 127.0.0.1 "
                "unless given; `invsess stats --rpc URL` reads it). Off by default.",
            ),
            click.option(
                "--metrics",
                "metrics_bind",
                metavar="[HOST:]PORT",
                callback=_bind_option,
                help="Serve Prometheus metrics at http://HOST:PORT/metrics (127.0.0.1 unless given).",
            ),
            click.option(
                "--rpc-token",
                envvar="INVSESS_RPC_TOKEN",
                metavar="TOKEN",
                help="Require 'Authorization: Bearer TOKEN' on --rpc and --metrics (or $INVSESS_RPC_TOKEN).",
            ),
        ]
    ):
        wrapper = option(wrapper)
    return wrapper


async def _agent(
    listen: tuple[str, ...],
    *,
    cert: str | None,
    key: str | None,
    loopback_only: bool,
    sdp_file: str | None,
    t1: float,
    allow: tuple[str, ...],
    trace: Trace | None,
    user: str,
    timer: TimerSettings | None,
    rel100: str,
    lock_codec: bool,
    limits: Limits,
    authenticator: DigestAuthenticator | None = None,
    reuse_port: bool = False,
    announce: bool = True,
) -> UserAgent:
    try:
        specs = [ListenSpec.parse(spec) for spec in listen]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    server_ssl = client_ssl = None
    if any(s.transport == "tls" for s in specs):
        if not (cert and key):
            raise click.UsageError("a tls listener needs --cert and --key")
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        client_ssl = ssl.create_default_context()
    if sdp_file:
        sdp = parse_sdp(Path(sdp_file).read_bytes())
    else:
        host = specs[0].host if ":" not in specs[0].host else "127.0.0.1"
        sdp = parse_sdp(DEFAULT_SDP.format(user=user, host=host, port=DEFAULT_RTP_PORT.get(user, 40000)))
    supported = option_tags(timer, rel100)
    prack = ("PRACK",) if "100rel" in supported else ()
    methods = tuple(
        dict.fromkeys(("INVITE", "BYE", "OPTIONS", "UPDATE", *prack, *(m.upper() for m in allow)))
    )
    timers = TimerConfig(t1=t1, t2=max(4.0, t1), t4=max(5.0, t1))
    accept = ("application/sdp", *(INFO_BODIES if "INFO" in methods else ()))
    config = EndpointConfig(
        allow=methods,
        timers=timers,
        supported=supported,
        accept=accept,
        max_calls=limits.max_calls,
        max_transactions=limits.max_transactions,
        total_memory=limits.memory * MIB,
        rate_limit=limits.rate(),
        server=limits.user_agent,
        user_agent=limits.user_agent,
    )
    try:
        agent = await UserAgent.create(
            specs,
            sdp=sdp,
            user=user,
            config=config,
            trace=trace,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
            guard=SendGuard.loopback_only() if loopback_only else SendGuard(),
            timer=timer,
            rel100=rel100,
            lock_codec=lock_codec,
            stream_limits=limits.stream(),
            reuse_port=reuse_port,
        )
    except OSError as exc:  # a port in use, an address not ours: one line, not a traceback
        raise click.ClickException(f"cannot listen on {', '.join(listen)}: {exc.strerror or exc}") from None
    if authenticator is not None:
        agent.endpoint.authenticator = authenticator
        # A server that authenticates is a registrar too: softphones register with it.
        agent.layer.attach(Registrar(agent.endpoint))
    if announce:
        for line in _listening(agent):
            click.echo(line, err=True)
    return agent


def _listening(agent: UserAgent) -> list[str]:
    return [f"listening on {t}:{host}:{port}" for t, (host, port) in agent.endpoint.listeners.items()]


def timer_settings(spec: str | None, min_se: int | None) -> TimerSettings | None:
    """``--timer SE[,uac|uas]`` and ``--min-se`` as settings (None: no session timers)."""
    if spec is None:
        if min_se is not None:
            raise click.UsageError("--min-se goes with --timer")
        return None
    interval, _, refresher = spec.partition(",")
    try:
        se = int(interval)
    except ValueError:
        raise click.BadParameter(f"{interval!r} is not a number of seconds", param_hint="--timer") from None
    if refresher not in ("", "uac", "uas"):
        raise click.BadParameter(f"refresher must be uac or uas, not {refresher!r}", param_hint="--timer")
    low = min_se if min_se is not None else 90
    try:
        return TimerSettings(
            session_expires=se,
            min_se=low,
            refresher=refresher or None,  # type: ignore[arg-type]
            floor=min(low, 90),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timer/--min-se") from None


async def _after(
    delay: float, what: str, action: Callable[[], Awaitable[None]], counts: Counter[str]
) -> None:
    """Run ``action`` (a re-INVITE, an UPDATE, a hangup) once, ``delay`` seconds from now, and
    count how it went; a call that ended meanwhile just cancels it."""
    await asyncio.sleep(delay)
    try:
        await action()
    except (LocalProtocolError, CallError, TimeoutError) as exc:  # CallError: refused, or ended
        counts[f"{what} failed"] += 1
        log.info("in-call request failed", what=what, error=str(exc))
    else:
        if what != "hangup":  # counted as "BYE sent" when the call is over
            counts[f"{what} done"] += 1


def _memory(agent: UserAgent, report: LeakReport) -> str:
    stats = agent.endpoint.factory.statistics()
    used = f"max_used_size {stats.max_used_size} bytes, used_size {stats.used_size}"
    return f"{used}, {report.total_blocks} leaked blocks"


def auth_users(pairs: tuple[str, ...], auth_file: str | None) -> dict[str, str]:
    """``--auth USER:PASSWORD`` (repeatable) and ``--auth-file`` (one ``USER:PASSWORD`` a line;
    blank lines and ``#`` comments skipped) as username -> password."""
    entries = [(pair, "--auth") for pair in pairs]
    if auth_file:
        text = Path(auth_file).read_text(encoding="utf-8")
        entries += [(line.strip(), f"--auth-file line {n}") for n, line in enumerate(text.splitlines(), 1)]
    users: dict[str, str] = {}
    for entry, where in entries:
        if not entry or entry.startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise click.BadParameter(f"{where}: expected USER:PASSWORD", param_hint="--auth")
        users[user] = password
    return users


def sip_uri_option(text: str | None, name: str) -> str | None:
    """A ``sip:HOST:PORT`` option checked (the host an IP address: nothing here resolves names)."""
    if text is None:
        return None
    try:
        uri = parse_uri(text)
    except ParseError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None
    if not isinstance(uri, SipUri):
        raise click.BadParameter(f"{text!r} is not a sip: URI", param_hint=name)
    try:
        ListenSpec.parse(f"udp:{uri.host}:{uri.host_port[1]}")
    except ValueError:
        raise click.BadParameter(f"{text!r}: the host must be an IP address", param_hint=name) from None
    return text


def proxy_route(proxy: str | None) -> list[str]:
    """``--proxy``: an outbound proxy is a loose router (``;lr`` added when missing)."""
    if proxy is None:
        return []
    uri = parse_uri(proxy)
    return [proxy if isinstance(uri, SipUri) and uri.lr else f"{proxy};lr"]


def _credentials(user: str | None, password: str | None) -> None:
    if password is not None and user is None:
        raise click.UsageError("--password goes with --user")


@main.command()
@_listen_options
@_limit_options
@monitoring_options
@click.option(
    "--answer-code",
    type=click.IntRange(200, 699),
    default=200,
    show_default=True,
    help="Final answer to INVITEs (2xx connects, with our SDP).",
)
@click.option(
    "--ring",
    type=float,
    default=0.0,
    show_default=True,
    help="Ring this long first (with --ring-code, 180 by default).",
)
@click.option(
    "--ring-code",
    type=click.IntRange(101, 199),
    default=180,
    show_default=True,
    help="The provisional --ring sends (183: early media; with --100rel it carries our SDP answer).",
)
@click.option(
    "--hangup-after",
    type=click.FloatRange(0),
    default=None,
    metavar="S",
    help="Hang up (BYE) S seconds after each call is confirmed; default: wait for the caller's BYE.",
)
@click.option("--calls", type=int, default=None, help="Stop after this many calls have ended.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--auth",
    "auth_pairs",
    multiple=True,
    metavar="USER:PASSWORD",
    help="Require digest authentication (401) of INVITE, REGISTER, MESSAGE...: this user may "
    "(repeatable). With it, REGISTER is served too (a registrar).",
)
@click.option(
    "--auth-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Users for --auth from a file: one USER:PASSWORD a line (# comments).",
)
@click.option("--realm", default="invsess", show_default=True, help="The realm of --auth's challenges.")
@click.option(
    "--algorithms",
    default="SHA-256,MD5",
    show_default=True,
    help="Digest algorithms --auth offers, in order of preference (SHA-512-256, SHA-256, MD5).",
)
@click.option(
    "--register",
    "registrar",
    metavar="sip:HOST:PORT",
    help="Register our listening contact there (with --user/--password), keep it refreshed, "
    "unregister at the end.",
)
@click.option("--user", help="The user to register (--register) and to answer 401/407 as.")
@click.option("--password", help="Its password.")
@click.option(
    "--proxy", metavar="sip:HOST:PORT", help="Send the REGISTER through this outbound proxy (loose router)."
)
@click.option(
    "--expires", type=click.IntRange(1), default=600, show_default=True, help="Registration interval."
)
@_worker_options
@_loop_option
def answer(  # noqa: PLR0917 - click passes every option positionally by name
    listen: tuple[str, ...],
    cert: str | None,
    key: str | None,
    loopback_only: bool,
    sdp_file: str | None,
    t1: float,
    timer_spec: str | None,
    min_se: int | None,
    rel100: str,
    lock_codec: bool,
    reinvite_after: float | None,
    update_after: float | None,
    allow: tuple[str, ...],
    trace_path: str | None,
    log_level: str,
    answer_code: int,
    ring: float,
    ring_code: int,
    hangup_after: float | None,
    calls: int | None,
    duration: float | None,
    auth_pairs: tuple[str, ...],
    auth_file: str | None,
    realm: str,
    algorithms: str,
    registrar: str | None,
    user: str | None,
    password: str | None,
    proxy: str | None,
    expires: int,
    workers: int,
    port_per_worker: bool,
    loop: str | None,
    monitoring: MonitoringOptions,
    **limit_options: Any,
) -> None:
    """Answer calls until interrupted (or --calls/--duration): an auto-answering UAS for testing.

    INVITEs get --answer-code after --ring seconds of ringing (a CANCEL gets 200 and 487); OPTIONS
    and --allow'ed methods get 200, inside dialogs too (INFO); everything else the answer RFC 3261
    prescribes (405, 501, 481, 400, 420, ...). --hangup-after, --reinvite-after and --update-after
    make us act in each call. Overload gets 503 + Retry-After; see docs/hardening.md for every
    limit. Without --auth it answers anyone (it says so first); with --auth, requests need
    digest credentials and REGISTER is served (a registrar); --register registers our contact
    elsewhere (failed authentications by source are among the statistics).

    --workers N runs N processes sharing the UDP port (SO_REUSEPORT: a peer's address and port
    keep its calls on one worker), or each on a port of its own with --port-per-worker (for a
    proxy in front that spreads the calls: Kamailio's dispatcher); see docs/performance.md.

    Ctrl-C (SIGINT) hangs up the calls still up and waits --shutdown-timeout for them; a second
    Ctrl-C or SIGTERM stops at once. Prints the statistics, the calls still up at shutdown and
    the leak report at exit (each worker's, and their sum); exits 0 after an orderly stop, 1 if
    anything leaked (in any worker) or a worker failed.
    """
    configure(log_level)
    timer = timer_settings(timer_spec, min_se)
    limits = _limits(limit_options)
    users = auth_users(auth_pairs, auth_file)
    sip_uri_option(registrar, "--register")
    sip_uri_option(proxy, "--proxy")
    if registrar and not user:
        raise click.UsageError("--register needs --user (and --password)")
    _credentials(user, password)
    _check_workers(workers, port_per_worker, listen, registrar)
    offered: list[str] = []
    if users:
        offered = [name.strip() for name in algorithms.split(",") if name.strip()]
        _authenticator(realm, users, tuple(offered))  # refuse a bad realm or algorithm now
        click.echo(f"digest authentication required: realm {realm!r}, {len(users)} user(s)", err=True)
    else:
        click.echo(
            "warning: no --auth: answering every call from anyone (a test tool; "
            "--auth USER:PASSWORD requires digest authentication)",
            err=True,
        )
    setup = AnswerSetup(
        listen=listen,
        cert=cert,
        key=key,
        loopback_only=loopback_only,
        sdp_file=sdp_file,
        t1=t1,
        timer=timer,
        rel100=rel100,
        lock_codec=lock_codec,
        reinvite_after=reinvite_after,
        update_after=update_after,
        allow=(*allow, *(("REGISTER",) if users else ())),
        trace_path=trace_path,
        log_level=log_level,
        answer_code=answer_code,
        ring=ring,
        ring_code=ring_code,
        hangup_after=hangup_after,
        calls=calls,
        duration=duration,
        users=users,
        realm=realm,
        algorithms=tuple(offered),
        registrar=registrar,
        user=user,
        password=password,
        proxy=proxy,
        expires=expires,
        monitoring=monitoring,
        limits=limits,
        loop=loop,
    )
    try:
        if workers == 1:
            raise SystemExit(run_loop(_serve_answer(setup, None), loop=loop))
        raise SystemExit(run_loop(_supervise_answer(setup, workers, port_per_worker), loop=loop))
    except UsageError as exc:  # --loop uvloop without uvloop
        raise click.UsageError(str(exc)) from None


def _authenticator(realm: str, users: dict[str, str], algorithms: tuple[str, ...]) -> DigestAuthenticator:
    """``--auth``'s authenticator (its options checked: a bad one is a usage error)."""
    offered = [Algorithm.named(name) for name in algorithms]
    if any(a is None for a in offered):
        raise click.BadParameter(f"unknown algorithm in {','.join(algorithms)!r}", param_hint="--algorithms")
    try:
        return DigestAuthenticator(realm, users, algorithms=[a for a in offered if a is not None])
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint="--realm/--algorithms") from None


@attrs.frozen
class AnswerSetup:
    """Everything ``invsess answer`` was asked, checked: what one process serves with (and what
    each worker gets, pickled, with ``--workers``)."""

    listen: tuple[str, ...]
    cert: str | None
    key: str | None
    loopback_only: bool
    sdp_file: str | None
    t1: float
    timer: TimerSettings | None
    rel100: str
    lock_codec: bool
    reinvite_after: float | None
    update_after: float | None
    allow: tuple[str, ...]
    trace_path: str | None
    log_level: str
    answer_code: int
    ring: float
    ring_code: int
    hangup_after: float | None
    calls: int | None
    duration: float | None
    users: dict[str, str]
    realm: str
    algorithms: tuple[str, ...]
    registrar: str | None
    user: str | None
    password: str | None
    proxy: str | None
    expires: int
    monitoring: MonitoringOptions
    limits: Limits
    loop: str | None
    #: A worker sharing the UDP ports with the others (SO_REUSEPORT).
    reuse_port: bool = False


async def _serve_answer(setup: AnswerSetup, link: WorkerLink | None) -> int:
    """``invsess answer``'s serving, in one process (``link`` None) or as one of ``--workers``
    (then the supervisor says when to stop, and gets the report)."""
    collector.tune()  # a call makes no cycles: the collector's passes are overhead
    limits, monitoring = setup.limits, setup.monitoring
    trace = Trace() if setup.trace_path else None
    authenticator = _authenticator(setup.realm, setup.users, setup.algorithms) if setup.users else None
    agent = await _agent(
        setup.listen,
        cert=setup.cert,
        key=setup.key,
        loopback_only=setup.loopback_only,
        sdp_file=setup.sdp_file,
        t1=setup.t1,
        allow=setup.allow,
        trace=trace,
        user=setup.user or "answer",
        timer=setup.timer,
        rel100=setup.rel100,
        lock_codec=setup.lock_codec,
        limits=limits,
        authenticator=authenticator,
        reuse_port=setup.reuse_port,
        announce=link is None,
    )
    if setup.user and setup.password:
        agent.layer.credentials.add(setup.user, setup.password)
    if setup.registrar and setup.user:
        try:
            registration = await agent.register(
                setup.registrar,
                setup.user,
                setup.password,
                expires=setup.expires,
                route=proxy_route(setup.proxy),
            )
        except RegistrationError as exc:
            click.echo(f"registration refused: {exc.status_code} {exc.reason}", err=True)
            await agent.close()
            return 2
        click.echo(
            f"registered at {setup.registrar} as {setup.user}: expires {registration.expires}", err=True
        )
    try:
        services = await monitoring.start([agent], announce=link is None)
    except click.ClickException:
        await agent.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if link is None:
        click.echo(f"event loop: {running_loop_name()}", err=True)
        _stop_on_signals(agent, stop)
    else:
        link.attach()
        link.on_hurry = agent.hurry
        link.ready(
            listen=_listening(agent),
            pid=os.getpid(),
            loop=running_loop_name(),
            **{service.path.strip("/").lower(): service.url for service in services},
        )
    stats = AnswererStats()
    handlers: set[asyncio.Task[None]] = set()
    ring, answer_code, update_after = setup.ring, setup.answer_code, setup.update_after

    async def handle(call: Call) -> None:
        stats.call_received()
        actions: list[asyncio.Task[None]] = []
        answered: int | None = None
        was_up = False
        try:
            if ring > 0:
                await call.answer(setup.ring_code)
                if update_after is not None:  # RFC 3311: an UPDATE in the early dialog
                    actions.append(
                        loop.create_task(_after(update_after, "UPDATE", call.update, stats.actions))
                    )
                with contextlib.suppress(TimeoutError):
                    await call.wait_for(InviteState.DISCONNECTED, timeout=ring)  # a CANCEL ends it early
            if call.state is not InviteState.DISCONNECTED:
                await call.answer(answer_code)
                answered = answer_code
            if answered is not None and answered < 300:
                await call.wait_for(InviteState.CONFIRMED, timeout=None)
                was_up = True
                stats.call_up()
                for delay, what, action in (
                    (setup.reinvite_after, "re-INVITE", call.reinvite),
                    (None if ring > 0 else update_after, "UPDATE", call.update),
                    (setup.hangup_after, "hangup", call.hangup),
                ):
                    if delay is not None:
                        actions.append(loop.create_task(_after(delay, what, action, stats.actions)))
        except (LocalProtocolError, CallError):  # cancelled while ringing, ended before the ACK ...
            pass
        await call.wait_for(InviteState.DISCONNECTED, timeout=None)
        for task in actions:
            task.cancel()
        ended(call, answered, was_up)
        await call.close()

    def ended(call: Call, answered: int | None, was_up: bool) -> None:
        if call.session.bye_sent:
            stats.actions["BYE sent"] += 1
        cancelled = answered is None and call.cause == 487
        stats.call_ended(call.cause, was_up=was_up, answered=answered, cancelled=cancelled)
        if link is not None:
            link.progress(ended=stats.ended)
        if setup.calls is not None and stats.ended >= setup.calls:
            stop.set()

    def answer_at_once(call: Call) -> None:
        """The plain case (no ringing, nothing to do in the call): answered from the callback,
        followed by its state callbacks, with no task of its own per call."""
        stats.call_received()
        answered: int | None = None
        with contextlib.suppress(LocalProtocolError):  # a CANCEL came first
            call.answer_now(answer_code)
            answered = answer_code
        up = [False]

        def on_state(call: Call, event: object) -> None:
            if isinstance(event, StateChanged) and event.new is InviteState.CONFIRMED and not up[0]:
                up[0] = True
                stats.call_up()
            elif isinstance(event, CallEnded):
                ended(call, answered, up[0])
                call.release()

        call.on_state = on_state

    async def accept() -> None:
        while True:
            call = await agent.incoming()
            task = loop.create_task(handle(call))
            handlers.add(task)
            task.add_done_callback(handlers.discard)

    plain = ring <= 0 and setup.reinvite_after is None and update_after is None and setup.hangup_after is None
    if plain:
        agent.on_incoming = answer_at_once
    acceptor = loop.create_task(accept())
    try:
        with contextlib.suppress(TimeoutError):
            if link is None:
                await asyncio.wait_for(stop.wait(), setup.duration)
            else:
                await link.stopped()
        for task in (acceptor, *handlers):  # the calls they held are closed by agent.close()
            task.cancel()
        await asyncio.gather(acceptor, *handlers, return_exceptions=True)
        await monitoring.stop(services)
        report = await agent.close(
            timeout=limits.shutdown_timeout, linger=link.linger if link is not None else None
        )
    finally:
        if link is not None:
            link.detach()
    trace_path = setup.trace_path
    if trace is not None and trace_path:
        if link is not None:  # one file per worker: trace.jsonl -> trace.2.jsonl
            path = Path(trace_path)
            trace_path = str(path.with_name(f"{path.stem}.{link.rank}{path.suffix}"))
        trace.rebased().write(trace_path)
        click.echo(f"trace: {len(trace)} events in {trace_path}", err=True)
    summary = stats.summary(agent.endpoint.stats.items(), _memory(agent, report))
    if authenticator is not None:
        summary.append(f"authentication: {authenticator.statistics().as_dict()}")
    if link is not None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        memory = agent.endpoint.factory.statistics()
        link.report(
            AnswerWorkerReport(
                rank=link.rank,
                pid=os.getpid(),
                stats=stats,
                endpoint=dict(agent.endpoint.stats),
                max_used_size=memory.max_used_size,
                used_size=memory.used_size,
                leaked_blocks=report.total_blocks,
                summary=summary,
                extra=_exit_lines(agent, report),
                cpu_seconds=usage.ru_utime + usage.ru_stime,
                max_rss_kib=usage.ru_maxrss,
            )
        )
        return 1 if report else 0
    for line in summary:
        click.echo(line, err=True)
    _exit_report(agent, report)
    return 1 if report else 0


def answer_worker(link: WorkerLink, setup: AnswerSetup) -> int:
    """One worker of ``invsess answer --workers N`` (run in its own process by the pool)."""
    configure(setup.log_level)
    try:
        return run_loop(_serve_answer(setup, link), loop=setup.loop)
    except click.ClickException as exc:  # cannot listen, and the like: the supervisor says it
        link.failed(exc.format_message())
        return 2
    except UsageError as exc:
        link.failed(str(exc))
        return 2


def _worker_listen(
    listen: tuple[str, ...], rank: int, info: dict[str, Any] | None, per_worker: bool
) -> tuple[str, ...]:
    """Worker ``rank``'s --listen: PORT+rank-1 with --port-per-worker; else the shared ports,
    the ones the first worker bound where port 0 was asked for (``info``: its report)."""
    specs = [ListenSpec.parse(spec) for spec in listen]
    if per_worker:
        ports = [spec.port + rank - 1 if spec.port else 0 for spec in specs]
    elif info is not None:
        bound = [line.rsplit(":", 1)[1] for line in info["listen"]]
        ports = [int(port) for port in bound]
    else:
        ports = [spec.port for spec in specs]
    out = []
    for spec, port in zip(specs, ports, strict=True):
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        out.append(f"{spec.transport}:{host}:{port}")
    return tuple(out)


async def _supervise_answer(setup: AnswerSetup, count: int, per_worker: bool) -> int:
    """``invsess answer --workers N`` (invsess.aio.workers)."""
    worker_setup = attrs.evolve(
        setup, calls=None, duration=None, reuse_port=not per_worker, monitoring=setup.monitoring.private()
    )
    return await _supervise(
        count,
        per_worker,
        setup.listen,
        answer_worker,
        lambda listen: attrs.evolve(worker_setup, listen=listen),
        calls=setup.calls,
        duration=setup.duration,
        shutdown_timeout=setup.limits.shutdown_timeout,
        monitoring=setup.monitoring,
        combine=AnswerWorkerReport.combined,
    )


async def _supervise(
    count: int,
    per_worker: bool,
    listen: tuple[str, ...],
    worker_main: WorkerMain,
    make_payload: Callable[[tuple[str, ...]], Any],
    *,
    calls: int | None,
    duration: float | None,
    shutdown_timeout: float,
    monitoring: MonitoringOptions | None,
    combine: Callable[[list[Any]], list[str]],
) -> int:
    """Start ``count`` workers serving ``listen`` (shared, or a port each), relay the stop,
    print each worker's report (``.lines()``) and ``combine`` of them all; 1 if any worker
    leaked, failed or was lost."""
    shared = not per_worker
    first_alone = shared and any(ListenSpec.parse(spec).port == 0 for spec in listen)

    def payload_for(rank: int, info: dict[str, Any] | None) -> Any:
        return make_payload(_worker_listen(listen, rank, info, per_worker))

    pool = WorkerPool(count, worker_main)
    supervisor = Supervisor(pool, shutdown_timeout=shutdown_timeout)
    supervisor.stop_on_signals()
    try:
        workers = await pool.start(payload_for, first_alone=first_alone)
    except WorkerStartError as exc:
        raise click.ClickException(str(exc)) from None
    for line in supervisor.listening(shared):
        click.echo(line, err=True)
    services: list[HttpService] = []
    if monitoring is not None:
        try:
            services = await monitoring.start_for_workers(workers)
        except click.ClickException:
            pool.stop(hurry=True)
            await pool.finish(0)
            raise
    results = await supervisor.run(calls=calls, duration=duration)
    await MonitoringOptions.stop(services)
    reports = [r.report for r in results if r.report is not None]
    for result in results:
        if result.report is not None:
            for line in result.report.lines():
                click.echo(line, err=True)
        else:
            click.echo(
                f"worker {result.rank} (pid {result.pid}): no report, exit status {result.exitcode}", err=True
            )
    for line in combine(reports):
        click.echo(line, err=True)
    if supervisor.lost:
        click.echo("a worker exited on its own: the others were stopped", err=True)
    return 1 if supervisor.lost or any(not r.ok for r in results) else 0


@main.command()
@click.argument("uri")
@_listen_options
@_limit_options
@monitoring_options
@click.option(
    "--calls", type=click.IntRange(1), default=1, show_default=True, help="How many calls to place."
)
@click.option("--rate", type=float, default=1.0, show_default=True, help="Calls started per second.")
@click.option(
    "--hold", type=float, default=1.0, show_default=True, help="Seconds each call stays up before BYE."
)
@click.option(
    "--transport",
    type=click.Choice(["udp", "tcp", "tls"]),
    default=None,
    help="Transport (default: the URI's transport parameter, else udp).",
)
@click.option(
    "--timeout",
    "answer_timeout",
    type=float,
    default=32.0,
    show_default=True,
    help="Give up on a call not answered within this many seconds.",
)
@click.option(
    "--progress",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    metavar="S",
    help="Print a progress line every S seconds of a longer run (0: never).",
)
@click.option("--user", help="Our user (From, Contact) and the username for 401/407 challenges.")
@click.option("--password", help="The password for 401/407 challenges (with --user).")
@click.option(
    "--proxy",
    metavar="sip:HOST:PORT",
    help="Send the INVITE through this outbound proxy (a loose router: ;lr is added).",
)
@_loop_option
def call(  # noqa: PLR0917 - click passes every option positionally by name
    uri: str,
    listen: tuple[str, ...],
    cert: str | None,
    key: str | None,
    loopback_only: bool,
    sdp_file: str | None,
    t1: float,
    timer_spec: str | None,
    min_se: int | None,
    rel100: str,
    lock_codec: bool,
    reinvite_after: float | None,
    update_after: float | None,
    allow: tuple[str, ...],
    trace_path: str | None,
    log_level: str,
    calls: int,
    rate: float,
    hold: float,
    transport: str | None,
    answer_timeout: float,
    progress: float,
    user: str | None,
    password: str | None,
    proxy: str | None,
    loop: str | None,
    monitoring: MonitoringOptions,
    **limit_options: Any,
) -> None:
    """Place --calls calls to URI at --rate per second, each held --hold seconds, then BYE.

    Prints progress on long runs and a summary (outcomes, causes, call-setup time percentiles);
    exits 0 only if every call was answered and ended cleanly. A call whose INVITE cannot be
    sent (the send guard, a host name: nothing here resolves DNS, a refused TCP connection)
    fails at once with 503 and says why. Ctrl-C stops placing calls and hangs up those up
    (waiting --shutdown-timeout); a second Ctrl-C or SIGTERM stops at once. With
    --user/--password the calls answer digest challenges (401/407); --proxy sends them through
    an outbound proxy.
    """
    configure(log_level)
    timer = timer_settings(timer_spec, min_se)
    limits = _limits(limit_options)
    _credentials(user, password)
    sip_uri_option(proxy, "--proxy")
    route = proxy_route(proxy)
    if rate <= 0:
        raise click.BadParameter("must be positive", param_hint="--rate")
    try:
        target = parse_uri(uri)
    except ParseError as exc:
        raise click.BadParameter(str(exc), param_hint="URI") from None
    wanted = transport or (target.transport if isinstance(target, SipUri) else None) or "udp"
    if not any(spec.startswith(wanted.lower()) for spec in listen):  # a listener to send from
        listen = (*listen, f"{wanted.lower()}:127.0.0.1:0")

    async def run() -> int:
        trace = Trace() if trace_path else None
        agent = await _agent(
            listen,
            cert=cert,
            key=key,
            loopback_only=loopback_only,
            sdp_file=sdp_file,
            t1=t1,
            allow=allow,
            trace=trace,
            user=user or "call",
            timer=timer,
            rel100=rel100,
            lock_codec=lock_codec,
            limits=limits,
        )
        if user and password:
            agent.layer.credentials.add(user, password)
        try:
            services = await monitoring.start([agent])
        except click.ClickException:
            await agent.close()
            raise
        loop = asyncio.get_running_loop()
        stats = CallerStats(started_at=agent.now())
        stop = asyncio.Event()
        _stop_on_signals(agent, stop)

        async def one() -> None:
            started = agent.now()
            stats.call_started(started)
            try:
                placed = await agent.call(uri, transport=transport, route=route)
            except CallError as exc:  # its host did not resolve: a 503 at once (RFC 3261 §8.1.3.1)
                stats.call_ended(exc.cause or "error", was_up=False, cause=str(exc))
                return
            except LocalProtocolError as exc:
                stats.call_ended("error", was_up=False, cause=str(exc))
                return
            actions: list[asyncio.Task[None]] = []
            was_up = False
            outcome: int | str
            try:
                await placed.wait_for(InviteState.CONFIRMED, timeout=answer_timeout)
                was_up = True
                stats.call_up(agent.now() - started)
                for delay, what, action in (
                    (reinvite_after, "re-INVITE", placed.reinvite),
                    (update_after, "UPDATE", placed.update),
                ):
                    if delay is not None:
                        actions.append(loop.create_task(_after(delay, what, action, stats.actions)))
                with contextlib.suppress(TimeoutError):  # the callee may hang up first
                    await placed.wait_for(InviteState.DISCONNECTED, timeout=hold)
                await placed.hangup()
                outcome = placed.cause or 200
            except (LocalProtocolError, CallError):  # ended before it was answered: its cause says why
                outcome = placed.cause or "error"
            except TimeoutError:
                with contextlib.suppress(LocalProtocolError, TimeoutError):
                    async with asyncio.timeout(answer_timeout):
                        await placed.hangup()
                outcome = "timeout"
            finally:
                for task in actions:
                    task.cancel()
            cause = placed.session.cause_text if placed.cause == 503 else ""
            if outcome == "timeout":
                cause = f"not answered within {answer_timeout:g} s (cancelled)"
            stats.call_ended(outcome, was_up=was_up, cause=cause)
            await placed.close()

        async def report_progress() -> None:
            while True:
                await asyncio.sleep(progress)
                click.echo(stats.progress(agent.now()), err=True)

        async def place() -> None:
            tasks = []
            for i in range(calls):
                if i:
                    await asyncio.sleep(1.0 / rate)
                tasks.append(loop.create_task(one()))
            await asyncio.gather(*tasks)

        reporter = loop.create_task(report_progress()) if progress > 0 else None
        placing = loop.create_task(place())
        stopping = loop.create_task(stop.wait())
        await asyncio.wait([placing, stopping], return_when=asyncio.FIRST_COMPLETED)
        interrupted = not placing.done()
        for task in (placing, stopping, *((reporter,) if reporter is not None else ())):
            task.cancel()
        await asyncio.gather(placing, stopping, return_exceptions=True)
        elapsed = agent.now() - stats.started_at
        await monitoring.stop(services)
        report = await agent.close(timeout=limits.shutdown_timeout)
        if trace is not None and trace_path:
            trace.rebased().write(trace_path)
        if interrupted:
            click.echo(f"interrupted: {calls - stats.ended} calls not completed", err=True)
        for line in stats.summary(calls, elapsed):
            click.echo(line)
        if agent.shutdown is not None and agent.shutdown.up:
            click.echo(agent.shutdown.format(), err=True)
        if report:
            click.echo(report.format(), err=True)
        if interrupted:
            return 0 if not report else 1  # an orderly stop on request
        return 0 if stats.succeeded == calls and not report else 1

    try:
        raise SystemExit(run_loop(run(), loop=loop))
    except UsageError as exc:  # --loop uvloop without uvloop
        raise click.UsageError(str(exc)) from None


def _rpc_url(value: str) -> str:
    """``--rpc``: a URL, or ``[HOST:]PORT`` meaning ``http://HOST:PORT/RPC``."""
    if value.startswith(("http://", "https://")):
        return value
    try:
        bind = BindAddress.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rpc") from None
    host = f"[{bind.host}]" if ":" in bind.host else bind.host
    return f"http://{host}:{bind.port}/RPC"


@main.command()
@click.option(
    "--rpc",
    "url",
    required=True,
    metavar="URL",
    help="The JSON-RPC URL of a running invsess (or Kamailio): http://127.0.0.1:5071/RPC, or [HOST:]PORT.",
)
@click.option("--watch", is_flag=True, help="Refresh in place until interrupted (with rates).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="With --watch: stop after this many.")
@click.option(
    "--top", type=click.IntRange(1, 100), default=10, show_default=True, help="How many allocation sites."
)
@click.option("--token", envvar="INVSESS_RPC_TOKEN", help="Bearer token (or $INVSESS_RPC_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print one reading as JSON instead of tables.")
def stats(  # noqa: PLR0917 - click passes every option positionally by name
    url: str, watch: bool, interval: float, count: int | None, top: int, token: str | None, as_json: bool
) -> None:
    """Show the statistics and top allocation sites of a running process, read over JSON-RPC
    (`invsess answer --rpc PORT`, a UserAgent.serve_rpc, or a Kamailio with jsonrpcs+xhttp)."""
    try:
        from rich.console import Console  # noqa: PLC0415 - optional extra
        from rich.live import Live  # noqa: PLC0415

        from invsess.monitor.client import RpcClient, RpcClientError  # noqa: PLC0415
        from invsess.monitor.watch import read, render  # noqa: PLC0415
    except ImportError as exc:
        raise click.ClickException(f"invsess stats needs the monitor extra ({EXTRA_HINT}): {exc}") from None
    url = _rpc_url(url)
    try:
        client = RpcClient(url, token=token)
        reading = read(client, top=top)
    except RpcClientError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(attrs.asdict(reading), indent=1, sort_keys=True))
        return
    console = Console(highlight=False)
    if not watch:
        console.print(render(url, reading))
        return
    shown = 1
    previous = reading
    try:
        with Live(render(url, reading, interval=interval), console=console, auto_refresh=False) as live:
            while count is None or shown < count:
                time.sleep(interval)
                reading = read(client, top=top)
                live.update(render(url, reading, previous, interval=interval), refresh=True)
                previous = reading
                shown += 1
    except RpcClientError as exc:
        raise click.ClickException(f"lost the server: {exc}") from None
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--registrar", required=True, metavar="sip:HOST:PORT", help="Where to register.")
@click.option("--user", required=True, help="The user (address-of-record sip:USER@registrar host).")
@click.option("--password", help="Its password, for the registrar's 401/407.")
@click.option("--expires", type=click.IntRange(0), default=600, show_default=True, help="Asked interval.")
@click.option("--proxy", metavar="sip:HOST:PORT", help="Through this outbound proxy (a loose router).")
@click.option(
    "--listen",
    default="udp:127.0.0.1:0",
    show_default=True,
    help="udp:|tcp:HOST:PORT: our contact (TCP: the registrar's connection carries it).",
)
@click.option("--instance-id", help="RFC 5626 +sip.instance (a UUID); CRLF keep-alives over TCP.")
@click.option(
    "--stay",
    type=float,
    default=0.0,
    show_default=True,
    help="Keep the binding (refreshed) this many seconds, then unregister.",
)
@click.option("--unregister", is_flag=True, help="Remove the binding before exiting (Expires: 0).")
@click.option("--t1", type=float, default=0.5, show_default=True, help="RFC 3261 T1 in seconds.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def register(  # noqa: PLR0917 - click passes every option positionally by name
    registrar: str,
    user: str,
    password: str | None,
    expires: int,
    proxy: str | None,
    listen: str,
    instance_id: str | None,
    stay: float,
    unregister: bool,
    t1: float,
    log_level: str,
) -> None:
    """Register USER at the registrar; exit 0 once registered, 1 with the final response when
    refused. The binding is left to expire unless --unregister or --stay says otherwise."""
    configure(log_level)
    sip_uri_option(registrar, "--registrar")
    sip_uri_option(proxy, "--proxy")

    async def run() -> int:
        agent = await _agent(
            (listen,),
            cert=None,
            key=None,
            loopback_only=True,
            sdp_file=None,
            t1=t1,
            allow=(),
            trace=None,
            user=user,
            timer=None,
            rel100="off",
            lock_codec=False,
            limits=Limits(),
        )
        kind = ListenSpec.parse(listen).transport
        try:
            registration = await agent.register(
                registrar,
                user,
                password,
                expires=expires,
                transport=kind,
                route=proxy_route(proxy),
                instance_id=instance_id,
                retry=stay > 0,
            )
        except RegistrationError as exc:
            click.echo(f"refused: {exc.status_code} {exc.reason}")
            await agent.close(timeout=1.0)
            return 1
        click.echo(f"registered: {registration.contact} expires {registration.expires}")
        if stay > 0:
            await asyncio.sleep(stay)
        if unregister or stay > 0:
            code = await registration.unregister()
            click.echo(f"unregistered: {code}")
        else:
            registration.close()  # left to expire at the registrar
            click.echo(f"binding left for {registration.expires} s (--unregister removes it)")
        # Nothing is left to wait for but Timer K of the last REGISTER (absorbing a late copy of
        # its response): a second is plenty.
        report = await agent.close(timeout=1.0)
        if report:
            click.echo(report.format(), err=True)
        return 1 if report else 0

    raise SystemExit(asyncio.run(run()))


@main.command()
@click.option(
    "--listen",
    "listen",
    multiple=True,
    default=["udp:127.0.0.1:0"],
    show_default=True,
    help="udp:|tcp:HOST:PORT, repeatable ([::1] for IPv6): where callers reach the B2BUA.",
)
@click.option("--to", "to", required=True, help="Where every call is bridged to (sip:HOST:PORT).")
@click.option("--t1", type=float, default=0.5, show_default=True, help="RFC 3261 T1 in seconds.")
@click.option("--timer", "timer_spec", metavar="SE[,uac|uas]", help="Session timers on each leg (RFC 4028).")
@click.option("--min-se", type=click.IntRange(1), default=None, help="Smallest session interval accepted.")
@click.option(
    "--100rel",
    "rel100",
    type=click.Choice(["off", "supported", "required"]),
    default="off",
    show_default=True,
    help="Reliable provisional responses on each leg (RFC 3262).",
)
@click.option(
    "--loopback-only/--any-destination",
    default=True,
    show_default=True,
    help="Refuse to send anywhere but 127.0.0.0/8 and ::1 (the send guard).",
)
@click.option("--calls", type=int, default=None, help="Stop after this many calls have been bridged.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), help="Write a JSON-lines trace here.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@_worker_options
@_loop_option
def b2bua(  # noqa: PLR0917 - click passes every option positionally by name
    listen: tuple[str, ...],
    to: str,
    t1: float,
    timer_spec: str | None,
    min_se: int | None,
    rel100: str,
    loopback_only: bool,
    calls: int | None,
    duration: float | None,
    trace_path: str | None,
    log_level: str,
    workers: int,
    port_per_worker: bool,
    loop: str | None,
) -> None:
    """Bridge every call received on --listen to --to: a back-to-back user agent.

    Each call gets a second call of its own to --to; offers (hold, resume, late offers, early
    media), CANCEL, BYE, failures and INFO (DTMF) pass between the two legs. Prints the outcomes
    and the leak report at exit (interrupt, --calls or --duration); exits 1 if anything leaked.
    With --workers N, N processes share the UDP port (each places its second legs from a port of
    its own) or take a port each (--port-per-worker); see docs/performance.md.
    """
    configure(log_level)
    timer = timer_settings(timer_spec, min_se)
    try:
        specs = [ListenSpec.parse(spec) for spec in listen]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    if any(spec.transport == "tls" for spec in specs):
        raise click.BadParameter("the b2bua command listens on udp and tcp", param_hint="--listen")
    _check_workers(workers, port_per_worker, listen, None)
    try:
        target = parse_uri(to)
    except ParseError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    if not isinstance(target, SipUri):
        raise click.BadParameter(f"--to must be a sip: or sips: URI, not {to!r}", param_hint="--to")
    setup = B2buaSetup(
        listen=listen,
        to=to,
        t1=t1,
        timer=timer,
        rel100=rel100,
        loopback_only=loopback_only,
        calls=calls,
        duration=duration,
        trace_path=trace_path,
        log_level=log_level,
        loop=loop,
    )
    try:
        if workers == 1:
            raise SystemExit(run_loop(_serve_b2bua(setup, None), loop=loop))
        worker_setup = attrs.evolve(setup, calls=None, duration=None, shared=not port_per_worker)
        supervised = _supervise(
            workers,
            port_per_worker,
            listen,
            b2bua_worker,
            lambda listen: attrs.evolve(worker_setup, listen=listen),
            calls=calls,
            duration=duration,
            shutdown_timeout=5.0,
            monitoring=None,
            combine=B2buaWorkerReport.combined,
        )
        raise SystemExit(run_loop(supervised, loop=loop))
    except UsageError as exc:  # --loop uvloop without uvloop
        raise click.UsageError(str(exc)) from None


@attrs.frozen
class B2buaSetup:
    """What ``invsess b2bua`` was asked (what each worker gets with ``--workers``)."""

    listen: tuple[str, ...]
    to: str
    t1: float
    timer: TimerSettings | None
    rel100: str
    loopback_only: bool
    calls: int | None
    duration: float | None
    trace_path: str | None
    log_level: str
    loop: str | None
    #: A worker sharing the UDP ports with the others: its second legs go from a port of its own.
    shared: bool = False


async def _serve_b2bua(setup: B2buaSetup, link: WorkerLink | None) -> int:
    """``invsess b2bua``'s serving, in one process or as one of ``--workers``."""
    collector.tune()  # a call makes no cycles: the collector's passes are overhead
    trace = Trace() if setup.trace_path else None
    supported = option_tags(setup.timer, setup.rel100)
    prack = ("PRACK",) if "100rel" in supported else ()
    config = EndpointConfig(
        allow=("INVITE", "BYE", "OPTIONS", "UPDATE", "INFO", "MESSAGE", *prack),
        supported=supported,
        accept=("application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain"),
        timers=TimerConfig(t1=setup.t1, t2=max(4.0, setup.t1), t4=max(5.0, setup.t1)),
        total_memory=Limits().memory * MIB,  # each call is two legs' worth
    )
    specs = [ListenSpec.parse(spec) for spec in setup.listen]
    # A worker sharing the port places leg B from a port of its own, on the first address.
    outbound = [ListenSpec("udp", specs[0].host, 0)] if setup.shared else []
    try:
        bridge = await B2bua.create(
            specs, setup.to, config=config, trace=trace, timer=setup.timer, rel100=setup.rel100,
            guard=SendGuard.loopback_only() if setup.loopback_only else SendGuard(),
            reuse_port=setup.shared, outbound=outbound,
        )  # fmt: skip
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc}") from None
    listening = [
        f"listening on {transport}:{host}:{port}, bridging to {setup.to}"
        for transport, (host, port) in bridge.ua.endpoint.listeners.items()
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if link is None:
        for line in listening:
            click.echo(line, err=True)
        click.echo(f"event loop: {running_loop_name()}", err=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    else:
        link.attach()
        link.on_hurry = bridge.ua.hurry
        legs_b = [f"{t}:{h}:{p}" for t, (h, p) in bridge.outbound.endpoint.listeners.items()]
        link.ready(
            listen=[f"listening on {t}:{h}:{p}" for t, (h, p) in bridge.ua.endpoint.listeners.items()],
            pid=os.getpid(),
            loop=running_loop_name(),
            **({"leg_b": legs_b} if bridge.outbound is not bridge.ua else {}),
        )

    async def count() -> None:
        while True:
            bridged = sum(bridge.outcomes.values())
            if link is not None:
                link.progress(ended=bridged)
            if setup.calls is not None and bridged >= setup.calls:
                stop.set()
                return
            await asyncio.sleep(0.1)

    counter = loop.create_task(count())
    try:
        with contextlib.suppress(TimeoutError):
            if link is None:
                await asyncio.wait_for(stop.wait(), setup.duration)
            else:
                await link.stopped()
        counter.cancel()
        report = await bridge.close(linger=link.linger if link is not None else None)
    finally:
        if link is not None:
            link.detach()
    trace_path = setup.trace_path
    if trace is not None and trace_path:
        if link is not None:
            path = Path(trace_path)
            trace_path = str(path.with_name(f"{path.stem}.{link.rank}{path.suffix}"))
        trace.write(trace_path)
    if link is not None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        link.report(
            B2buaWorkerReport(
                rank=link.rank,
                pid=os.getpid(),
                started=bridge.started,
                outcomes=dict(bridge.outcomes),
                leaked_blocks=report.total_blocks,
                leak_report=report.format(),
                cpu_seconds=usage.ru_utime + usage.ru_stime,
                max_rss_kib=usage.ru_maxrss,
            )
        )
        return 1 if report else 0
    outcomes = ", ".join(f"{code} x{n}" for code, n in sorted(bridge.outcomes.items())) or "none"
    click.echo(f"calls bridged: {bridge.started}; outcomes: {outcomes}", err=True)
    click.echo(report.format(), err=True)
    return 1 if report else 0


def b2bua_worker(link: WorkerLink, setup: B2buaSetup) -> int:
    """One worker of ``invsess b2bua --workers N``."""
    configure(setup.log_level)
    try:
        return run_loop(_serve_b2bua(setup, link), loop=setup.loop)
    except click.ClickException as exc:
        link.failed(exc.format_message())
        return 2
    except UsageError as exc:
        link.failed(str(exc))
        return 2


@main.command()
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--call-id", "call_id", help="Draw this call only (its messages and session states).")
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False), help="Also draw the ladder as SVG here.")
@click.option(
    "--pcap", "pcap_path", type=click.Path(dir_okay=False), help="Also export the messages as pcap here."
)
@click.option(
    "--colour/--no-colour", "colour", default=None, help="Colour the terminal ladder (default: on a TTY)."
)
def ladder(
    trace_file: str, call_id: str | None, svg_path: str | None, pcap_path: str | None, colour: bool | None
) -> None:
    """Draw the call flow of a JSON-lines trace as a ladder diagram, timed from its first event."""
    try:
        trace = Trace.read(trace_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if call_id is not None:
        calls = trace.call_ids()
        if call_id not in calls:
            known = ", ".join(calls[:10]) + (f" ... ({len(calls)} calls)" if len(calls) > 10 else "")
            raise click.ClickException(f"no call {call_id!r} in {trace_file}; its calls: {known or 'none'}")
        trace = trace.for_call(call_id)
    trace = trace.rebased()
    use_colour = sys.stdout.isatty() if colour is None else colour
    click.echo(render_text(trace, colour=use_colour), color=use_colour)
    if svg_path:
        with open(svg_path, "w", encoding="utf-8") as fh:
            fh.write(render_svg(trace))
        click.echo(f"svg: {svg_path}", err=True)
    if pcap_path:
        frames = write_pcap(trace, pcap_path)
        click.echo(f"pcap: {frames} frames in {pcap_path}", err=True)


if __name__ == "__main__":
    main()
