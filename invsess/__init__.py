"""invsess: SIP INVITE sessions and dialogs, built the way PJSIP builds them, built to be debugged.

The sans-IO core (:mod:`invsess.memory`, and the SIP layers built on it) takes bytes, addresses
and a time value in and gives bytes out; asyncio lives only in the adapter layer.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
