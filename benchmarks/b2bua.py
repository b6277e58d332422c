"""B2BUA throughput: SIPp UAC -> B2BUA -> SIPp UAS, the clean maximum calls per second of
invsess's B2BUA and of sippy's ``b2bua_simple``, measured in the same run on the same machine.

Run: ``python benchmarks/b2bua.py --sipp /path/to/sipp`` (SIPp is not packaged: build it from its
public repository; ``pip install sippy`` for the comparison, or ``--no-sippy``).

Each run starts a fresh SIPp UAS, a fresh B2BUA and a SIPp UAC placing ``rate * --seconds``
calls (at least ``--min-calls``) at ``rate`` per second: SIPp's built-in scenarios (INVITE, 100,
200, ACK, the default pause, BYE, 200), except that the UAS's Contact says ``transport=udp`` in
lower case (sippy fails on ``UDP``) and the UAS sends no 180 (sippy relays some 180s after the
200, which SIPp's UAC rightly counts as failed calls, at any rate: PEERS.md). A run is clean when every
call succeeded (no failed call at the UAC), SIPp had to retransmit nothing (the B2BUA kept up:
past its capacity SIPp's retransmissions still get most calls through, ever slower), and, for
invsess, when the B2BUA bridged them all with ``200`` and ended with ``0 leaked blocks``. The
rate goes up by ``--step`` until a run is not clean; the last clean rate is the figure.
Everything shares the machine's cores, as in PEERS.md's reference table (sippy's figure there:
~100 calls/s). The target (issue 13) is invsess >= 5x sippy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free UDP port on 127.0.0.1 (bound and released: good enough for one run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def uas_scenario(sipp: str, folder: Path) -> Path:
    """SIPp's built-in UAS, with ``transport=udp`` in lower case and without its 180."""
    # (sipp -sd exits 99 after dumping: the text is what counts)
    text = subprocess.run([sipp, "-sd", "uas"], capture_output=True, text=True, check=False).stdout
    if "<scenario" not in text:
        raise SystemExit(f"{sipp} -sd uas printed no scenario")
    text = text.replace("transport=[transport]", "transport=udp")
    ringing = re.compile(r"<send>\s*<!\[CDATA\[\s*SIP/2\.0 180 Ringing.*?</send>", re.DOTALL)
    text, found = ringing.subn("", text)
    if found != 1:
        raise SystemExit("the built-in UAS scenario's 180 was not found where expected")
    path = folder / "uas.xml"
    path.write_text(text)
    return path


