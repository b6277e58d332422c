"""The ``invsess`` command line (click)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from invsess import __version__
from invsess.aio import Call, CallError, ListenSpec, SendGuard, UserAgent
from invsess.b2bua import B2bua
from invsess.demo import run_demo
from invsess.demo_call import run_call
from invsess.endpoint import KNOWN_METHODS, EndpointConfig
from invsess.inv import InviteState, TimerSettings, option_tags
from invsess.logs import configure
from invsess.sdp import parse_sdp
from invsess.sip import LocalProtocolError
from invsess.trace import Trace, render_svg, render_text, write_pcap
from invsess.transaction import TimerConfig


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
    "v=0\r\no=invsess 1 1 IN IP4 {host}\r\ns=invsess\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)


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
                help="Our SDP (capabilities) from a file; default: PCMU, PCMA, telephone-event.",
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
        sdp = parse_sdp(DEFAULT_SDP.format(host=host, port=40000))
    supported = option_tags(timer, rel100)
    prack = ("PRACK",) if "100rel" in supported else ()
    methods = tuple(
        dict.fromkeys(("INVITE", "BYE", "OPTIONS", "UPDATE", *prack, *(m.upper() for m in allow)))
    )
    timers = TimerConfig(t1=t1, t2=max(4.0, t1), t4=max(5.0, t1))
    config = EndpointConfig(allow=methods, timers=timers, supported=supported)
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
    )
    for transport, (host, port) in agent.endpoint.listeners.items():
        click.echo(f"listening on {transport}:{host}:{port}", err=True)
    return agent


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


@main.command()
@_listen_options
@click.option(
    "--allow",
    "allow",
    multiple=True,
    type=click.Choice(sorted(KNOWN_METHODS - {"ACK", "CANCEL"}), case_sensitive=False),
    help="Serve this method too (repeatable); INVITE, BYE and OPTIONS are always served.",
)
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
@click.option("--calls", type=int, default=None, help="Stop after this many calls have ended.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
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
    trace_path: str | None,
    log_level: str,
    allow: tuple[str, ...],
    answer_code: int,
    ring: float,
    ring_code: int,
    calls: int | None,
    duration: float | None,
) -> None:
    """Answer calls until interrupted (or --calls/--duration): an auto-answering UAS for testing.

    INVITEs get --answer-code after --ring seconds of ringing (a CANCEL gets 200 and 487); OPTIONS
    and --allow'ed methods get 200; everything else the answer RFC 3261 prescribes (405, 501, 481,
    400, 420, ...). Prints counters and the leak report at exit; exits 1 if anything leaked.
    """
    configure(log_level)
    timer = timer_settings(timer_spec, min_se)

    async def serve() -> int:
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
            user="answer",
            timer=timer,
            rel100=rel100,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        ended = 0

        async def handle(call: Call) -> None:
            nonlocal ended
            with contextlib.suppress(LocalProtocolError):  # cancelled while ringing, ...
                if ring > 0:
                    await call.answer(ring_code)
                    await asyncio.sleep(ring)
                await call.answer(answer_code)
            with contextlib.suppress(LocalProtocolError):
                await call.wait_for(InviteState.DISCONNECTED, timeout=None)
            await call.close()
            ended += 1
            if calls is not None and ended >= calls:
                stop.set()

        async def accept() -> None:
            tasks = set()
            while True:
                call = await agent.incoming()
                task = loop.create_task(handle(call))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        acceptor = loop.create_task(accept())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        acceptor.cancel()
        report = await agent.close()
        if trace is not None and trace_path:
            trace.write(trace_path)
            click.echo(f"trace: {len(trace)} events in {trace_path}", err=True)
        click.echo(f"calls ended: {ended}; stats: {dict(agent.endpoint.stats)}", err=True)
        click.echo(report.format(), err=True)
        return 1 if report else 0

    raise SystemExit(asyncio.run(serve()))


@main.command()
@click.argument("uri")
@_listen_options
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
    trace_path: str | None,
    log_level: str,
    calls: int,
    rate: float,
    hold: float,
    transport: str | None,
    answer_timeout: float,
) -> None:
    """Place --calls calls to URI at --rate per second, each held --hold seconds, then BYE.

    Prints a summary; exits 0 only if every call was answered and ended cleanly.
    """
    configure(log_level)
    timer = timer_settings(timer_spec, min_se)
    if rate <= 0:
        raise click.BadParameter("must be positive", param_hint="--rate")
    if transport and not any(spec.startswith(transport) for spec in listen):
        listen = (*listen, f"{transport}:127.0.0.1:0")

    async def run() -> int:
        trace = Trace() if trace_path else None
        agent = await _agent(
            listen,
            cert=cert,
            key=key,
            loopback_only=loopback_only,
            sdp_file=sdp_file,
            t1=t1,
            allow=(),
            trace=trace,
            user="call",
            timer=timer,
            rel100=rel100,
        )
        outcomes: list[int | str] = []

        async def one() -> None:
            try:
                placed = await agent.call(uri, transport=transport)
            except (LocalProtocolError, CallError) as exc:
                outcomes.append(f"error: {exc}")
                return
            try:
                await placed.wait_for(InviteState.CONFIRMED, timeout=answer_timeout)
                await asyncio.sleep(hold)
                await placed.hangup()
                outcomes.append(200)
            except (LocalProtocolError, CallError, TimeoutError):
                if placed.state is not InviteState.DISCONNECTED:
                    with contextlib.suppress(LocalProtocolError, TimeoutError):
                        async with asyncio.timeout(answer_timeout):
                            await placed.hangup()
                outcomes.append(placed.cause or "timeout")
            finally:
                await placed.close()

        tasks = []
        for i in range(calls):
            if i:
                await asyncio.sleep(1.0 / rate)
            tasks.append(asyncio.get_running_loop().create_task(one()))
        await asyncio.gather(*tasks)
        report = await agent.close()
        if trace is not None and trace_path:
            trace.write(trace_path)
        ok = outcomes.count(200)
        failures = Counter(str(o) for o in outcomes if o != 200)
        detail = ", ".join(f"{code} x{n}" for code, n in sorted(failures.items()))
        click.echo(f"{calls} calls: {ok} succeeded, {calls - ok} failed" + (f" ({detail})" if detail else ""))
        if report:
            click.echo(report.format(), err=True)
        return 0 if ok == calls and not report else 1

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
) -> None:
    """Bridge every call received on --listen to --to: a back-to-back user agent.

    Each call gets a second call of its own to --to; offers (hold, resume, late offers, early
    media), CANCEL, BYE, failures and INFO (DTMF) pass between the two legs. Prints the outcomes
    and the leak report at exit (interrupt, --calls or --duration); exits 1 if anything leaked.
    """
    configure(log_level)
    timer = timer_settings(timer_spec, min_se)
    try:
        specs = [ListenSpec.parse(spec) for spec in listen]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    if any(spec.transport == "tls" for spec in specs):
        raise click.BadParameter("the b2bua command listens on udp and tcp", param_hint="--listen")

    async def serve() -> int:
        trace = Trace() if trace_path else None
        supported = option_tags(timer, rel100)
        prack = ("PRACK",) if "100rel" in supported else ()
        config = EndpointConfig(
            allow=("INVITE", "BYE", "OPTIONS", "UPDATE", "INFO", "MESSAGE", *prack),
            supported=supported,
            accept=("application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain"),
            timers=TimerConfig(t1=t1, t2=max(4.0, t1), t4=max(5.0, t1)),
        )
        try:
            bridge = await B2bua.create(
                specs, to, config=config, trace=trace, timer=timer, rel100=rel100,
                guard=SendGuard.loopback_only() if loopback_only else SendGuard(),
            )  # fmt: skip
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--to") from None
        except OSError as exc:
            raise click.ClickException(f"cannot listen: {exc}") from None
        for transport, (host, port) in bridge.ua.endpoint.listeners.items():
            click.echo(f"listening on {transport}:{host}:{port}, bridging to {to}", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)

        async def count() -> None:
            while calls is None or sum(bridge.outcomes.values()) < calls:
                await asyncio.sleep(0.1)
            stop.set()

        counter = loop.create_task(count())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        counter.cancel()
        report = await bridge.close()
        if trace is not None and trace_path:
            trace.write(trace_path)
        outcomes = ", ".join(f"{code} x{n}" for code, n in sorted(bridge.outcomes.items())) or "none"
        click.echo(f"calls bridged: {bridge.started}; outcomes: {outcomes}", err=True)
        click.echo(report.format(), err=True)
        return 1 if report else 0

    raise SystemExit(asyncio.run(serve()))


@main.command()
@click.argument("trace_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False), help="Also draw the ladder as SVG here.")
@click.option(
    "--pcap", "pcap_path", type=click.Path(dir_okay=False), help="Also export the messages as pcap here."
)
@click.option(
    "--colour/--no-colour", "colour", default=None, help="Colour the terminal ladder (default: on a TTY)."
)
def ladder(trace_file: str, svg_path: str | None, pcap_path: str | None, colour: bool | None) -> None:
    """Draw the call flow of a JSON-lines trace as a ladder diagram."""
    try:
        trace = Trace.read(trace_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
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
