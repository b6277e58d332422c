"""Calls per second: the clean maximum of several answering sides, stepped in the same run.

Run: ``python benchmarks/cps.py [--sipp PATH] [--workers N] [--seconds 15] [--hold S]``.

Each contender is an auto-answering UAS on 127.0.0.1:

=================  =====================================================================
``invsess``        ``invsess answer`` (one process)
``invsess-workers`` ``invsess answer --workers N`` (N: ``--workers``, default the core count)
``pjsua2``         PJSIP through pjsua2-python (``benchmarks/peers/pjsua2_uas.py``)
``sippy``          sippy 2.5 (``benchmarks/peers/sippy_uas.py``: sippy ships B2BUAs, no UAS)
``sipp``           SIPp's built-in UAS, the ceiling (with ``--sipp`` only)
=================  =====================================================================

For each contender the rate goes up from ``--start`` by ``--step`` (or takes the ``--rates``
given): a fresh contender, ``rate * --seconds`` calls at ``rate`` per second (INVITE, 100/180,
200, ACK, ``--hold`` seconds, BYE, 200), then the contender is stopped. A run is **clean** when
every call succeeded and the caller retransmitted less than 1% as many messages as it placed
calls (for invsess, also: it exited reporting ``0 leaked blocks``); the last clean rate is the
contender's clean maximum. Printed for each run and, at the end, for each contender at its clean
maximum: CPU (% of one core, the whole process tree: every worker counts), peak RSS (the sum of
the processes' peaks), and the average response time INVITE -> 200.

The calls come from SIPp's built-in UAC when ``--sipp PATH`` is given (SIP engineers have one;
``-t un``: a socket per call, so that the calls come from many source ports and
``SO_REUSEPORT`` spreads them over the workers), otherwise from ``benchmarks/loadgen.py``, a
small Python generator (16 source ports) that is lighter than SIPp in both senses: it only
knows this flow, and it spends CPU of its own on the same cores (printed as ``gen cpu``: when it
nears 100% the generator, not the contender, is the limit). Everything shares the machine's
cores: compare contenders measured in the same run, not figures from another machine.

``--hold S`` turns a run into a concurrency run: each call stays up S seconds, so ``rate * S``
calls are up at once (100 calls/s with ``--hold 100 --seconds 100``: 10,000 calls up).
``--json`` prints every run and the summary as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("invsess", "invsess-workers", "pjsua2", "sippy", "sipp")
HOST = "127.0.0.1"
#: Clean: fewer retransmissions than this share of the calls.
RETRANSMISSION_LIMIT = 0.01
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A UDP port free on 127.0.0.1 now (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- the process tree --------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of these processes so far (those still alive)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def peak_rss_mib(pids: Sequence[int]) -> float:
    """The sum of the processes' peak resident sizes (VmHWM), MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


# -- contenders --------------------------------------------------------------------------------


@attrs.frozen
class Contender:
    """An answering side: how to start it on a port, and what it is called."""

    key: str
    label: str
    command: Callable[[int], list[str]]
    probe: bool = True  # answers OPTIONS (readiness is probed); else a fixed wait
    leak_checked: bool = False  # prints invsess's leak report at exit


def contenders(args: argparse.Namespace) -> list[Contender]:
    """The contenders asked for that can run here (a missing peer is said, and skipped)."""
    py = sys.executable
    extra = list(args.invsess_arg) + (["--loop", args.loop] if args.loop else [])

    def answer(workers: int) -> Callable[[int], list[str]]:
        def command(port: int) -> list[str]:
            cmd = [py, "-m", "invsess.cli", "answer", "--listen", f"udp:{HOST}:{port}", "--rate-limit", "off",
                   "--max-calls", "1000000", "--max-transactions", "1000000"]  # fmt: skip
            return cmd + (["--workers", str(workers)] if workers > 1 else []) + extra

        return command

    def module(name: str) -> Callable[[int], list[str]]:
        return lambda port: [py, "-m", name, "--port", str(port)]

    def sipp_uas(sipp: str) -> Callable[[int], list[str]]:
        return lambda port: [
            sipp,
            "-sn",
            "uas",
            "-i",
            HOST,
            "-p",
            str(port),
            "-nostdin",
            "-buff_size",
            "4194304",
        ]

    out = []
    for key in args.contenders:
        if key == "invsess":
            out.append(Contender(key, "invsess (1 worker)", answer(1), leak_checked=True))
        elif key == "invsess-workers":
            out.append(
                Contender(key, f"invsess ({args.workers} workers)", answer(args.workers), leak_checked=True)
            )
        elif key in ("pjsua2", "sippy"):
            wanted = {"pjsua2": "pjsua2-python", "sippy": "sippy"}[key]
            if _importable(key):
                label = "PJSIP (pjsua2)" if key == "pjsua2" else "sippy"
                out.append(Contender(key, label, module(f"benchmarks.peers.{key}_uas")))
            else:
                print(f"{key}: not installed (pip install {wanted}): skipped", flush=True)
        elif key == "sipp":
            if args.sipp:
                out.append(Contender(key, "SIPp UAS", sipp_uas(args.sipp), probe=False))
            else:
                print("sipp: no --sipp PATH: the ceiling is skipped", flush=True)
    return out