def start_b2bua(kind: str, port: int, uas_port: int, calls: int, folder: Path) -> subprocess.Popen[str]:
    """The B2BUA under test, listening on ``port`` and bridging to the UAS."""
    if kind == "invsess":
        cmd = [sys.executable, "-m", "invsess.cli", "b2bua", "--listen", f"udp:127.0.0.1:{port}",
               "--to", f"sip:127.0.0.1:{uas_port}", "--calls", str(calls), "--duration", "300"]  # fmt: skip
    else:
        simple = shutil.which("b2bua_simple") or str(Path(sys.executable).parent / "b2bua_simple")
        cmd = [simple, "-f", "-l", "127.0.0.1", "-p", str(port), "-n", f"127.0.0.1:{uas_port}",
               "-L", str(folder / "sippy.log")]  # fmt: skip
    env = {**os.environ, "INVSESS_MALLOC_DEBUG": "0"}
    # sippy prints every message in the foreground: to a file, never to a pipe nobody drains.
    out = (folder / f"{kind}.out").open("w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)


def run_once(sipp: str, kind: str, rate: int, calls: int, folder: Path) -> tuple[bool, str]:
    """One run at ``rate``: (clean, a one-line account of it)."""
    uas_port, b2bua_port, uac_port = free_port(), free_port(), free_port()
    uas = subprocess.Popen(
        [sipp, "-sf", str(uas_scenario(sipp, folder)), "-i", "127.0.0.1", "-p", str(uas_port), "-nostdin",
         "-buff_size", "4194304"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    b2bua = start_b2bua(kind, b2bua_port, uas_port, calls, folder)
    stats = folder / f"uac-{kind}-{rate}.csv"
    try:
        time.sleep(1.5)  # both listening
        cpu0 = _cpu_seconds(b2bua.pid)
        started = time.monotonic()
        subprocess.run(
            [sipp, "-sn", "uac", f"127.0.0.1:{b2bua_port}", "-i", "127.0.0.1", "-p", str(uac_port),
             "-r", str(rate), "-m", str(calls), "-nostdin", "-timeout", str(calls // rate + 60),
             "-buff_size", "4194304", "-trace_stat", "-fd", "1", "-stf", str(stats)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=calls // rate + 120, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(b2bua.pid) - cpu0
        final = _last_stats(stats)
        ok, failed = int(final.get("SuccessfulCall(C)", 0)), int(final.get("FailedCall(C)", 0))
        retrans = int(final.get("Retransmissions(C)", 0))
        detail = (
            f"{ok}/{calls} ok, {failed} failed, {retrans} retransmissions, {elapsed:.1f} s, "
            f"B2BUA CPU {cpu:.2f} s ({1000 * cpu / calls:.2f} ms per call)"
        )
        clean = ok == calls and failed == 0 and retrans == 0  # it kept up: nothing sent twice
        if kind == "invsess":
            try:  # it exits once it has bridged every call (--calls)
                b2bua.wait(timeout=120)
            except subprocess.TimeoutExpired:  # some call never ended: not clean
                b2bua.kill()
                b2bua.wait()
            err = (folder / f"{kind}.out").read_text()
            leaked = "0 leaked blocks" not in err
            bridged = f"outcomes: 200 x{calls}" in err
            clean = clean and bridged and not leaked and b2bua.returncode == 0
            detail += (
                ", B2BUA: "
                + ("leak-free" if not leaked else "LEAKED")
                + ("" if bridged else ", not all bridged")
            )
        elif b2bua.poll() is not None:
            clean = False
            detail += (
                ", sippy exited: " + ((folder / f"{kind}.out").read_text().strip().splitlines() or ["?"])[-1]
            )
        return clean, detail
    finally:
        for proc in (b2bua, uas):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _last_stats(path: Path) -> dict[str, str]:
    """The last line of SIPp's statistics file (``-trace_stat``), by column name."""
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def clean_max(sipp: str, kind: str, args: argparse.Namespace, folder: Path) -> int:
    """The highest clean rate, stepping up from ``--start``."""
    best, rate = 0, args.start
    while rate <= args.max_rate:
        calls = max(args.min_calls, rate * args.seconds)
        clean, detail = run_once(sipp, kind, rate, calls, folder)
        print(f"  {kind:8} {rate:5}/s: {'clean' if clean else 'NOT clean'}: {detail}", flush=True)
        if not clean:
            break
        best = rate
        rate = int(rate * args.step) if args.step > 1 else rate + 25
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sipp", default=os.environ.get("INVSESS_SIPP") or shutil.which("sipp"),
                        help="the SIPp binary (or INVSESS_SIPP, or sipp on PATH)")  # fmt: skip
    parser.add_argument("--start", type=int, default=25, help="first rate tried (calls/s)")
    parser.add_argument("--step", type=float, default=1.25, help="rate multiplier between runs")
    parser.add_argument("--max-rate", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=10, help="each run places rate * seconds calls")
    parser.add_argument("--min-calls", type=int, default=1000, help="... and at least this many")
    parser.add_argument("--no-sippy", action="store_true", help="skip sippy's b2bua_simple")
    parser.add_argument("--sippy-only", action="store_true", help="measure sippy's b2bua_simple alone")
    parser.add_argument(
        "--once",
        type=int,
        metavar="RATE",
        help="one run of invsess at RATE with --min-calls calls; exit 1 unless clean",
    )
    args = parser.parse_args()
    if not args.sipp or not Path(args.sipp).exists():
        raise SystemExit("SIPp not found: build it and pass --sipp PATH (or set INVSESS_SIPP)")
    print(f"SIPp UAC -> B2BUA -> SIPp UAS on 127.0.0.1, {os.cpu_count()} cores shared by all three")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.once:
            clean, detail = run_once(args.sipp, "invsess", args.once, args.min_calls, folder)
            print(f"  invsess {args.once:5}/s: {'clean' if clean else 'NOT clean'}: {detail}")
            raise SystemExit(0 if clean else 1)
        ours = 0 if args.sippy_only else clean_max(args.sipp, "invsess", args, folder)
        if not args.sippy_only:
            print(f"invsess B2BUA: clean max {ours} calls/s", flush=True)
        if args.no_sippy:
            return
        theirs = clean_max(args.sipp, "sippy", args, folder)
        print(f"sippy b2bua_simple: clean max {theirs} calls/s")
        if args.sippy_only:
            return
        ratio = ours / theirs if theirs else float("inf")
        print(f"invsess/sippy clean max calls/s ratio: {ratio:.2f} (target >= 5)")


if __name__ == "__main__":
    main()
