"""Hardening probes against a real ``invsess answer`` subprocess, on loopback only.

Run: ``python benchmarks/stress.py SUBCOMMAND [options]`` (``--help`` on each). Every probe starts
``invsess answer`` with its default options (plus ``--listen`` on free ports and whatever
``--answer-arg`` adds), attacks it from one loopback address (127.0.0.2) while a legitimate client
works from another (127.0.0.3), prints its figures, and exits 0 only when the target holds:

* ``flood``     INVITEs (never ACKed, never answered) at ``--rate`` from one source while another
                source sends OPTIONS every 0.5 s: >= 90% of the pings answered within 1 s.
* ``slowloris`` TCP connections trickling an INVITE one byte per second, while another source
                sends OPTIONS over TCP every 0.5 s: >= 90% of the slow connections closed by the
                server within 60 s, >= 95% of the pings answered.
* ``shutdown``  calls answered, their caller killed (orphaned calls), then SIGINT: exit 0 within
                15 s and ``0 leaked blocks``.
* ``fdlimit``   ``invsess answer`` under ``ulimit -n 256``, 400 TCP connections opened at once:
                <= 200 lines of stderr, UDP OPTIONS still answered, TCP OPTIONS answered after.

The defaults are the issue's figures; the test suite runs short versions (``tests/test_stress.py``).
``--json`` prints the figures as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

ATTACKER = "127.0.0.2"
CLIENT = "127.0.0.3"
SDP = (
    "v=0\r\no=flood 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio 49172 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
STATUS = re.compile(rb"^SIP/2\.0 (\d{3})")
CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
TO_TAG = re.compile(rb"\r\n(?:To|t)[ \t]*:[^\r\n]*;tag=([^;\r\n>]+)", re.IGNORECASE)


# -- messages --------------------------------------------------------------------------------


def invite(target: tuple[str, int], local: tuple[str, int], n: int, transport: str = "UDP") -> bytes:
    """An INVITE with an SDP offer; Call-ID and branch from ``n``."""
    host, port = local
    body = SDP.format(host=host)
    return (
        f"INVITE sip:bob@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bKflood{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood@{host}>;tag=f{n}\r\n"
        f"To: <sip:bob@{target[0]}>\r\n"
        f"Call-ID: flood-{n}@{host}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:flood@{host}:{port};transport={transport.lower()}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def ack_for(response: bytes, target: tuple[str, int], local: tuple[str, int]) -> bytes:
    """The ACK for the 2xx of an :func:`invite` (a new branch, the To tag of the 2xx)."""
    call_id = CALL_ID.search(response)
    tag = TO_TAG.search(response)
    if call_id is None or tag is None:
        raise ValueError("not a 2xx of ours")
    n = call_id.group(1).decode().split("-", 1)[1].split("@", 1)[0]
    host, port = local
    return (
        f"ACK sip:bob@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKack{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood@{host}>;tag=f{n}\r\n"
        f"To: <sip:bob@{target[0]}>;tag={tag.group(1).decode()}\r\n"
        f"Call-ID: {call_id.group(1).decode()}\r\n"
        "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def options(target: tuple[str, int], local: tuple[str, int], n: int, transport: str = "UDP") -> bytes:
    """An OPTIONS ping; Call-ID ``ping-n``."""
    host, port = local
    return (
        f"OPTIONS sip:bob@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bKping{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:ping@{host}>;tag=p{n}\r\n"
        f"To: <sip:bob@{target[0]}>\r\n"
        f"Call-ID: ping-{n}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> int | None:
    """The status code of a response, None for anything else."""
    match = STATUS.match(data)
    return int(match.group(1)) if match else None


# -- the server under test -------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for UDP and TCP on 127.0.0.1 (bound, read, released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Answer:
    """``invsess answer`` as a subprocess; stderr collected in a file."""

    def __init__(
        self,
        listen: list[str],
        extra: list[str],
        *,
        nofile: int | None = None,
        stderr_path: str | None = None,
    ) -> None:
        args = [sys.executable, "-m", "invsess.cli", "answer"]
        for spec in listen:
            args += ["--listen", spec]
        args += extra
        self.stderr_path = stderr_path or f"/tmp/invsess-stress-{os.getpid()}-{time.monotonic_ns()}.err"
        self._err = open(self.stderr_path, "w+b")  # noqa: SIM115 - closed in stop()

        if nofile is not None:  # exactly what an operator does: ulimit -n, then the command
            args = ["sh", "-c", f'ulimit -n {int(nofile)} && exec "$@"', "sh", *args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._err)
        self.exit_code: int | None = None
        self.exit_seconds: float | None = None

    def wait_listening(self, count: int, timeout: float = 20.0) -> None:
        """Wait for the ``listening on`` lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stderr().count("listening on ") >= count:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"invsess answer exited early:\n{self.stderr()}")
            time.sleep(0.05)
        raise RuntimeError(f"invsess answer did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        """Everything written to stderr so far."""
        with open(self.stderr_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> None:
        """Send ``sig`` and wait for the exit (timed)."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait()
        self.exit_seconds = time.monotonic() - start

    def stop(self) -> None:
        """Make sure the process is gone and the file closed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
        with contextlib.suppress(OSError):
            os.unlink(self.stderr_path)


def leaked_blocks(stderr: str) -> int | None:
    """The ``N leaked blocks`` figure of the exit report."""
    match = re.search(r"(\d+) leaked blocks", stderr)
    return int(match.group(1)) if match else None


# -- UDP helpers -----------------------------------------------------------------------------


class Collector(asyncio.DatagramProtocol):
    """Counts what arrives; calls ``on_datagram`` for each."""

    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None] | None = None) -> None:
        self.codes: Counter[int] = Counter()
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Count by status."""
        code = status_of(data)
        if code is not None:
            self.codes[code] += 1
        if self.on_datagram is not None:
            self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors are expected when the server is gone."""


class Pinger:
    """OPTIONS every ``interval`` over UDP from ``CLIENT``; records each ping's answer delay."""

    def __init__(self, target: tuple[str, int], interval: float = 0.5) -> None:
        self.target = target
        self.interval = interval
        self.sent: dict[str, float] = {}
        self.delays: dict[str, float] = {}

    def _received(self, data: bytes, _addr: tuple[str, int]) -> None:
        match = CALL_ID.search(data)
        if match is None or status_of(data) != 200:
            return
        call_id = match.group(1).decode()
        if call_id in self.sent and call_id not in self.delays:
            self.delays[call_id] = time.monotonic() - self.sent[call_id]

    async def run(self, duration: float) -> None:
        """Ping for ``duration`` seconds, then wait 1 s for the last answers."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: Collector(self._received), local_addr=(CLIENT, 0)
        )
        local = transport.get_extra_info("sockname")
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < duration:
            data = options(self.target, local, n)
            self.sent[f"ping-{n}@{local[0]}"] = time.monotonic()
            transport.sendto(data, self.target)
            n += 1
            await asyncio.sleep(self.interval)
        await asyncio.sleep(1.0)
        transport.close()

    def within(self, seconds: float) -> float:
        """Share of pings answered within ``seconds``."""
        if not self.sent:
            return 0.0
        return sum(1 for d in self.delays.values() if d <= seconds) / len(self.sent)


async def udp_ping_once(target: tuple[str, int], timeout: float = 2.0, local_host: str = CLIENT) -> bool:
    """One OPTIONS over UDP; True when a 200 came back within ``timeout``."""
    got = asyncio.get_running_loop().create_future()

    def received(data: bytes, _addr: tuple[str, int]) -> None:
        if status_of(data) == 200 and not got.done():
            got.set_result(True)

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Collector(received), local_addr=(local_host, 0)
    )
    try:
        transport.sendto(
            options(target, transport.get_extra_info("sockname"), int(time.monotonic_ns())), target
        )
        async with asyncio.timeout(timeout):
            return bool(await got)
    except TimeoutError:
        return False
    finally:
        transport.close()


async def tcp_ping_once(target: tuple[str, int], timeout: float = 2.0, local_host: str = CLIENT) -> bool:
    """One OPTIONS over a new TCP connection; True when a 200 came back within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(target[0], target[1], local_addr=(local_host, 0))
            try:
                local = writer.get_extra_info("sockname")
                writer.write(options(target, local, int(time.monotonic_ns()), "TCP"))
                head = await reader.readuntil(b"\r\n\r\n")
                return status_of(head) == 200
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return False


# -- probes ----------------------------------------------------------------------------------


def probe_flood(args: argparse.Namespace) -> dict[str, Any]:
    """INVITE flood from ATTACKER, OPTIONS pings from CLIENT."""
    port = free_port()
    target = ("127.0.0.1", port)
    server = Answer([f"udp:127.0.0.1:{port}"], args.answer_arg)
    try:
        server.wait_listening(1)
        flood_codes: Counter[int] = Counter()
        flood_final: dict[bytes, int] = {}
        pinger = Pinger(target)

        def flood_received(data: bytes, _addr: tuple[str, int]) -> None:
            code = status_of(data)
            match = CALL_ID.search(data)
            if code is not None and code >= 200 and match is not None:
                flood_final.setdefault(match.group(1), code)

        async def run() -> float:
            loop = asyncio.get_running_loop()
            collector = Collector(flood_received)
            transport, _ = await loop.create_datagram_endpoint(lambda: collector, local_addr=(ATTACKER, 0))
            local = transport.get_extra_info("sockname")
            ping_task = loop.create_task(pinger.run(args.count / args.rate + args.tail))
            start = time.monotonic()
            for n in range(args.count):
                due = start + n / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                transport.sendto(invite(target, local, n), target)
            sent_for = time.monotonic() - start
            await ping_task
            transport.close()
            flood_codes.update(collector.codes)
            return sent_for

        sent_for = asyncio.run(run())
        final_by_call = flood_final
        server.interrupt(timeout=args.stop_timeout)
        err = server.stderr()
        within = pinger.within(1.0)
        figures = {
            "probe": "flood",
            "invites": args.count,
            "rate": args.rate,
            "sent_seconds": round(sent_for, 2),
            "flood_responses": dict(sorted(flood_codes.items())),
            "flood_calls_by_final": dict(sorted(Counter(final_by_call.values()).items())),
            "flood_unanswered": args.count - len(final_by_call),
            "pings": len(pinger.sent),
            "pings_answered": len(pinger.delays),
            "pings_within_1s": round(within, 3),
            "ping_delay_max": round(max(pinger.delays.values(), default=0.0), 3),
            "exit_code": server.exit_code,
            "exit_seconds": round(server.exit_seconds or 0, 2),
            "leaked_blocks": leaked_blocks(err),
            "stderr_lines": err.count("\n"),
            "ok": within >= 0.90,
        }
        if args.verbose:
            print(err[-4000:])
        return figures
    finally:
        server.stop()


def probe_slowloris(args: argparse.Namespace) -> dict[str, Any]:
    """Slow TCP connections from ATTACKER, TCP OPTIONS from CLIENT."""
    port = free_port(socket.SOCK_STREAM)
    target = ("127.0.0.1", port)
    server = Answer([f"tcp:127.0.0.1:{port}"], args.answer_arg)
    try:
        server.wait_listening(1)
        closed_after: list[float] = []
        opened = 0
        pings: list[bool] = []

        async def slow(n: int, stop: asyncio.Event) -> None:
            nonlocal opened
            try:
                reader, writer = await asyncio.open_connection(*target, local_addr=(ATTACKER, 0))
            except OSError:
                closed_after.append(0.0)  # refused at once: closed by the server too
                return
            opened += 1
            start = time.monotonic()
            data = invite(target, writer.get_extra_info("sockname"), n, "TCP")
            i = 0
            try:
                while not stop.is_set():
                    if i < len(data):
                        writer.write(data[i : i + 1])
                        i += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            chunk = await reader.read(4096)
                            if not chunk:  # EOF: the server closed it
                                closed_after.append(time.monotonic() - start)
                                return
            except (ConnectionError, OSError):
                closed_after.append(time.monotonic() - start)
            finally:
                writer.close()

        async def legit(duration: float) -> None:
            start = time.monotonic()
            while time.monotonic() - start < duration:
                pings.append(await tcp_ping_once(target, timeout=2.0))
                await asyncio.sleep(0.5)

        async def run() -> None:
            stop = asyncio.Event()
            tasks = []
            for n in range(args.connections):
                tasks.append(asyncio.get_running_loop().create_task(slow(n, stop)))
                await asyncio.sleep(args.spread / max(args.connections, 1))
            await legit(args.window)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(run())
        server.interrupt(timeout=args.stop_timeout)
        err = server.stderr()
        closed = sum(1 for t in closed_after if t <= args.window)
        figures = {
            "probe": "slowloris",
            "connections": args.connections,
            "opened": opened,
            "closed_by_server_within_window": closed,
            "closed_share": round(closed / args.connections, 3),
            "close_after_max": round(max(closed_after, default=0.0), 2),
            "window_seconds": args.window,
            "pings": len(pings),
            "pings_answered_share": round(sum(pings) / max(len(pings), 1), 3),
            "exit_code": server.exit_code,
            "leaked_blocks": leaked_blocks(err),
            "ok": closed / args.connections >= 0.90 and sum(pings) / max(len(pings), 1) >= 0.95,
        }
        if args.verbose:
            print(err[-4000:])
        return figures
    finally:
        server.stop()


def probe_shutdown(args: argparse.Namespace) -> dict[str, Any]:
    """Calls answered and ACKed by a raw UAC that then vanishes; then SIGINT (or SIGTERM)."""
    port = free_port()
    target = ("127.0.0.1", port)
    server = Answer([f"udp:127.0.0.1:{port}"], args.answer_arg)
    try:
        server.wait_listening(1)
        confirmed = 0

        async def run() -> None:
            nonlocal confirmed
            loop = asyncio.get_running_loop()
            acked: set[bytes] = set()
            holder: dict[str, asyncio.DatagramTransport] = {}

            def received(data: bytes, _addr: tuple[str, int]) -> None:
                code = status_of(data)
                call_id = CALL_ID.search(data)
                if code == 200 and call_id and b" INVITE" in data.split(b"CSeq:", 1)[-1][:30]:
                    holder["t"].sendto(ack_for(data, target, local), target)
                    acked.add(call_id.group(1))

            transport, _ = await loop.create_datagram_endpoint(
                lambda: Collector(received), local_addr=(ATTACKER, 0)
            )
            holder["t"] = transport
            local = transport.get_extra_info("sockname")
            for n in range(args.calls):
                transport.sendto(invite(target, local, n), target)
                await asyncio.sleep(1.0 / args.rate)
            deadline = time.monotonic() + 20
            while len(acked) < args.calls and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            confirmed = len(acked)
            transport.close()  # the caller is gone: BYEs will go unanswered

        asyncio.run(run())
        time.sleep(0.5)
        server.interrupt(signal.SIGTERM if args.sigterm else signal.SIGINT, timeout=args.stop_timeout)
        err = server.stderr()
        still_up = re.search(r"(\d+) calls? still up at shutdown", err)
        figures = {
            "probe": "shutdown",
            "calls": args.calls,
            "confirmed": confirmed,
            "signal": "SIGTERM" if args.sigterm else "SIGINT",
            "exit_code": server.exit_code,
            "exit_seconds": round(server.exit_seconds or 0, 2),
            "leaked_blocks": leaked_blocks(err),
            "still_up_reported": int(still_up.group(1)) if still_up else None,
            "ok": server.exit_code == 0 and (server.exit_seconds or 99) <= 15 and leaked_blocks(err) == 0,
        }
        if args.verbose:
            print(err[-4000:])
        return figures
    finally:
        server.stop()


def probe_fdlimit(args: argparse.Namespace) -> dict[str, Any]:
    """``ulimit -n`` low, many TCP connections; UDP must go on, TCP must come back."""
    port = free_port()
    target = ("127.0.0.1", port)
    server = Answer([f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"], args.answer_arg, nofile=args.nofile)
    try:
        server.wait_listening(2)
        socks: list[socket.socket] = []
        refused = 0
        udp_ok: list[bool] = []
        tcp_during: list[bool] = []

        async def run() -> bool:
            nonlocal refused
            for _ in range(args.connections):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.bind((ATTACKER, 0))
                try:
                    s.connect(target)
                except BlockingIOError:
                    pass
                except OSError:
                    refused += 1
                    s.close()
                    continue
                socks.append(s)
            for _ in range(int(args.hold / 0.5)):
                udp_ok.append(await udp_ping_once(target, timeout=1.0))
                await asyncio.sleep(0.5)
            tcp_during.append(await tcp_ping_once(target, timeout=1.0))
            for s in socks:
                s.close()
            await asyncio.sleep(args.settle)
            results = [await tcp_ping_once(target, timeout=3.0) for _ in range(3)]
            return all(results)

        tcp_after = asyncio.run(run())
        server.interrupt(timeout=args.stop_timeout)
        err = server.stderr()
        lines = err.count("\n")
        udp_share = sum(udp_ok) / max(len(udp_ok), 1)
        figures = {
            "probe": "fdlimit",
            "nofile": args.nofile,
            "connections": args.connections,
            "connect_refused_locally": refused,
            "stderr_lines": lines,
            "stderr_bytes": len(err),
            "udp_pings_answered_share": round(udp_share, 3),
            "tcp_during": tcp_during[0] if tcp_during else None,
            "tcp_after": tcp_after,
            "exit_code": server.exit_code,
            "leaked_blocks": leaked_blocks(err),
            "ok": lines <= 200 and udp_share >= 0.95 and tcp_after,
        }
        if args.verbose:
            print(err[-4000:])
        return figures
    finally:
        server.stop()


def main() -> None:
    """Parse the command line and run one probe."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="probe", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--answer-arg", action="append", default=[], help="extra option for invsess answer")
    common.add_argument("--stop-timeout", type=float, default=60.0, help="wait this long for the exit")
    common.add_argument("--json", action="store_true", help="figures as JSON on the last line")
    common.add_argument("-v", "--verbose", action="store_true", help="print the tail of the server's stderr")

    p = sub.add_parser("flood", parents=[common], help=probe_flood.__doc__)
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=1_000.0)
    p.add_argument("--tail", type=float, default=2.0, help="keep pinging this long after the flood")

    p = sub.add_parser("slowloris", parents=[common], help=probe_slowloris.__doc__)
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--window", type=float, default=60.0, help="seconds the server has to close them")
    p.add_argument("--spread", type=float, default=2.0, help="open the connections over this many seconds")

    p = sub.add_parser("shutdown", parents=[common], help=probe_shutdown.__doc__)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--sigterm", action="store_true", help="SIGTERM instead of SIGINT")

    p = sub.add_parser("fdlimit", parents=[common], help=probe_fdlimit.__doc__)
    p.add_argument("--nofile", type=int, default=256)
    p.add_argument("--connections", type=int, default=400)
    p.add_argument("--hold", type=float, default=5.0, help="keep them open this long")
    p.add_argument("--settle", type=float, default=1.0, help="wait this long after closing them")

    args = parser.parse_args()
    probes = {
        "flood": probe_flood,
        "slowloris": probe_slowloris,
        "shutdown": probe_shutdown,
        "fdlimit": probe_fdlimit,
    }
    figures = probes[args.probe](args)
    for key, value in figures.items():
        print(f"{key}: {value}")
    if args.json:
        print(json.dumps(figures))
    raise SystemExit(0 if figures["ok"] else 1)


if __name__ == "__main__":
    main()
