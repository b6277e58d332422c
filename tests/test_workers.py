"""Several processes on one UDP port (invsess.aio.workers): the kernel's choice of socket, the
process pool's life cycle, and ``invsess answer/b2bua --workers N`` against real traffic."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.loadgen import Generator
from invsess.aio.workers import WorkerPool, WorkerStartError
from tests import worker_mains

ROOT = Path(__file__).resolve().parent.parent
INVSESS = [sys.executable, "-m", "invsess.cli"]


# -- the kernel ------------------------------------------------------------------------------


def test_a_shared_port_keeps_each_source_on_one_socket_and_spreads_the_sources() -> None:
    """What --workers rests on (Linux SO_REUSEPORT for UDP): a datagram goes to a socket of the
    group by a hash of its addresses and ports, so everything from one source address and port
    reaches the same socket, and many sources spread over all of them."""
    group = []
    port = 0
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        sock.setblocking(False)
        group.append(sock)
    sources = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(60)]
    try:
        seen: dict[int, set[int]] = collections.defaultdict(set)
        for round_ in range(4):
            for i, source in enumerate(sources):
                source.sendto(f"{i} {round_}".encode(), ("127.0.0.1", port))
            time.sleep(0.1)
            for k, sock in enumerate(group):
                while True:
                    try:
                        data = sock.recv(100)
                    except BlockingIOError:
                        break
                    seen[int(data.split()[0])].add(k)
        assert len(seen) == 60
        assert all(len(sockets) == 1 for sockets in seen.values())  # one source, one socket
        assert len({next(iter(s)) for s in seen.values()}) == 3  # 60 sources reach all three
    finally:
        for sock in (*group, *sources):
            sock.close()


# -- the pool ----------------------------------------------------------------------------------


def _run_pool(
    main: Any, count: int, payload: dict[str, Any], *, stop_after: float = 0.2, hurry: bool = False
) -> Any:
    async def go() -> tuple[WorkerPool, list[Any]]:
        pool = WorkerPool(count, main, start_timeout=60)
        await pool.start(lambda rank, info: payload)
        await asyncio.sleep(stop_after)
        pool.stop(hurry=hurry)
        return pool, await pool.finish(30)

    return asyncio.run(go())


def test_pool_workers_start_report_progress_and_stop_in_order() -> None:
    pool, results = _run_pool(worker_mains.orderly, 2, {"drain": 0.0, "ended": 3})
    assert [r.rank for r in results] == [1, 2]
    assert all(r.ok and r.exitcode == 0 for r in results)
    assert pool.ended() == 6  # the progress of both, summed
    assert all(not r.report["hurried"] for r in results)


def test_pool_a_slow_worker_holds_the_others_open() -> None:
    """Worker 1 drains at once, worker 2 takes a second: worker 1 does not close its socket
    before worker 2 has drained (the kernel's hash must not change under a worker still ending
    its calls)."""

    async def go() -> list[Any]:
        pool = WorkerPool(2, worker_mains.orderly, start_timeout=60)
        await pool.start(lambda rank, info: {"drain": 0.0 if rank == 1 else 1.0})
        pool.stop()
        return await pool.finish(30)

    results = asyncio.run(go())
    first, second = (r.report for r in results)
    assert second["drained"] - first["drained"] > 0.5
    assert first["closed"] >= second["drained"]  # worker 1 waited for worker 2


def test_pool_hurry_reaches_the_workers() -> None:
    _, results = _run_pool(worker_mains.orderly, 2, {"drain": 0.0}, hurry=True)
    assert all(r.report["hurried"] for r in results)


def test_pool_a_worker_that_cannot_start_stops_the_others() -> None:
    async def go() -> WorkerPool:
        pool = WorkerPool(3, worker_mains.refuses, start_timeout=60)
        with pytest.raises(WorkerStartError, match="worker 2: port 5060 is not ours"):
            await pool.start(lambda rank, info: {"bad": 2})
        return pool

    pool = asyncio.run(go())
    assert all(w.exited for w in pool.workers)
    assert all(not w.process.is_alive() for w in pool.workers)


def test_pool_a_dead_worker_is_noticed_and_reported() -> None:
    async def go() -> tuple[WorkerPool, list[Any]]:
        pool = WorkerPool(2, worker_mains.dies, start_timeout=60)
        await pool.start(lambda rank, info: {"bad": 2})
        await asyncio.wait_for(pool.lost.wait(), 20)
        pool.stop(hurry=True)
        return pool, await pool.finish(20)

    _, results = asyncio.run(go())
    assert results[1].exitcode == 3
    assert results[1].report is None and not results[1].ok
    assert results[0].ok  # the other one stopped in order


def test_pool_a_nonzero_exit_is_not_ok() -> None:
    _, results = _run_pool(worker_mains.orderly, 2, {"exit": 1})
    assert [r.ok for r in results] == [False, False]
    assert all(r.report is not None for r in results)


# -- invsess answer --workers ------------------------------------------------------------------


class Pool:
    """``invsess answer|b2bua --workers N ...`` in the background, until it said it listens."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*INVSESS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        last = "metrics: " if "--metrics" in args else "rpc: " if "--rpc" in args else None
        while not self._all_ready() or (last is not None and not any(x.startswith(last) for x in self.lines)):
            line = self.process.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError("the pool did not start:\n" + "".join(self.lines))
            self.lines.append(line)
        text = "".join(self.lines)
        found = re.search(r"listening on udp:127\.0\.0\.1:(\d+)", text)
        self.port = int(found.group(1)) if found else 0
        self.pids = [int(p) for p in re.findall(r"^worker \d+ \(pid (\d+)", text, re.MULTILINE)]

    def _all_ready(self) -> bool:
        count = int(self.args_workers())
        return sum(1 for line in self.lines if line.startswith("worker ")) >= count

    def args_workers(self) -> str:
        args = self.process.args
        assert isinstance(args, list)
        return str(args[args.index("--workers") + 1])

    def url(self, kind: str) -> str:
        found = re.search(rf"^{kind}: (\S+) \(all", "".join(self.lines), re.MULTILINE)
        assert found, "".join(self.lines)
        return found.group(1)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, "".join(self.lines) + err


