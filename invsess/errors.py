"""The root of invsess's exception tree.

Every error the library raises on purpose derives from :class:`InvsessError`, so an
application can tell a fault of its own (:class:`UsageError`) from a fault of the
network peer (the parser's errors), of memory handling (:mod:`invsess.memory`), or of invsess
itself (:class:`InternalError`).
"""

from __future__ import annotations


class InvsessError(Exception):
    """Base class of every error invsess raises deliberately."""


class UsageError(InvsessError):
    """The application called the API in a way it does not allow (its own fault)."""


class InternalError(InvsessError):
    """invsess reached a state its own rules say cannot happen: a bug in invsess, not in the
    application (that is :class:`UsageError`) nor in the peer (a ``RemoteProtocolError``)."""
