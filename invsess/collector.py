"""The cycle collector in a long-running SIP process: start-up frozen, young passes rarer.

A call makes no reference cycles (``tests/test_no_cycles.py`` holds every flow to that, in both
memory modes, with the collector off): what a call allocates is freed by reference counting when
the call ends. The collector's passes over a serving process therefore find nothing, but they
still walk every young object 1/700 allocations and, now and then, every object alive: at a
steady load those are the transactions lingering for Timer I/J/L (up to 32 s), tens of thousands
of them. Measured with ``benchmarks/cps.py`` (docs/performance.md), one ``invsess answer`` at
500 calls/s for 15 s: 89% of a core and SIPp retransmitting with CPython's settings, 77% and
clean with :func:`tune`'s.

:func:`tune` (called by ``invsess answer`` and ``invsess b2bua`` and their workers once they are
set up; an embedding application may call it too):

* ``gc.freeze()``: the objects of start-up (modules, classes, tables) move to the permanent
  generation and out of every later pass;
* thresholds ``(10_000, 50, 100)`` instead of ``(700, 10, 10)``: a young pass per 10,000
  allocations, the older generations rarer still.

The collector stays on: cycles an application makes are still found, later. ``INVSESS_GC=default``
leaves CPython's settings alone (to compare, or to rule this out when hunting a leak).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

#: The collector's thresholds after :func:`tune` (CPython's default: 700, 10, 10).
THRESHOLDS = (10_000, 50, 100)
#: The environment variable that turns :func:`tune` off (``default``).
ENV = "INVSESS_GC"


def tune(environ: Mapping[str, str] | None = None) -> bool:
    """Freeze what start-up made and raise the thresholds (see the module docstring); False,
    changing nothing, when ``$INVSESS_GC`` is ``default``."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV, "").strip().lower() == "default":
        return False
    gc.collect()  # start-up's own garbage, before what is left is frozen
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return True


__all__ = ["ENV", "THRESHOLDS", "tune"]
