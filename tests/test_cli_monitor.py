"""``--rpc``/``--metrics`` on ``invsess answer`` and ``call``, and ``invsess stats``: a running
process watched from outside, over real sockets."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from invsess.cli import main

INVSESS = [sys.executable, "-m", "invsess.cli"]


class Answerer:
    """``invsess answer --rpc 0 --metrics 0`` in the background; the URLs it printed."""

    def __init__(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [*INVSESS, "answer", "--listen", "udp:127.0.0.1:0", "--t1", "0.02", "--rpc", "0", "--metrics", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        assert self.process.stderr is not None
        deadline = time.monotonic() + 20
        while not any(line.startswith("metrics: ") for line in self.lines):
            line = self.process.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError("invsess answer did not start:\n" + "".join(self.lines))
            self.lines.append(line)
        found = {
            line.split(": ", 1)[0]: line.split(": ", 1)[1].strip() for line in self.lines if ": " in line
        }
        self.rpc, self.metrics = found["rpc"], found["metrics"]
        self.sip = re.search(r"listening on udp:(\S+)", "".join(self.lines)).group(1)  # type: ignore[union-attr]

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.lines) + err


@pytest.fixture
def answerer() -> Iterator[Answerer]:
    running = Answerer()
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.communicate()


def stats(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INVSESS, "stats", *args], capture_output=True, text=True, timeout=60, check=False, env={"COLUMNS": "120", "PATH": ""}
    )  # fmt: skip


def test_answer_watched_over_rpc_and_prometheus(answerer: Answerer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/RPC", answerer.rpc)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", answerer.metrics)
    placed = subprocess.run(
        [*INVSESS, "call", f"sip:bob@{answerer.sip}", "--t1", "0.02", "--calls", "5", "--rate", "50",
         "--hold", "0.2", "--rpc", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert re.search(r"^rpc: http://127\.0\.0\.1:\d+/RPC$", placed.stderr, re.MULTILINE)  # call has --rpc too

    shown = stats("--rpc", answerer.rpc)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith("invsess 0.1.0 (")
    for expected in (
        "memory (shmem)",
        "pkg.stats",
        "inv:sessions_created",
        "inv:sessions_released",
        "dialog:processed_dialogs",
        "core:rcv_requests_invite",
        "core:snd_replies_200",
        "top allocation sites",
    ):
        assert expected in out, expected
    assert re.search(r"inv:sessions_created\s+5\b", out)
    assert re.search(r"core:rcv_requests_bye\s+5\b", out)

    as_json = json.loads(stats("--rpc", answerer.rpc, "--json").stdout)
    assert as_json["stats"]["inv.sessions_created"] == 5
    assert as_json["pkg"][0]["desc"] == f"udp:{answerer.sip}"

    port = answerer.rpc.split(":")[2].split("/")[0]
    watched = stats("--rpc", port, "--watch", "--count", "3", "--interval", "0.2")  # a bare port works too
    assert watched.returncode == 0, watched.stderr
    assert "every 0.2 s" in watched.stdout and "memory (shmem)" in watched.stdout

    with urllib.request.urlopen(answerer.metrics, timeout=5) as reply:
        scraped = reply.read().decode()
    assert re.search(
        r'^invsess_sessions_created_total\{endpoint="udp:[\d.:]+"\} 5\.0$', scraped, re.MULTILINE
    )
    assert "invsess_sip_requests_received_total" in scraped

    status, err = answerer.stop()
    assert status == 0, err
    assert "0 leaked blocks" in err


def test_stats_errors_are_said_plainly(answerer: Answerer) -> None:
    answerer.stop()
    gone = stats("--rpc", answerer.rpc)
    assert gone.returncode == 1 and "cannot reach" in gone.stderr
    result = CliRunner().invoke(main, ["stats", "--rpc", "localhost:1"])
    assert result.exit_code == 2 and "not an IP address" in result.output
    result = CliRunner().invoke(main, ["answer", "--rpc", "nowhere"])
    assert result.exit_code == 2 and "Invalid value for '--rpc'" in result.output


def test_a_taken_port_is_a_clear_error(answerer: Answerer) -> None:
    port = answerer.rpc.split(":")[2].split("/")[0]
    taken = subprocess.run(
        [*INVSESS, "answer", "--listen", "udp:127.0.0.1:0", "--rpc", port, "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert taken.returncode == 1
    assert f"--rpc 127.0.0.1:{port}" in taken.stderr