@pytest.fixture
def pools() -> Iterator[list[Pool]]:
    started: list[Pool] = []
    yield started
    for pool in started:
        if pool.process.poll() is None:
            pool.process.kill()
            pool.process.communicate()
        for pid in pool.pids:  # (killed with the supervisor only if it stopped them)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _calls(
    port: int, count: int, *, rate: float = 50.0, hold: float = 0.0, sockets: int = 24
) -> dict[str, Any]:
    generator = Generator(("127.0.0.1", port), rate=rate, calls=count, hold=hold, sockets=sockets)
    try:
        return generator.run(linger=15).as_dict()
    finally:
        generator.close()


def _per_worker(err: str, pattern: str) -> dict[int, int]:
    return {
        int(r): int(n) for r, n in re.findall(rf"^worker (\d+) \(pid \d+\): {pattern}", err, re.MULTILINE)
    }


def test_answer_workers_share_the_port_and_report_each_and_all(pools: list[Pool]) -> None:
    pool = Pool(
        "answer", "--workers", "2", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--rate-limit", "off"
    )
    pools.append(pool)
    text = "".join(pool.lines)
    assert re.search(r"listening on udp:127\.0\.0\.1:\d+ \(shared by 2 workers: pids \d+, \d+\)", text)
    figures = _calls(pool.port, 40)
    assert figures["succeeded"] == 40 and figures["failed"] == 0, figures
    code, err = pool.stop()
    assert code == 0, err
    ended = _per_worker(err, r"calls ended: (\d+)")
    assert sorted(ended) == [1, 2]
    assert sum(ended.values()) == 40
    assert all(n > 0 for n in ended.values()), ended  # 24 source ports: both workers had calls
    assert "all 2 workers: calls ended: 40 (cause 200 x40)" in err
    assert err.rstrip().endswith("0 leaked blocks")
    for pid in pool.pids:  # every worker is gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_answer_workers_own_byes_are_answered_to_the_right_worker(pools: list[Pool]) -> None:
    """--hangup-after: each worker sends its own BYE from the shared port; the caller answers
    from the address it called from, which hashes to the same worker (symmetric signalling)."""
    pool = Pool(
        "answer", "--workers", "2", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--rate-limit", "off",
        "--hangup-after", "0.2",
    )  # fmt: skip
    pools.append(pool)
    figures = _calls(pool.port, 30, hold=10.0)
    assert figures["ended_by_peer"] == 30 and figures["failed"] == 0, figures
    code, err = pool.stop()
    assert code == 0, err
    assert "all 2 workers: calls ended: 30 (cause 200 x30)" in err
    assert "in-call requests: BYE sent x30" in err
    assert all(n > 0 for n in _per_worker(err, r"calls ended: (\d+)").values())


