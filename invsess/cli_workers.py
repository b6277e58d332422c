"""The supervisor side of ``--workers N`` on the command line: signals, the stop conditions
(``--calls``, ``--duration``, a worker lost) and the "listening" lines. The process model itself
is :mod:`invsess.aio.workers`; what each command serves and reports stays in :mod:`invsess.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from invsess.aio.workers import WorkerPool, WorkerResult

#: How long past ``--shutdown-timeout`` the workers get to end their calls (their own close
#: runs the timers of unanswered ones out, unregisters, writes traces).
DRAIN_MARGIN = 10.0


class Supervisor:
    """Runs a started :class:`WorkerPool` until it should stop, then stops it in order."""

    def __init__(self, pool: WorkerPool, *, shutdown_timeout: float) -> None:
        self.pool = pool
        self.shutdown_timeout = shutdown_timeout
        self._stop = asyncio.Event()
        self._hurry = False
        self._signals = 0
        #: True when a worker ended without being asked to (the others were then stopped).
        self.lost = False

    def stop_on_signals(self) -> None:
        """First SIGINT: stop (the workers' calls get --shutdown-timeout to end). A second
        SIGINT, or SIGTERM: stop at once."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if sig == signal.SIGTERM or self._signals > 1:
            click.echo(f"{sig.name}: stopping every worker at once", err=True)
            self._hurry = True
            if self._stop.is_set():  # a stop under way: cut it short
                self.pool.stop(hurry=True)
        else:
            click.echo(f"{sig.name}: stopping every worker (again to stop at once)", err=True)
        self._stop.set()

    def listening(self, shared: bool) -> list[str]:
        """What to print once every worker is ready."""
        workers = self.pool.workers
        lines = []
        if shared and workers and workers[0].info is not None:
            pids = ", ".join(str(w.pid) for w in workers)
            lines += [
                f"{line} (shared by {len(workers)} workers: pids {pids})"
                for line in workers[0].info["listen"]
            ]
        for worker in workers:
            info = worker.info or {}
            what = [] if shared else list(info.get("listen", []))
            what += [f"second legs from {address}" for address in info.get("leg_b", [])]
            what += [f"{kind} {info[kind]}" for kind in ("rpc", "metrics") if info.get(kind)]
            loop = info.get("loop", "?")
            lines.append(f"worker {worker.rank} (pid {worker.pid}, {loop}): " + ("; ".join(what) or "ready"))
        return lines

    async def run(self, *, calls: int | None = None, duration: float | None = None) -> list[WorkerResult]:
        """Until a signal, ``duration`` seconds, ``calls`` calls ended over all workers, or a
        worker lost; then stop every worker and wait for their reports."""
        pool = self.pool
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        while not self._stop.is_set():
            if pool.lost.is_set():
                self.lost = True
                break
            if calls is not None and pool.ended() >= calls:
                break
            waiters = [loop.create_task(self._stop.wait()), loop.create_task(pool.changed())]
            timeout = None if deadline is None else max(deadline - loop.time(), 0)
            _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            if deadline is not None and loop.time() >= deadline:
                break
        pool.stop(hurry=self._hurry or self.lost)
        return await pool.finish(self.shutdown_timeout + DRAIN_MARGIN)


__all__ = ["DRAIN_MARGIN", "Supervisor"]
