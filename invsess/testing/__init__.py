"""The regression test harness: virtual time, a simulated network, the pytest plugin.

The plugin (``invsess.testing.plugin``) is registered through the ``pytest11`` entry point, so
installing invsess makes its fixtures and its leak gate available in any test suite.
"""

from invsess.testing.clock import VirtualClock
from invsess.testing.driver import CallDriver, CallRecord
from invsess.testing.network import LinkProfile, SimNetwork
from invsess.testing.scenario import ScriptedPeer

__all__ = [
    "CallDriver",
    "CallRecord",
    "LinkProfile",
    "ScriptedPeer",
    "SimNetwork",
    "VirtualClock",
]