def test_answer_workers_port_per_worker(pools: list[Pool]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    if base > 65000:
        pytest.skip("no room above the free port found")
    pool = Pool(
        "answer", "--workers", "2", "--port-per-worker", "--listen", f"udp:127.0.0.1:{base}", "--t1", "0.05"
    )
    pools.append(pool)
    text = "".join(pool.lines)
    assert f"worker 1 (pid {pool.pids[0]}" in text and f"listening on udp:127.0.0.1:{base}" in text
    assert f"listening on udp:127.0.0.1:{base + 1}" in text
    for port in (base, base + 1):
        figures = _calls(port, 5, sockets=1)
        assert figures["succeeded"] == 5, figures
    code, err = pool.stop()
    assert code == 0, err
    assert _per_worker(err, r"calls ended: (\d+)") == {1: 5, 2: 5}


def test_answer_workers_sigterm_stops_at_once_and_cleanly(pools: list[Pool]) -> None:
    pool = Pool(
        "answer", "--workers", "2", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--rate-limit", "off"
    )
    pools.append(pool)
    generator = Generator(("127.0.0.1", pool.port), rate=100, calls=20, hold=60, sockets=20)
    try:
        deadline = time.monotonic() + 5
        thread = threading.Thread(target=generator.run, kwargs={"linger": 5}, daemon=True)
        thread.start()
        while generator.result.most_up < 20 and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        started = time.monotonic()
        code, err = pool.stop(signal.SIGTERM)
        assert time.monotonic() - started < 20
        thread.join(30)
    finally:
        generator.close()
    assert code == 0, err
    assert "SIGTERM: stopping every worker at once" in err
    assert re.search(r"calls still up at shutdown", err), err
    assert err.rstrip().endswith("0 leaked blocks")


def test_answer_a_killed_worker_stops_the_pool_with_an_error(pools: list[Pool]) -> None:
    pool = Pool("answer", "--workers", "2", "--listen", "udp:127.0.0.1:0")
    pools.append(pool)
    os.kill(pool.pids[1], signal.SIGKILL)
    _, err = pool.process.communicate(timeout=60)
    assert pool.process.returncode == 1, err
    assert "a worker exited on its own: the others were stopped" in err
    assert re.search(r"^worker 2 \(pid \d+\): no report, exit status -9$", err, re.MULTILINE)
    assert "worker 1 (pid" in err and "0 leaked blocks" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--listen", "tcp:127.0.0.1:0"], "--workers shares UDP ports only"),
        (["--port-per-worker"], "--port-per-worker goes with --workers N"),
        (
            ["--workers", "2", "--register", "sip:127.0.0.1:5060", "--user", "a"],
            "--register goes with one worker",
        ),
        (["--workers", "0"], "0 is not in the range 1<=x<=256"),
    ],
)
def test_answer_workers_misuse_is_a_usage_error(args: list[str], message: str) -> None:
    done = subprocess.run(
        [*INVSESS, "answer", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_answer_workers_a_port_in_use_is_said_once(pools: list[Pool]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:  # bound without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*INVSESS, "answer", "--workers", "2", "--listen", f"udp:127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    # Both workers fail to bind; whichever tells the supervisor first is the one said, once.
    assert len(re.findall(r"worker [12]: cannot listen on udp:127\.0\.0\.1:", done.stderr)) == 1
    assert "Address already in use" in done.stderr


def _rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 7}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        answer = json.loads(reply.read())
    if "error" in answer:
        raise AssertionError(answer["error"])
    return answer["result"]


def test_answer_workers_each_worker_is_seen_over_rpc_and_prometheus(pools: list[Pool]) -> None:
    pool = Pool(
        "answer", "--workers", "2", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--rate-limit", "off",
        "--rpc", "0", "--metrics", "0",
    )  # fmt: skip
    pools.append(pool)
    rpc, metrics = pool.url("rpc"), pool.url("metrics")
    worker_rpc = re.findall(r"rpc (http://127\.0\.0\.1:\d+/RPC)", "".join(pool.lines))
    assert len(worker_rpc) == 2  # each worker's own view is printed too
    figures = _calls(pool.port, 20)
    assert figures["succeeded"] == 20, figures

    entries = _rpc(rpc, "pkg.stats")
    assert [(e["entry"], e["rank"], e["pid"]) for e in entries] == [
        (0, 1, pool.pids[0]),
        (1, 2, pool.pids[1]),
    ]
    assert entries[0]["desc"].startswith("worker 1: udp:127.0.0.1:")
    assert _rpc(rpc, "pkg.stats", "rank", 2) == [entries[1]]
    assert _rpc(rpc, "pkg.stats", "pid", pool.pids[0]) == [entries[0]]
    total = _rpc(rpc, "stats.fetchn", "core:")
    each = [_rpc(url, "stats.fetchn", "core:") for url in worker_rpc]
    assert total == {k: each[0].get(k, 0) + each[1].get(k, 0) for k in total}
    assert total["core.rcv_requests_invite"] == 20
    assert _rpc(rpc, "stats.get_statistics", "core:rcv_requests_invite") == ["core:rcv_requests_invite = 20"]
    shm = _rpc(rpc, "core.shmmem")
    assert shm["total"] == sum(e["total_size"] for e in entries)
    assert {d["worker"] for d in _rpc(rpc, "invsess.leaks")} == {1, 2}

    with urllib.request.urlopen(metrics, timeout=10) as reply:
        text = reply.read().decode()
    assert 'invsess_worker_up{worker="1"} 1.0' in text and 'invsess_worker_up{worker="2"} 1.0' in text
    assert re.search(r'process_resident_memory_bytes\{worker="2"\} \d', text)
    invites = [
        (labels, float(value))
        for labels, value in re.findall(
            r"^invsess_sip_requests_received_total\{([^}]*)\} (\S+)$", text, re.MULTILINE
        )
        if 'method="INVITE"' in labels
    ]
    assert {re.search(r'worker="(\d)"', labels).group(1) for labels, _ in invites} == {"1", "2"}  # type: ignore[union-attr]
    assert sum(value for _, value in invites) == 20

    shown = subprocess.run(
        [*INVSESS, "stats", "--rpc", rpc], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "worker 1: udp:127.0.0.1:" in shown.stdout and "worker 2: udp:127.0.0.1:" in shown.stdout
    code, err = pool.stop()
    assert code == 0, err


def test_b2bua_workers_bridge_from_ports_of_their_own(pools: list[Pool]) -> None:
    callee = subprocess.Popen(
        [*INVSESS, "answer", "--listen", "udp:127.0.0.1:0", "--t1", "0.05", "--rate-limit", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert callee.stderr is not None
        line = ""
        while "listening on" not in line:
            line = callee.stderr.readline()
            assert line, "the callee did not start"
        callee_port = int(line.rsplit(":", 1)[1])
        pool = Pool(
            "b2bua", "--workers", "2", "--listen", "udp:127.0.0.1:0", "--t1", "0.05",
            "--to", f"sip:127.0.0.1:{callee_port}",
        )  # fmt: skip
        pools.append(pool)
        legs = re.findall(r"second legs from udp:127\.0\.0\.1:(\d+)", "".join(pool.lines))
        assert len(set(legs)) == 2 and str(pool.port) not in legs
        figures = _calls(pool.port, 30)
        assert figures["succeeded"] == 30 and figures["failed"] == 0, figures
        code, err = pool.stop()
        assert code == 0, err
        bridged = _per_worker(err, r"calls bridged: (\d+)")
        assert sum(bridged.values()) == 30 and all(n > 0 for n in bridged.values()), err
        assert "all 2 workers: calls bridged: 30; outcomes: 200 x30" in err
        assert err.rstrip().endswith("0 leaked blocks")
    finally:
        callee.send_signal(signal.SIGINT)
        _, callee_err = callee.communicate(timeout=60)
    assert "calls ended: 30 (cause 200 x30)" in callee_err
