"""The command line, and the benchmarks' short CI runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from invsess import __version__
from invsess.cli import main

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
