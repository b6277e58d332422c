"""What every chapter's program does around its story: options, the report, the trace.

Each program is run as ``python examples/tutorial/<chapter>.py [--fixed] [--trace FILE]``: the
story runs on a seeded simulated network (so every run prints the same), a MALLOC_DEBUG report
raised by the mistake is printed and the program exits 1, and ``--trace`` writes what went on
the wire for ``invsess ladder``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from invsess.memory import DanglingReferenceError, UseAfterFreeError
from invsess.testing import SimNetwork
from invsess.trace import Trace

#: A chapter's story: on this network, with the mistake (False) or the fix (True).
Story = Callable[[SimNetwork, bool], None]


def run(story: Story, doc: str | None, *, fixed: str) -> NoReturn:
    """Parse the options (``fixed`` is the help of --fixed), run ``story``, exit."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help=fixed)
    parser.add_argument(
        "--trace", metavar="FILE", help="write the SIP messages here (draw: invsess ladder FILE)"
    )
    args = parser.parse_args()
    network = SimNetwork(seed=1)
    status = 0
    try:
        story(network, args.fixed)
    except (DanglingReferenceError, UseAfterFreeError) as err:
        print(err.report.format())  # the report MALLOC_DEBUG raised, then exit 1
        status = 1
    finally:
        if args.trace:
            Trace([*network.trace]).write(args.trace)
    sys.exit(status)
