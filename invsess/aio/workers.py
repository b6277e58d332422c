"""Several processes serving one UDP port: the process model of ``invsess answer --workers N``.

One Python process uses one core. To use all of them, N worker processes each run a complete
user agent (endpoint, session layer, event loop: nothing is shared between them) and bind the
same UDP address with ``SO_REUSEPORT``. The kernel then gives each datagram to one of their
sockets by a hash of its source and destination addresses and ports (Linux:
``udp_ehashfn`` -> ``reuseport_select_sock``), so **everything a peer sends from one address
and port goes to the same worker** while the set of sockets stays the same. A supervisor (the
process the user started) spawns the workers, waits until all of them are bound before it says
"listening", relays the stop request, collects every worker's report and exits with an error
when any worker leaked or failed.

What keeps a dialog on one worker — and where that has limits:

* A call we answer: the caller's INVITE, its retransmissions, CANCEL, ACK, and every later
  request of the caller in that dialog come from one address and port when the caller's
  signalling is symmetric (RFC 3581; it is what SIPp, PJSIP, Kamailio, sippy and baresip do),
  so they hash to the worker that took the INVITE. So do the responses to what that worker
  sends the caller itself (a BYE after ``--hangup-after``, a re-INVITE): our Via and Contact
  carry the shared port, and a symmetric caller answers from the address it sends from, which
  is the same four-tuple. A peer that sends from one port and answers from another would see
  its later requests land on any worker (481): put a proxy in front of such peers (Kamailio's
  dispatcher, docs/performance.md) or run one worker.
* One source, one worker: all the traffic of a single peer address (one proxy in front, SIPp
  with ``-t u1``) lands on one worker. The load spreads over many sources (SIPp ``-t un``,
  many phones); behind one proxy, give each worker a port of its own instead
  (``--port-per-worker``) and let the proxy spread the calls (Kamailio ``dispatcher``).
* Requests a worker originates outside a call it answered — a B2BUA's second leg, a
  REGISTER — would be answered to the shared port from an address that hashes to any worker.
  The B2BUA's second leg therefore uses a socket of the worker's own (its Via and Contact), and
  ``answer --workers`` refuses ``--register``.
* The hash depends on the set of sockets: a worker that closes its socket moves other workers'
  peers. So the workers close together — each one, once its calls are over, keeps serving
  (refusing new calls with 503) until all are done (:meth:`WorkerLink.linger`) — and a worker
  that dies stops the others, as Kamailio's main process does when a child dies.

The supervisor talks to each worker over a pipe, with small pickled messages; nothing here
depends on what the workers serve (``payload`` is the command's options).

Ctrl-C in a terminal signals the whole process group: the workers ignore SIGINT and wait for the
supervisor's word (a first Ctrl-C: stop, calls get their shutdown time; a second one, or
SIGTERM: stop at once). SIGTERM sent to a worker itself stops it at once; a worker whose
supervisor has gone away (its pipe closed) stops at once too.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import sys
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

import attrs

from invsess.errors import InvsessError
from invsess.logs import get_logger

log = get_logger("invsess.workers")

# Worker -> supervisor: (kind, value).
READY = "ready"  # value: a dict of what the worker wants known (its addresses, its RPC URL ...)
FAILED = "failed"  # value: why it could not start, one line
PROGRESS = "progress"  # value: a dict of counters (calls ended ...)
DRAINED = "drained"  # its calls are over; it waits for CLOSE before closing its sockets
REPORT = "report"  # value: what it has to say at exit (the command's report object)
# Supervisor -> worker.
STOP = "stop"  # value: True to stop at once (hurry)
CLOSE = "close"  # every worker is drained: close the sockets, report, exit

#: How often at most a worker sends its counters.
PROGRESS_INTERVAL = 0.1


class WorkerStartError(InvsessError):
    """A worker could not start (its message says why: a port in use, a bad option)."""


class WorkerLink:
    """A worker's end of the pipe: tells the supervisor how it is doing, and hears when to
    stop. Made by the worker's main function; :meth:`attach` it on the worker's event loop."""

    def __init__(self, rank: int, count: int, conn: multiprocessing.connection.Connection) -> None:
        #: 1..count, as Kamailio numbers its SIP workers (rank 0 is its main process).
        self.rank = rank
        self.count = count
        self._conn = conn
        self._stop: asyncio.Event | None = None
        self._close: asyncio.Event | None = None
        #: True once the supervisor said to stop at once (or went away).
        self.hurried = False
        #: Called when the supervisor says to stop at once (the command's ``agent.hurry``).
        self.on_hurry: Callable[[], None] | None = None
        self._counts: dict[str, int] = {}
        self._progress_due: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Start hearing the supervisor on the running loop; SIGTERM stops at once."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        self._close = asyncio.Event()
        loop.add_reader(self._conn.fileno(), self._readable)
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, self._stop_now)

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                kind, value = self._conn.recv()
                if kind == STOP:
                    if value:
                        self._stop_now()
                    elif self._stop is not None:
                        self._stop.set()
                elif kind == CLOSE and self._close is not None:
                    self._close.set()
        except (EOFError, OSError):  # the supervisor is gone: nobody will say CLOSE
            if self._loop is not None:
                self._loop.remove_reader(self._conn.fileno())
            self._stop_now()
            if self._close is not None:
                self._close.set()

    def _stop_now(self) -> None:
        self.hurried = True
        if self.on_hurry is not None:
            self.on_hurry()
        if self._stop is not None:
            self._stop.set()

    async def stopped(self) -> None:
        """Return when the supervisor says to stop (see :attr:`hurried` for how)."""
        if self._stop is None:
            raise RuntimeError("attach() the link first")
        await self._stop.wait()

    def _send(self, kind: str, value: Any = None) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: _readable hears it
            self._conn.send((kind, value))

    def ready(self, **info: Any) -> None:
        """Bound and serving; ``info`` is shown by the supervisor (addresses, URLs)."""
        self._send(READY, info)

    def failed(self, message: str) -> None:
        """Could not start: ``message`` says why."""
        self._send(FAILED, message)

    def progress(self, **counts: int) -> None:
        """Counters the supervisor adds up (``ended``: calls over, for ``--calls``); sent at
        most every :data:`PROGRESS_INTERVAL` seconds, the latest values."""
        self._counts.update(counts)
        if self._progress_due is None and self._loop is not None:
            self._progress_due = self._loop.call_later(PROGRESS_INTERVAL, self._send_progress)

    def _send_progress(self) -> None:
        self._progress_due = None
        self._send(PROGRESS, dict(self._counts))

    async def linger(self) -> None:
        """Say our calls are over, and wait until every worker's are (the supervisor's CLOSE)
        before the sockets close: see the module docstring."""
        if self._close is None:
            raise RuntimeError("attach() the link first")
        if self._progress_due is not None:
            self._progress_due.cancel()
            self._send_progress()
        self._send(DRAINED)
        await self._close.wait()

    def report(self, payload: Any) -> None:
        """The worker's report at exit (sent once, last)."""
        self._send(REPORT, payload)

    def detach(self) -> None:
        """Stop hearing the supervisor (before the loop closes)."""
        if self._progress_due is not None:
            self._progress_due.cancel()
            self._progress_due = None
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._conn.fileno())
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.remove_signal_handler(signal.SIGTERM)


