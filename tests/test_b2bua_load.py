"""Load through the B2BUA: SIPp's UAC and UAS around it for 1,000 calls (opt-in: SIPp is not
packaged; set INVSESS_SIPP or put sipp on PATH, and pass --run-slow), and a CI-sized run with
invsess's own load generator (`invsess call` -> `invsess b2bua` -> `invsess answer`, 200 calls at 25/s)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIPP = os.environ.get("INVSESS_SIPP") or shutil.which("sipp")


@pytest.mark.slow
@pytest.mark.skipif(SIPP is None, reason="SIPp is not installed: set INVSESS_SIPP to a built sipp")
def test_sipp_uac_through_the_b2bua_to_sipp_uas_1000_calls() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "b2bua.py"), "--sipp", SIPP or "sipp", "--once", "50",
         "--min-calls", "1000", "--no-sippy"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1000/1000 ok, 0 failed" in done.stdout and "B2BUA: leak-free" in done.stdout, done.stdout


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_invsess_call_through_invsess_b2bua_to_invsess_answer_200_calls() -> None:
    answer_port, b2bua_port = free_udp_port(), free_udp_port()
    cli = [sys.executable, "-m", "invsess.cli"]
    answer = subprocess.Popen(
        [*cli, "answer", "--listen", f"udp:127.0.0.1:{answer_port}", "--duration", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    b2bua = subprocess.Popen(
        [*cli, "b2bua", "--listen", f"udp:127.0.0.1:{b2bua_port}", "--to", f"sip:127.0.0.1:{answer_port}",
         "--calls", "200", "--duration", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        placed = subprocess.run(
            [*cli, "call", f"sip:bob@127.0.0.1:{b2bua_port}", "--calls", "200", "--rate", "25", "--hold", "0.2"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert "200 calls: 200 succeeded, 0 failed" in placed.stdout, placed.stdout + placed.stderr
        _, err = b2bua.communicate(timeout=60)
        assert "calls bridged: 200; outcomes: 200 x200" in err and "0 leaked blocks" in err, err
        assert b2bua.returncode == 0
    finally:
        for proc in (b2bua, answer):
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)
