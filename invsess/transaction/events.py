"""Events the transaction layer gives its user, named in the past tense (h2's habit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from invsess.sip import Request, Response

if TYPE_CHECKING:
    from invsess.address import Address
    from invsess.transaction.base import Timer, Transaction
    from invsess.transaction.server import ServerInviteTransaction, ServerTransaction


@attrs.frozen
class RequestReceived:
    """A new request for the transaction user; answer it with ``Endpoint.respond``.

    The request lives in the transaction's pool: valid until the transaction terminates.
    """

    transaction: ServerTransaction[Any]
    request: Request
    source: Address


@attrs.frozen
class ResponseReceived:
    """A response for a client transaction (2xx retransmissions in Accepted included).

    The response is valid until the next ``Endpoint.next_event()`` call.
    """

    transaction: Transaction[Any]
    response: Response


@attrs.frozen
class AckReceived:
    """An ACK for a 2xx (its own transaction-less request, RFC 3261 §17.2.1)."""

    request: Request
    source: Address
    transaction: ServerInviteTransaction | None


@attrs.frozen
class TransactionTimedOut:
    """Timer B, F or H fired: the peer never answered (or never acknowledged); or, for an INVITE
    we CANCELled, no final response came within 64*T1 (``Timer.GIVE_UP``, RFC 3261 §9.1)."""

    transaction: Transaction[Any]
    timer: Timer


@attrs.frozen
class TransactionTerminated:
    """The transaction is gone and its pool released."""

    transaction: Transaction[Any]
    reason: str


Event = RequestReceived | ResponseReceived | AckReceived | TransactionTimedOut | TransactionTerminated