def _importable(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, check=False)
    return probe.returncode == 0


def options_answered(port: int, timeout: float = 0.3) -> bool:
    """Whether an OPTIONS to the port gets any response."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        ping = (
            f"OPTIONS sip:probe@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bKprobe{time.monotonic_ns()};rport\r\n"
            f"From: <sip:probe@{HOST}>;tag=probe\r\nTo: <sip:probe@{HOST}:{port}>\r\n"
            f"Call-ID: probe-{time.monotonic_ns()}@{HOST}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        try:
            sock.sendto(ping, (HOST, port))
            return sock.recv(65535).startswith(b"SIP/2.0 ")
        except OSError:
            return False


# -- load --------------------------------------------------------------------------------------


@attrs.frozen
class Load:
    """What the caller saw in one run."""

    calls: int
    succeeded: int
    failed: int
    retransmissions: int
    response_ms: float | None
    elapsed: float
    generator_cpu: float
    detail: str = ""


def run_sipp(sipp: str, port: int, rate: int, calls: int, *, hold: float, folder: Path) -> Load:
    """SIPp's built-in UAC, a socket per call (``-t un``)."""
    stats = folder / f"uac-{port}.csv"
    budget = calls / rate + hold + 120
    started = time.monotonic()
    # -max_socket: a socket per call and SIPp's own ones; with exactly ``calls`` sockets the last
    # calls of a 10,000-call run had none and failed (FailedMaxUDPRetrans) through no fault of
    # the answering side.
    proc = subprocess.Popen(
        [sipp, "-sn", "uac", f"{HOST}:{port}", "-i", HOST, "-p", str(free_port()), "-t", "un",
         "-max_socket", str(min(calls + 100, 19000)), "-r", str(rate), "-m", str(calls),
         "-d", str(int(hold * 1000)), "-nostdin", "-buff_size", "4194304", "-timeout", str(int(budget)),
         "-trace_stat", "-fd", "1", "-stf", str(stats)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        proc.wait(timeout=budget + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    elapsed = time.monotonic() - started
    final = _last_stats(stats)
    ok, failed = int(final.get("SuccessfulCall(C)", 0)), int(final.get("FailedCall(C)", 0))
    retrans = int(final.get("Retransmissions(C)", 0))
    response = _sipp_time(final.get("ResponseTime1(C)", ""))
    return Load(calls, ok, failed + max(calls - ok - failed, 0), retrans, response, elapsed, 0.0)


def _last_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def _sipp_time(text: str) -> float | None:
    """SIPp's ``HH:MM:SS:uuuuuu`` as milliseconds."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    h, m, s, micro = (int(p) for p in parts)
    return ((h * 60 + m) * 60 + s) * 1000 + micro / 1000


def run_loadgen(port: int, rate: int, calls: int, hold: float) -> Load:
    """benchmarks/loadgen.py, in a process of its own."""
    budget = calls / rate + hold + 120
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", f"sip:{HOST}:{port}", "--rate", str(rate),
         "--calls", str(calls), "--hold", str(hold), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=budget, check=False,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return Load(calls, 0, calls, 0, None, 0.0, 0.0, f"loadgen failed: {proc.stderr.strip()[-300:]}")
    figures = json.loads(lines[-1])
    failures = figures["failures"]
    return Load(
        calls,
        int(figures["succeeded"]),
        int(figures["failed"]) + max(calls - int(figures["succeeded"]) - int(figures["failed"]), 0),
        int(figures["retransmissions"]),
        figures["response_ms"]["avg"],
        float(figures["elapsed"]),
        float(figures["cpu_seconds"]),
        ", ".join(f"{k} x{v}" for k, v in failures.items()),
    )


# -- one run -----------------------------------------------------------------------------------


@attrs.frozen
class Run:
    """One contender at one rate."""

    contender: str
    rate: int
    clean: bool
    load: Load
    cpu_percent: float
    peak_rss_mib: float
    note: str

    def line(self) -> str:
        """One line for the terminal."""
        load = self.load
        response = f"{load.response_ms:.1f} ms" if load.response_ms is not None else "-"
        gen = (
            f", gen cpu {100 * load.generator_cpu / load.elapsed:.0f}%"
            if load.generator_cpu and load.elapsed
            else ""
        )
        return (
            f"  {self.contender:22} {self.rate:5}/s: {'clean' if self.clean else 'NOT clean'}: "
            f"{load.succeeded}/{load.calls} ok, {load.failed} failed, "
            f"{load.retransmissions} retransmissions, "
            f"response {response}, cpu {self.cpu_percent:.0f}%, peak RSS {self.peak_rss_mib:.1f} MiB"
            f"{gen}{'; ' + self.note if self.note else ''}{'; ' + load.detail if load.detail else ''}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "contender": self.contender,
            "rate": self.rate,
            "clean": self.clean,
            "calls": self.load.calls,
            "succeeded": self.load.succeeded,
            "failed": self.load.failed,
            "retransmissions": self.load.retransmissions,
            "response_ms": self.load.response_ms,
            "cpu_percent": round(self.cpu_percent, 1),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "generator_cpu_seconds": self.load.generator_cpu,
            "elapsed": round(self.load.elapsed, 2),
            "note": self.note,
        }


def run_once(contender: Contender, rate: int, args: argparse.Namespace, folder: Path) -> Run:
    """A fresh contender, one load at ``rate``, the contender stopped."""
    port = free_port()
    calls = max(1, int(rate * max(args.seconds, args.hold if args.hold else 0)))
    out = folder / f"{contender.key}-{rate}.out"
    env = {**os.environ, "INVSESS_MALLOC_DEBUG": "0" if not args.malloc_debug else "1"}
    with out.open("w") as sink:
        proc = subprocess.Popen(
            contender.command(port),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    note = ""
    try:
        if not _ready(proc, contender, port, out):
            return Run(
                contender.label,
                rate,
                False,
                Load(calls, 0, calls, 0, None, 0, 0),
                0,
                0,
                "did not start: " + _tail(out),
            )
        pids = tree(proc.pid)
        cpu0, t0 = cpu_seconds(pids), time.monotonic()
        if args.sipp:
            load = run_sipp(args.sipp, port, rate, calls, hold=args.hold, folder=folder)
        else:
            load = run_loadgen(port, rate, calls, args.hold)
        pids = tree(proc.pid)
        cpu = cpu_seconds(pids) - cpu0
        wall = max(time.monotonic() - t0, 1e-6)
        rss = peak_rss_mib(pids)
        if proc.poll() is not None:
            note = f"exited during the run ({proc.returncode}): " + _tail(out)
    finally:
        status = _stop(proc)
    clean = (
        load.failed == 0 and load.succeeded == calls and load.retransmissions < RETRANSMISSION_LIMIT * calls
    )
    if contender.leak_checked:
        text = out.read_text(errors="replace")
        leak_free = text.rstrip().endswith("0 leaked blocks") and status == 0
        clean = clean and leak_free
        note = note or ("leak-free" if leak_free else f"LEAKED or failed (exit {status}): " + _tail(out))
    return Run(
        contender.label, rate, clean and not note.startswith("exited"), load, 100 * cpu / wall, rss, note
    )


def _ready(
    proc: subprocess.Popen[bytes], contender: Contender, port: int, out: Path, timeout: float = 30.0
) -> bool:
    deadline = time.monotonic() + timeout
    if not contender.probe:
        time.sleep(1.5)
        return proc.poll() is None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if contender.leak_checked and "listening on" not in out.read_text(errors="replace"):
            time.sleep(0.1)  # every worker bound (the supervisor says so) before the first call
            continue
        if options_answered(port):
            return True
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGINT (invsess prints its report), then SIGTERM, then SIGKILL, each given time."""
    for sig, wait in ((signal.SIGINT, 60.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind by a killed supervisor
    return proc.returncode


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


def clean_max(contender: Contender, args: argparse.Namespace, folder: Path) -> tuple[Run | None, list[Run]]:
    """The highest clean run, stepping up (or over ``--rates``)."""
    best: Run | None = None
    runs: list[Run] = []
    rates = list(args.rates) if args.rates else None
    rate = rates.pop(0) if rates else args.start
    while rate <= args.max_rate:
        run = run_once(contender, rate, args, folder)
        runs.append(run)
        print(run.line(), flush=True)
        if not run.clean:
            break
        best = run
        if rates is not None:
            if not rates:
                break
            rate = rates.pop(0)
        else:
            rate = max(rate + 1, int(rate * args.step))
    return best, runs


def summary(results: list[tuple[Contender, Run | None]]) -> list[str]:
    """The table of clean maxima and the ratios to invsess (1 worker), all from this run."""
    lines = [f"{'contender':22} {'clean max':>10} {'CPU':>6} {'peak RSS':>10} {'response':>10}"]
    for contender, best in results:
        if best is None:
            lines.append(f"{contender.label:22} {'none':>10}")
            continue
        response = f"{best.load.response_ms:.1f} ms" if best.load.response_ms is not None else "-"
        lines.append(
            f"{contender.label:22} {best.rate:>8}/s {best.cpu_percent:>5.0f}% "
            f"{best.peak_rss_mib:>7.1f} MiB {response:>10}"
        )
    base = next((b for c, b in results if c.key == "invsess" and b is not None), None)
    if base is not None:
        for contender, best in results:
            if contender.key != "invsess" and best is not None:
                lines.append(
                    f"{contender.label} / invsess (1 worker) clean max: {best.rate / base.rate:.2f}x"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sipp",
        default=os.environ.get("INVSESS_SIPP") or shutil.which("sipp"),
        help="SIPp, as the load generator and the ceiling contender (or $INVSESS_SIPP)",
    )
    parser.add_argument(
        "--contenders",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        default=list(CONTENDERS),
        help=f"comma-separated, of {', '.join(CONTENDERS)}",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="for invsess-workers")
    parser.add_argument("--start", type=int, default=50, help="first rate tried (calls/s)")
    parser.add_argument("--step", type=float, default=1.25, help="rate multiplier between runs")
    parser.add_argument("--rates", type=lambda s: [int(r) for r in s.split(",")], default=None,
                        help="these rates only (comma-separated), instead of stepping")  # fmt: skip
    parser.add_argument("--max-rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=15.0, help="each run places rate * seconds calls")
    parser.add_argument(
        "--hold", type=float, default=0.0, help="seconds each call stays up (a concurrency run)"
    )
    parser.add_argument(
        "--loop", choices=["auto", "asyncio", "uvloop"], default=None, help="invsess's event loop"
    )
    parser.add_argument(
        "--invsess-arg", action="append", default=[], help="one more argument for invsess answer"
    )
    parser.add_argument("--malloc-debug", action="store_true", help="run invsess with MALLOC_DEBUG on")
    parser.add_argument("--json", action="store_true", help="print everything as one JSON line at the end")
    parser.add_argument("--keep", metavar="DIR", help="keep each contender's output here")
    args = parser.parse_args(argv)
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    if args.sipp and not Path(args.sipp).exists():
        parser.error(f"--sipp {args.sipp}: no such file")
    generator = f"SIPp UAC ({args.sipp}, -t un)" if args.sipp else "benchmarks/loadgen.py (16 source ports)"
    load1 = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} cores, load average {load1:.2f} at the start; calls from {generator}; "
        f"{args.seconds:g} s per rate{f', hold {args.hold:g} s' if args.hold else ''}",
        flush=True,
    )
    results: list[tuple[Contender, Run | None]] = []
    every: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for contender in contenders(args):
            print(f"{contender.label}:", flush=True)
            best, runs = clean_max(contender, args, folder)
            every += runs
            results.append((contender, best))
            print(f"{contender.label}: clean max {best.rate if best else 0} calls/s", flush=True)
    lines = summary(results)
    print()
    for line in lines:
        print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(
            json.dumps(
                {
                    "generator": generator,
                    "cores": os.cpu_count(),
                    "load_average_start": load1,
                    "runs": [r.as_dict() for r in every],
                    "clean_max": {c.label: (b.as_dict() if b else None) for c, b in results},
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