#: A worker's main function: ``main(link, payload)`` -> exit status.
WorkerMain = Callable[[WorkerLink, Any], int]
#: ``payload_for(rank, first_worker_info)`` -> the payload of worker ``rank``.
PayloadFor = Callable[[int, "dict[str, Any] | None"], Any]


def _worker_main(
    main: WorkerMain, rank: int, count: int, conn: multiprocessing.connection.Connection, payload: Any
) -> None:
    """What a worker process runs: ``main(link, payload)``, its return value the exit status."""
    # Ctrl-C reaches every process of the terminal's group; the supervisor decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = WorkerLink(rank, count, conn)
    try:
        code = main(link, payload)
    finally:
        conn.close()
    sys.exit(code)


@attrs.define
class Worker:
    """The supervisor's record of one worker process."""

    rank: int
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    info: dict[str, Any] | None = None
    failure: str | None = None
    counts: dict[str, int] = attrs.field(factory=dict)
    drained: bool = False
    report: Any = None
    exited: bool = False

    @property
    def pid(self) -> int | None:
        """The process id."""
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal)."""
        return self.process.exitcode


@attrs.frozen
class WorkerResult:
    """What became of one worker: its exit status and its report (None if it sent none)."""

    rank: int
    pid: int | None
    exitcode: int | None
    report: Any

    @property
    def ok(self) -> bool:
        """Exited 0 with a report."""
        return self.exitcode == 0 and self.report is not None


class WorkerPool:
    """Spawns ``count`` workers running ``main(link, payload)`` and supervises them (see the
    module docstring). ``main`` must be importable by name (a module-level function): workers
    are started with ``spawn``, a fresh interpreter each, never a fork of this process."""

    def __init__(self, count: int, main: WorkerMain, *, start_timeout: float = 60.0) -> None:
        if count < 1:
            raise ValueError("a pool has at least one worker")
        self.count = count
        self.main = main
        self.start_timeout = start_timeout
        self.workers: list[Worker] = []
        self._context = multiprocessing.get_context("spawn")
        self._changed = asyncio.Event()  # any news from any worker
        self._stopping = False
        #: Set when a worker ended (or failed) without being asked to stop.
        self.lost = asyncio.Event()

    # -- start ---------------------------------------------------------------------------------

    async def start(self, payload_for: PayloadFor, *, first_alone: bool = False) -> list[Worker]:
        """Start the workers (``payload_for(rank, None)`` is each one's payload) and wait until
        each is ready; raises :class:`WorkerStartError` (having stopped the others) when one
        fails. With ``first_alone``, the first starts alone and the others' payloads are made
        from what it reported, ``payload_for(rank, info)`` (its bound ports, when port 0 was
        asked for)."""
        if self.workers:
            raise RuntimeError("this pool was started already")
        try:
            first = self._spawn(1, payload_for(1, None))
            info = None
            if first_alone:
                await self._until_ready([first])
                info = first.info
            for rank in range(2, self.count + 1):
                self._spawn(rank, payload_for(rank, info))
            await self._until_ready(self.workers)
        except BaseException:
            self.stop(hurry=True)
            await self._reap(5.0)
            raise
        return self.workers

    def _spawn(self, rank: int, payload: Any) -> Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(self.main, rank, self.count, theirs, payload),
            name=f"invsess-worker-{rank}",
            daemon=False,
        )
        process.start()
        theirs.close()  # the child has its copy; ours closing tells us when it exits
        worker = Worker(rank, process, ours)
        self.workers.append(worker)
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._readable, worker)
        loop.add_reader(process.sentinel, self._exited, worker)
        return worker

    async def _until_ready(self, workers: list[Worker]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while True:
            failed = next((w for w in workers if w.failure is not None or w.exited), None)
            if failed is not None:
                why = failed.failure or f"exited with status {failed.exitcode} before it was ready"
                raise WorkerStartError(f"worker {failed.rank}: {why}")
            if all(w.info is not None for w in workers):
                return
            left = deadline - loop.time()
            if left <= 0:
                raise WorkerStartError(f"workers not ready within {self.start_timeout:g} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    # -- hearing the workers -----------------------------------------------------------------

    def _readable(self, worker: Worker) -> None:
        try:
            while worker.conn.poll():
                kind, value = worker.conn.recv()
                if kind == READY:
                    worker.info = dict(value)
                elif kind == FAILED:
                    worker.failure = str(value)
                elif kind == PROGRESS:
                    worker.counts = dict(value)
                elif kind == DRAINED:
                    worker.drained = True
                elif kind == REPORT:
                    worker.report = value
        except (EOFError, OSError):  # it closed its end: it is exiting
            self._forget_conn(worker)
        self._poke()

    def _exited(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.process.sentinel)
        # What it sent before it exited is still in the pipe: read it first.
        if not worker.conn.closed:
            self._readable(worker)
        # The sentinel turns readable as the process closes its descriptors, a moment before
        # the kernel has its exit status: wait for that moment (it is short).
        worker.process.join(5.0)
        worker.exited = True
        self._forget_conn(worker)
        if not self._stopping:
            log.warning("worker exited", rank=worker.rank, pid=worker.pid, status=worker.exitcode)
            self.lost.set()
        self._poke()

    def _forget_conn(self, worker: Worker) -> None:
        if not worker.conn.closed:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            worker.conn.close()

    def _poke(self) -> None:
        self._changed.set()

    def ended(self, name: str = "ended") -> int:
        """A counter summed over the workers' latest progress (``ended``: calls over)."""
        return sum(w.counts.get(name, 0) for w in self.workers)

    async def changed(self) -> None:
        """Return at the next news from any worker."""
        self._changed.clear()
        await self._changed.wait()

    # -- stop --------------------------------------------------------------------------------

    def stop(self, hurry: bool = False) -> None:
        """Tell every worker to stop (``hurry``: at once); said again with ``hurry`` it cuts a
        stop under way short."""
        self._stopping = True
        for worker in self.workers:
            self._tell(worker, STOP, hurry)

    def _tell(self, worker: Worker, kind: str, value: Any = None) -> None:
        if worker.conn.closed or worker.exited:
            return
        try:
            worker.conn.send((kind, value))
        except OSError:  # exiting meanwhile
            self._forget_conn(worker)

    async def finish(self, drain_timeout: float, exit_timeout: float = 15.0) -> list[WorkerResult]:
        """After :meth:`stop`: wait (up to ``drain_timeout``) until every worker still running
        has ended its calls, then let them all close together; wait (``exit_timeout``) for their
        reports and exits; kill what is left. Returns a result per worker, by rank."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while any(not (w.drained or w.exited) for w in self.workers) and loop.time() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
        for worker in self.workers:
            self._tell(worker, CLOSE)
        await self._reap(exit_timeout)
        return [WorkerResult(w.rank, w.pid, w.exitcode, w.report) for w in self.workers]

    async def _reap(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(not w.exited for w in self.workers) and loop.time() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
        for worker in self.workers:
            if not worker.exited:
                log.warning("worker did not exit: killed", rank=worker.rank, pid=worker.pid)
                worker.process.kill()
                worker.process.join(5.0)
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(worker.process.sentinel)
                worker.exited = True
                self._forget_conn(worker)


__all__ = [
    "CLOSE",
    "DRAINED",
    "FAILED",
    "PROGRESS",
    "PayloadFor",
    "READY",
    "REPORT",
    "STOP",
    "Worker",
    "WorkerLink",
    "WorkerMain",
    "WorkerPool",
    "WorkerResult",
    "WorkerStartError",
]
