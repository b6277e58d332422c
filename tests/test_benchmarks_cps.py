"""benchmarks/cps.py and its generator, briefly (CI has no SIPp): the shape of what they print,
and that the calls went through. Never a speed assertion: the figures are the benchmark's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.cps import _sipp_time, peak_rss_mib, tree

ROOT = Path(__file__).resolve().parent.parent


def test_cps_short_run_against_two_workers() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cps.py"), "--sipp", "", "--contenders", "invsess-workers",
         "--workers", "2", "--rates", "20", "--seconds", "2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "calls from benchmarks/loadgen.py (16 source ports)" in out
    assert "invsess (2 workers):" in out
    assert "invsess (2 workers): clean max 20 calls/s" in out
    figures = json.loads(out.strip().splitlines()[-1])
    (run,) = figures["runs"]
    assert run["contender"] == "invsess (2 workers)"
    assert run["clean"] is True
    assert run["calls"] == run["succeeded"] == 40
    assert run["failed"] == 0
    assert run["note"] == "leak-free"
    assert run["cpu_percent"] > 0 and run["peak_rss_mib"] > 20  # the supervisor and both workers
    assert run["response_ms"] is not None and run["response_ms"] > 0
    assert figures["clean_max"]["invsess (2 workers)"]["rate"] == 20


def test_loadgen_reports_a_refused_call_as_failed() -> None:
    """Nothing listens there: every INVITE times out (shortened linger) or gets an ICMP error;
    no call succeeds, and the exit status says so."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", "sip:127.0.0.1:9", "--rate", "50", "--calls", "3",
         "--linger", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["succeeded"] == 0 and figures["failed"] == 3
    assert figures["retransmissions"] >= 3  # Timer A resent each INVITE


def test_process_tree_figures_and_sipp_times() -> None:
    me = tree(os.getpid())
    assert me[0] == os.getpid()
    assert peak_rss_mib(me[:1]) > 1
    assert _sipp_time("00:00:00:007000") == 7.0
    assert _sipp_time("00:00:01:500000") == 1500.0
    assert _sipp_time("garbage") is None
