"""The command line, and the benchmarks' short CI runs."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from invsess import __version__
from invsess.cli import main
from invsess.trace import Trace

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_reports_no_leak() -> None:
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("0 leaked blocks")
    assert "ERROR: use-after-free" in result.output
    for step in ("INVITE sip:bob@", "180 Ringing", "SIP/2.0 200 OK", "ACK sip:bob@", "BYE sip:bob@"):
        assert step in result.output
    assert "alice CONFIRMED -> DISCONNECTED (cause 200)" in result.output
    assert "bob   media: audio 0 8 101 recvonly" in result.output  # held by alice's re-INVITE
    assert "previously allocated by:" in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert __version__ in result.output


def test_memory_benchmark_short_run() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--cycles", "2", "--blocks", "10"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "normal/plain time ratio:" in out
    assert "debug/normal time ratio:" in out


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_pair(answer_args: list[str], call_args: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    port = free_udp_port()
    answer = subprocess.Popen(
        [sys.executable, "-m", "invsess.cli", "answer", "--listen", f"udp:127.0.0.1:{port}", "--t1", "0.02", *answer_args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        import time

        time.sleep(1.0)  # start-up
        placed = subprocess.run(
            [sys.executable, "-m", "invsess.cli", "call", f"sip:bob@127.0.0.1:{port}", "--t1", "0.02", *call_args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        if answer.poll() is None:
            answer.send_signal(2)
        _, err = answer.communicate(timeout=30)
    return placed, err


def test_call_and_answer_commands() -> None:
    placed, answer_err = run_pair(
        ["--calls", "3", "--ring", "0.05"], ["--calls", "3", "--rate", "20", "--hold", "0.1"]
    )
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert "3 calls: 3 succeeded, 0 failed" in placed.stdout
    assert "calls ended: 3" in answer_err
    assert "0 leaked blocks" in answer_err


def test_call_command_reports_failures() -> None:
    placed, answer_err = run_pair(
        ["--answer-code", "486", "--duration", "4"], ["--calls", "2", "--rate", "20"]
    )
    assert placed.returncode == 1
    assert "2 calls: 0 succeeded, 2 failed (486 x2)" in placed.stdout
    assert "0 leaked blocks" in answer_err


def test_session_timers_and_100rel_from_the_command_line(tmp_path: Path) -> None:
    trace = tmp_path / "answer.jsonl"
    placed, answer_err = run_pair(
        ["--calls", "1", "--ring", "0.1", "--ring-code", "183", "--100rel", "supported",
         "--timer", "4,uas", "--min-se", "2", "--trace", str(trace)],
        ["--hold", "5", "--100rel", "required", "--timer", "4", "--min-se", "2"],
    )  # fmt: skip
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert "0 leaked blocks" in answer_err
    lines = [e["line"] for e in map(json.loads, trace.read_text().splitlines()) if e["kind"] == "message"]
    assert lines[1].startswith("SIP/2.0 183") and lines[2].startswith("PRACK ")
    assert sum(1 for line in lines if line.startswith("UPDATE ")) >= 2  # the answerer refreshes every 2 s


def test_bad_timer_options_are_usage_errors() -> None:
    for args in (["--timer", "abc"], ["--timer", "90,both"], ["--min-se", "90"], ["--timer", "60"]):
        result = CliRunner().invoke(main, ["call", "sip:x@127.0.0.1:9", *args])
        assert result.exit_code == 2, (args, result.output)


def _messages(path: Path) -> list[dict[str, object]]:
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["kind"] == "message"]


def test_the_commands_act_in_the_call_and_report_it(tmp_path: Path) -> None:
    """--hangup-after, --reinvite-after, --update-after (early, with --ring and 100rel), --allow,
    the caller's summary with setup-time percentiles, the answerer's statistics, and traces
    with session states timed from 0.000."""
    answer_trace, call_trace = tmp_path / "answer.jsonl", tmp_path / "call.jsonl"
    placed, answer_err = run_pair(
        ["--calls", "2", "--ring", "0.3", "--ring-code", "183", "--100rel", "supported",
         "--update-after", "0.1", "--reinvite-after", "0.1", "--hangup-after", "0.4",
         "--allow", "info", "--trace", str(answer_trace)],
        ["--calls", "2", "--rate", "20", "--hold", "3", "--reinvite-after", "0.2", "--100rel", "supported",
         "--trace", str(call_trace)],
    )  # fmt: skip
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert "2 calls: 2 succeeded, 0 failed" in placed.stdout
    assert re.search(r"setup time \(INVITE -> 200\) ms: p50 \d+\.\d, p95 \d+\.\d, p99 \d+\.\d", placed.stdout)
    assert "in-call requests: re-INVITE done x2" in placed.stdout
    assert "calls ended: 2 (cause 200 x2); received 2, answered 200 x2" in answer_err
    assert "in-call requests: BYE sent x2, UPDATE done x2, re-INVITE done x2" in answer_err
    assert "memory: max_used_size" in answer_err and "0 leaked blocks" in answer_err
    lines = [str(m["line"]) for m in _messages(answer_trace)]
    assert sum(1 for line in lines if line.startswith("BYE ")) == 2  # the answerer hung up
    events = [json.loads(line) for line in answer_trace.read_text().splitlines()]
    assert events[0]["time"] == 0.0
    states = [(e["old"], e["new"]) for e in events if e["kind"] == "state"]
    assert ("NULL", "INCOMING") in states and ("CONFIRMED", "DISCONNECTED") in states
    # the UPDATE went in the early dialog (before the 200 to the INVITE), after the PRACK
    first_update = next(i for i, line in enumerate(lines) if line.startswith("UPDATE "))
    first_ok = next(i for i, m in enumerate(_messages(answer_trace)) if str(m["line"]).startswith("SIP/2.0 200")
                    and b"CSeq: 1 INVITE" in base64.b64decode(str(m["data"])))  # fmt: skip
    assert first_update < first_ok
    offers = [
        base64.b64decode(str(m["data"]))
        for m in _messages(call_trace)
        if str(m["line"]).startswith("INVITE ")
    ]
    assert b"o=call " in offers[0] and b"m=audio 40002 " in offers[0]  # the caller's default SDP
    answers = [base64.b64decode(str(m["data"])) for m in _messages(answer_trace)]
    assert any(b"o=answer " in a and b"m=audio 40000 " in a for a in answers)  # the answerer's


def test_ladder_draws_one_call_of_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "call.jsonl"
    placed, _ = run_pair(
        ["--calls", "2"], ["--calls", "2", "--rate", "20", "--hold", "0.1", "--trace", str(trace)]
    )
    assert placed.returncode == 0, placed.stdout + placed.stderr
    call_ids = Trace.read(trace).call_ids()
    assert len(call_ids) == 2
    result = CliRunner().invoke(main, ["ladder", str(trace), "--call-id", call_ids[1], "--no-colour"])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert rows[1].split()[0] == "0.000"  # timed from this call's first message
    assert "* session: NULL -> CALLING" in result.output and "DISCONNECTED" in result.output
    # One call only (its INVITE may appear more than once: retransmitted on a loaded machine).
    assert result.output.count("* session: NULL -> CALLING") == 1
    unknown = CliRunner().invoke(main, ["ladder", str(trace), "--call-id", "nope"])
    assert unknown.exit_code == 1 and call_ids[0] in unknown.output


def _invsess(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invsess.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_call_that_cannot_be_sent_fails_at_once_and_says_why() -> None:
    """No Timer B wait and no 408: an unresolvable host, the send guard, a refused TCP
    connection are 503 at once (RFC 3261 §8.1.3.1), with the reason."""
    closed = free_udp_port()  # (a TCP port nobody listens on, most likely: the kernel refuses)
    for uri, why in (
        ("sip:bob@bob.invalid", "cannot resolve bob.invalid"),  # the resolver says why
        ("sip:bob@192.0.2.1:5060", "refusing to send to 192.0.2.1:5060"),
        (f"sip:bob@127.0.0.1:{closed};transport=tcp", f"tcp connection to 127.0.0.1:{closed} failed"),
    ):
        started = time.monotonic()
        result = _invsess("call", uri, "--calls", "2", "--rate", "50")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "2 calls: 0 succeeded, 2 failed (503 x2)" in result.stdout, result.stdout
        assert why in result.stdout
        assert time.monotonic() - started < 5, "a refused send must not wait for Timer B"
        assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_one_line_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = _invsess("answer", "--listen", f"udp:127.0.0.1:{port}", "--duration", "0.1")
    assert result.returncode == 1
    # The first line is answer's warning that it runs without --auth; the error is one line.
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("warning: no --auth")
    assert lines[1:] == [f"Error: cannot listen on udp:127.0.0.1:{port}: Address already in use"]


def test_a_long_run_prints_progress() -> None:
    placed, _ = run_pair(["--calls", "1", "--ring", "0.6"], ["--progress", "0.2", "--hold", "0.1"])
    assert placed.returncode == 0, placed.stdout + placed.stderr
    progress = [line for line in placed.stderr.splitlines() if "calls: 1 started" in line]
    assert progress and re.match(
        r"\[\s*\d+\.\ds\] calls: 1 started, 0 up, 0 ended, 0 failed; \d+\.\d calls/s", progress[0]
    )
