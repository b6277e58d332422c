"""Worker main functions for the process-pool tests (tests/test_workers.py): importable by name,
as ``spawn`` needs, and small. Each reports a dict: what happened, and when (monotonic)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from invsess.aio.workers import WorkerLink


def orderly(link: WorkerLink, payload: dict[str, Any]) -> int:
    """Ready; waits for the stop; takes ``payload["drain"]`` seconds to drain; lingers; reports
    when it drained and when it was let close; exits ``payload["exit"]``."""

    async def main() -> dict[str, Any]:
        link.attach()
        link.ready(
            listen=[f"listening on udp:127.0.0.1:{10000 + link.rank}"], pid=os.getpid(), loop="asyncio"
        )
        for n in range(1, payload.get("ended", 0) + 1):
            link.progress(ended=n)
        await link.stopped()
        await asyncio.sleep(payload.get("drain", 0.0))
        drained = time.monotonic()
        await link.linger()
        closed = time.monotonic()
        link.detach()
        return {"rank": link.rank, "drained": drained, "closed": closed, "hurried": link.hurried}

    report = asyncio.run(main())
    link.report(report)
    return int(payload.get("exit", 0))


def refuses(link: WorkerLink, payload: dict[str, Any]) -> int:
    """Cannot start (worker ``payload["bad"]`` only; the others are orderly)."""
    if link.rank == payload["bad"]:
        link.failed("port 5060 is not ours")
        return 2
    return orderly(link, payload)


def dies(link: WorkerLink, payload: dict[str, Any]) -> int:
    """Ready, then worker ``payload["bad"]`` dies (os._exit) without a word."""
    if link.rank != payload["bad"]:
        return orderly(link, payload)

    async def main() -> None:
        link.attach()
        link.ready(listen=["listening on udp:127.0.0.1:1"], pid=os.getpid(), loop="asyncio")
        await asyncio.sleep(0.3)

    asyncio.run(main())
    os._exit(3)
