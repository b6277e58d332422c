"""Transactions (RFC 3261 §17, RFC 6026): the four machines, their timers and events. Sans-IO."""

from invsess.address import Address
from invsess.transaction.base import (
    MAGIC_COOKIE,
    RELIABLE,
    TRANSPORT_ERROR,
    Outgoing,
    Role,
    Timer,
    Transaction,
    TransactionKey,
    TransactionTableError,
    TxInput,
)
from invsess.transaction.client import (
    ClientInviteState,
    ClientInviteTransaction,
    ClientNonInviteState,
    ClientNonInviteTransaction,
)
from invsess.transaction.events import (
    AckReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
)
from invsess.transaction.server import (
    ServerInviteState,
    ServerInviteTransaction,
    ServerNonInviteState,
    ServerNonInviteTransaction,
    ServerTransaction,
)
from invsess.transaction.timers import TimerConfig

__all__ = [
    "MAGIC_COOKIE",
    "RELIABLE",
    "TRANSPORT_ERROR",
    "AckReceived",
    "Address",
    "ClientInviteState",
    "ClientInviteTransaction",
    "ClientNonInviteState",
    "ClientNonInviteTransaction",
    "Event",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "Role",
    "ServerInviteState",
    "ServerInviteTransaction",
    "ServerNonInviteState",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "Timer",
    "TimerConfig",
    "Transaction",
    "TransactionKey",
    "TransactionTableError",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TxInput",
]
