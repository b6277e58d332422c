"""The root of invsess's exception tree.

Every error the library raises on purpose derives from :class:`InvsessError`, so an
application can tell a fault of its own (:class:`UsageError`) from a fault of the
network peer (the parser's errors) or of memory handling (:mod:`invsess.memory`).
"""

from __future__ import annotations


class InvsessError(Exception):
    """Base class of every error invsess raises deliberately."""


class UsageError(InvsessError):
    """The application called the API in a way it does not allow (its own fault)."""
