"""The B2BUA: :class:`B2bua` bridges each incoming call to a fixed next hop (``invsess b2bua``).

It is written on the public asyncio API (:class:`~invsess.aio.UserAgent`,
:class:`~invsess.aio.Call`) and lives in :mod:`invsess.aio.b2bua`, where asyncio is allowed;
this module is its documented home. See that module for what is bridged and how its legs
release their memory (session first, dialog second), and docs/b2bua.md for the guide.
"""

from invsess.aio.b2bua import B2bua, Bridge, map_failure

__all__ = ["B2bua", "Bridge", "map_failure"]
