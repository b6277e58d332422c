"""The ``invsess`` command line (click)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys

import click

from invsess import __version__
from invsess.aio import AsyncEndpoint, ListenSpec, SendGuard
from invsess.demo import run_demo
from invsess.demo_call import run_call
from invsess.endpoint import KNOWN_METHODS, CancelReceived, Endpoint, EndpointConfig
from invsess.logs import configure
from invsess.sip import make_response
from invsess.trace import Trace, render_svg, render_text, write_pcap
from invsess.transaction import RequestReceived, TimerConfig


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


@main.command()
@click.option(
    "--listen",
    "listen",
    multiple=True,
    default=["udp:127.0.0.1:5070"],
    show_default=True,
    help="udp:|tcp:|tls:HOST:PORT, repeatable ([::1] for IPv6).",
)
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate chain (PEM).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option(
    "--loopback-only/--any-destination",
    default=True,
    show_default=True,
    help="Refuse to send anywhere but 127.0.0.0/8 and ::1 (the send guard).",
)
@click.option(
    "--allow",
    "allow",
    multiple=True,
    type=click.Choice(sorted(KNOWN_METHODS - {"ACK", "CANCEL"}), case_sensitive=False),
    help="Serve this method too (repeatable); OPTIONS is always served.",
)
@click.option(
    "--answer-code",
    type=click.IntRange(200, 699),
    default=480,
    show_default=True,
    help="Final answer to served requests other than OPTIONS (until sessions answer calls).",
)
@click.option("--t1", type=float, default=0.5, show_default=True, help="RFC 3261 T1 in seconds.")
@click.option(
    "--trace", "trace_path", type=click.Path(dir_okay=False), help="Write a JSON-lines trace here at exit."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def answer(  # noqa: PLR0917 - click passes every option positionally by name
    listen: tuple[str, ...],
    cert: str | None,
    key: str | None,
    loopback_only: bool,
    allow: tuple[str, ...],
    answer_code: int,
    t1: float,
    trace_path: str | None,
    duration: float | None,
    log_level: str,
) -> None:
    """Serve as a live endpoint until interrupted.

    OPTIONS get 200; methods given with --allow get --answer-code (CANCEL: 200, then 487);
    everything else gets the answer RFC 3261 prescribes (405, 501, 481, 400, 420, ...).
    """

    configure(log_level)
    try:
        specs = [ListenSpec.parse(spec) for spec in listen]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    server_ssl = None
    if any(s.transport == "tls" for s in specs):
        if not (cert and key):
            raise click.UsageError("a tls listener needs --cert and --key")
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)

    methods = ("OPTIONS", *dict.fromkeys(m.upper() for m in allow if m.upper() != "OPTIONS"))
    config = EndpointConfig(allow=methods, timers=TimerConfig(t1=t1, t2=max(4.0, t1), t4=max(5.0, t1)))

    async def answer_requests(aep: AsyncEndpoint) -> None:
        while True:
            event = await aep.next_event()
            if isinstance(event, RequestReceived):
                reply = make_response(event.request, answer_code, to_tag=aep.endpoint.new_tag())
                aep.endpoint.respond(event.transaction, reply, aep.now())
            elif isinstance(event, CancelReceived):
                terminated = make_response(event.invite.request, 487, to_tag=aep.endpoint.new_tag())
                aep.endpoint.respond(event.invite, terminated, aep.now())
            aep.flush()

    async def serve() -> int:
        guard = SendGuard.loopback_only() if loopback_only else SendGuard()
        trace = Trace() if trace_path else None
        aep = AsyncEndpoint(Endpoint(config), guard=guard, server_ssl=server_ssl, trace=trace)
        for spec in specs:
            host, port = await aep.listen(spec)
            click.echo(f"listening on {spec.transport}:{host}:{port}", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        worker = loop.create_task(answer_requests(aep))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        worker.cancel()
        report = await aep.close()
        if trace is not None and trace_path:
            trace.write(trace_path)
            click.echo(f"trace: {len(trace)} events in {trace_path}", err=True)
        click.echo(f"stats: {dict(aep.endpoint.stats)}", err=True)
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
