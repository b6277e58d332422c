"""Which event loop runs a command: uvloop when it is installed, asyncio's own otherwise.

uvloop (libuv under the asyncio API) makes the loop's own work — waiting in epoll, running
callbacks, timers, socket reads and writes — cheaper than the pure-Python selector loop, and
changes nothing else: invsess uses only the asyncio API, so the same code runs on both. It is an
optional dependency (``pip install 'invsess[fast]'``); :func:`run` takes it when it can.

The choice, in order: the ``loop`` argument (``--loop`` on the command line), then the
``INVSESS_LOOP`` environment variable, then ``auto``:

* ``auto``: uvloop if it imports, else asyncio's default loop;
* ``asyncio``: asyncio's default loop even when uvloop is installed (to compare, or to rule the
  loop out when hunting a bug);
* ``uvloop``: uvloop, and an error saying how to install it when it is missing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from invsess.errors import UsageError

T = TypeVar("T")

#: The names :func:`run` and ``--loop`` take.
LOOPS = ("auto", "asyncio", "uvloop")
#: The environment variable read when no loop is named.
ENV = "INVSESS_LOOP"
#: What to install for uvloop.
FAST_HINT = "pip install 'invsess[fast]'"


def loop_factory(name: str | None = None) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop chosen by ``name`` (None: ``$INVSESS_LOOP``, else ``auto``): its name as run
    (``uvloop`` or ``asyncio``) and a factory for :class:`asyncio.Runner` (None: the default)."""
    wanted = (name or os.environ.get(ENV) or "auto").strip().lower()
    if wanted not in LOOPS:
        raise UsageError(f"unknown event loop {wanted!r}: choose one of {', '.join(LOOPS)}")
    if wanted == "asyncio":
        return "asyncio", None
    try:
        import uvloop  # noqa: PLC0415 - optional, imported only when a loop is chosen
    except ImportError:
        if wanted == "uvloop":
            raise UsageError(f"uvloop is not installed ({FAST_HINT})") from None
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """Run ``main`` to completion on the chosen loop (see the module docstring), like
    :func:`asyncio.run`."""
    try:
        _, factory = loop_factory(loop)
    except BaseException:
        main.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what runs the current coroutine (for reports)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


__all__ = ["ENV", "FAST_HINT", "LOOPS", "loop_factory", "run", "running_loop_name"]
