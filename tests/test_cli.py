"""The command line, and the benchmarks' short CI runs."""

from __future__ import annotations

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
