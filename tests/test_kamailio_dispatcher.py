"""N ``invsess answer`` workers behind a real Kamailio dispatcher (issue 18, "beyond one machine").

``examples/kamailio/dispatcher.cfg`` (documented in docs/performance.md) runs in the test bed of
invsess.testing.kamailio (skipped, with the reason, when kamailio or its dispatcher module is not
installed). The workers run as ``invsess answer --workers 2 --port-per-worker``: a port each,
listed in the dispatcher's list file; the calls come from benchmarks/loadgen.py through
Kamailio, which record-routes, so every dialog's ACK and BYE come back through it to the worker
that answered. Each worker's statistics are read over the supervisor's JSON-RPC (``pkg.stats``
with the worker's rank) and over each worker's own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.loadgen import Generator
from invsess.testing.kamailio import Kamailio
from tests.test_workers import Pool, _per_worker, _rpc

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "examples" / "kamailio" / "dispatcher.cfg"


@pytest.fixture
def pools() -> Iterator[list[Pool]]:
    """The pools a test started: killed at teardown if the test did not stop them (their
    workers too: they outlive a killed supervisor)."""
    started: list[Pool] = []
    yield started
    for pool in started:
        if pool.process.poll() is None:
            pool.process.kill()
            pool.process.communicate()
        for pid in pool.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _two_free_ports() -> int:
    """A UDP port P with P+1 free too (what --port-per-worker takes for two workers)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            base: int = first.getsockname()[1]
            if base >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
                return base
    pytest.skip("no two consecutive UDP ports free on 127.0.0.1")


def test_calls_through_the_dispatcher_spread_over_the_workers_and_each_is_seen(
    kamailio_factory: Callable[..., Kamailio], pools: list[Pool], tmp_path: Path
) -> None:
    base = _two_free_ports()
    # Behind a proxy every request comes from the proxy's address: the per-source rate limit
    # (Kamailio's pike, on by default) would count the whole traffic as one source.
    pool = Pool(
        "answer", "--workers", "2", "--port-per-worker", "--listen", f"udp:127.0.0.1:{base}",
        "--rate-limit", "off", "--rpc", "0",
    )  # fmt: skip
    pools.append(pool)
    text = "".join(pool.lines)
    assert f"listening on udp:127.0.0.1:{base}" in text and f"listening on udp:127.0.0.1:{base + 1}" in text
    listing = tmp_path / "dispatcher.list"
    listing.write_text(f"1 sip:127.0.0.1:{base} 0 0\n1 sip:127.0.0.1:{base + 1} 0 0\n")
    kam = kamailio_factory(CFG, substs={"DISPATCHER_LIST": str(listing)})
    targets = {
        t["DEST"]["URI"]: t["DEST"]["FLAGS"]
        for s in kam.rpc("dispatcher.list")["RECORDS"]
        for t in s["SET"]["TARGETS"]
    }
    assert set(targets) == {f"sip:127.0.0.1:{base}", f"sip:127.0.0.1:{base + 1}"}
    assert all(flags.startswith("A") for flags in targets.values()), targets  # both active

    generator = Generator(kam.sip_address, rate=40.0, calls=40, hold=0.2, sockets=4)
    try:
        figures = generator.run(linger=15).as_dict()
    finally:
        generator.close()
    assert figures["succeeded"] == 40 and figures["failed"] == 0, figures

    # Each worker's own statistics, by rank, over the supervisor's RPC and over its own.
    rpc = pool.url("rpc")
    entries = _rpc(rpc, "pkg.stats")
    assert [(e["rank"], e["pid"]) for e in entries] == [(1, pool.pids[0]), (2, pool.pids[1])]
    assert entries[0]["desc"] == f"worker 1: udp:127.0.0.1:{base}"
    assert entries[1]["desc"] == f"worker 2: udp:127.0.0.1:{base + 1}"
    worker_rpc = re.findall(r"rpc (http://127\.0\.0\.1:\d+/RPC)", "".join(pool.lines))
    invites = [_rpc(url, "stats.fetchn", "core:")["core.rcv_requests_invite"] for url in worker_rpc]
    byes = [_rpc(url, "stats.fetchn", "core:")["core.rcv_requests_bye"] for url in worker_rpc]
    # Round robin (algorithm 4): the calls alternate between the two workers.
    assert sum(invites) == 40 and abs(invites[0] - invites[1]) <= 2, invites
    assert byes == invites  # every dialog's BYE came back to the worker that answered it
    assert _rpc(rpc, "stats.fetchn", "core:")["core.rcv_requests_invite"] == 40

    # Kamailio's view: it relayed the 40 INVITEs statefully, and both workers are still up.
    relayed = {
        name.split(":", 1)[1].strip(): int(value)
        for name, value in (row.split(" = ") for row in kam.rpc("stats.get_statistics", "tmx:"))
    }
    assert relayed["2xx_transactions"] >= 80, relayed  # 40 INVITEs and 40 BYEs, answered 200

    code, err = pool.stop()
    assert code == 0, err
    ended = _per_worker(err, r"calls ended: (\d+)")
    assert ended == {1: invites[0], 2: invites[1]}, err
    assert "all 2 workers: calls ended: 40 (cause 200 x40)" in err
    assert err.rstrip().endswith("0 leaked blocks")
