"""Counters of a running endpoint: kept as things happen, read when someone asks. Sans-IO.

What is counted, and by whom (each update is one or two dict increments, never a scan):

* messages received and sent, by method and status code — the endpoint, as they pass;
* transactions by machine and state, created and freed, and retransmissions — each transaction
  tells its :class:`TransactionCounters` of every transition (a hook in the table step);
* dialogs and INVITE sessions by state — each tells its :class:`StateGauge` when it is made, when
  it moves and when it goes;
* sanity failures by check and rejections by limit — where the endpoint refuses a request.

Figures are read in two shapes. :meth:`Counters.values` gives Kamailio's: statistics in groups,
``group:name = value`` (``shmem:used_size``, ``core:rcv_requests_invite``, ``dialog:active_dialogs``),
so ``stats.get_statistics`` and the tools written for it read them unchanged.
:meth:`Counters.families` gives Prometheus' metric families (``invsess_sip_requests_received_total``
with a ``method`` label, ...). The memory figures are read from the pool factory, which keeps its
totals as it goes; only the breakdowns by pool kind and by object type are computed when read.

A new group is a few lines: make a :class:`CounterGroup` (or any object with the :class:`Group`
methods) and :meth:`Counters.add` it; the JSON-RPC server, the Prometheus exposition and
``invsess stats`` show it without further work.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import attrs

from invsess.memory import PoolFactory
from invsess.memory.block import raw_header
from invsess.transaction.base import TxInput
from invsess.transaction.client import ClientInviteState, ClientNonInviteState
from invsess.transaction.server import ServerInviteState, ServerNonInviteState

if TYPE_CHECKING:
    from invsess.transaction.base import Transaction

E = TypeVar("E", bound=enum.Enum)
G = TypeVar("G", bound="Group")

Kind = Literal["counter", "gauge"]


@attrs.frozen
class Family:
    """One Prometheus metric family: a name (counters without ``_total``), a type, a help text,
    label names and ``(label values, value)`` samples. Plain data: the exposition module turns it
    into ``prometheus_client`` families."""

    name: str
    kind: Kind
    documentation: str
    labels: tuple[str, ...] = ()
    samples: tuple[tuple[tuple[str, ...], float], ...] = ()


class Group(Protocol):
    """What a statistics group offers: Kamailio-shaped values and Prometheus families.

    ``source`` is what the figures describe: when several endpoints are summed, groups with the
    same source count once (two endpoints sharing one pool factory share its memory figures).
    """

    @property
    def name(self) -> str:
        """The group, as Kamailio names its statistics groups (``shmem``, ``core``, ``tm``)."""
        ...

    @property
    def source(self) -> object:
        """What the figures describe (see the class docstring)."""
        ...

    def values(self) -> dict[str, int]:
        """Statistic name (without the group) -> value, as ``stats.get_statistics`` shows them."""
        ...

    def families(self) -> list[Family]:
        """The same figures as Prometheus metric families."""
        ...


class Counters:
    """Every statistics group of one endpoint, by name (the endpoint makes one: ``endpoint.counters``)."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}

    def add(self, group: G) -> G:
        """Register ``group``; a group of the same name and type already there is returned instead
        (two session layers on one endpoint share its session counters)."""
        existing = self._groups.get(group.name)
        if existing is not None:
            if type(existing) is not type(group):
                raise ValueError(f"a statistics group {group.name!r} of another kind is registered")
            return existing  # type: ignore[return-value,unused-ignore]  # same type as group, checked above
        self._groups[group.name] = group
        return group

    def __getitem__(self, name: str) -> Group:
        return self._groups[name]

    def __contains__(self, name: object) -> bool:
        return name in self._groups

    def groups(self) -> list[Group]:
        """The groups, in registration order."""
        return list(self._groups.values())

    def values(self) -> dict[str, dict[str, int]]:
        """``{group: {name: value}}`` for every group."""
        return {name: group.values() for name, group in self._groups.items()}

    def families(self) -> list[Family]:
        """Every group's Prometheus families."""
        return [family for group in self._groups.values() for family in group.families()]


# -- plain counters ----------------------------------------------------------------------------


class CounterGroup:
    """Named monotonic counters: Kamailio ``group:<prefix><key>``; Prometheus ``<metric>_total``
    with the key as the ``label`` label. ``keys`` are shown (as 0) before anything is counted.

    Keys must come from a bounded set (check names, limits): a key taken from what a peer sends
    would let it grow the table without bound.
    """

    def __init__(
        self,
        name: str,
        *,
        prefix: str,
        metric: str,
        label: str,
        documentation: str,
        keys: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.metric = metric
        self.label = label
        self.documentation = documentation
        self.counts: dict[str, int] = dict.fromkeys(keys, 0)

    @property
    def source(self) -> object:
        """The group itself."""
        return self

    def inc(self, key: str, n: int = 1) -> None:
        """Count ``n`` more under ``key``."""
        self.counts[key] = self.counts.get(key, 0) + n

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)

    def values(self) -> dict[str, int]:
        """``{prefix + key: count}``."""
        return {f"{self.prefix}{key}": n for key, n in self.counts.items()}

    def families(self) -> list[Family]:
        """One counter family, one sample per key."""
        samples = tuple(((key,), float(n)) for key, n in self.counts.items())
        return [Family(self.metric, "counter", self.documentation, (self.label,), samples)]


class ProvidedGroup:
    """Values read from a function when asked (``read`` returns ``{name: value}``): how a
    figure kept elsewhere joins the statistics. Prometheus: one gauge family ``metric`` with the
    name as the ``label`` label, unless ``families`` says otherwise."""

    def __init__(
        self,
        name: str,
        read: Callable[[], Mapping[str, int]],
        *,
        metric: str,
        label: str,
        documentation: str,
        kind: Kind = "gauge",
        source: object = None,
    ) -> None:
        self.name = name
        self._read = read
        self.metric = metric
        self.label = label
        self.documentation = documentation
        self.kind: Kind = kind
        self._source = source

    @property
    def source(self) -> object:
        """What ``read`` reads (the group itself when not given)."""
        return self if self._source is None else self._source

    def values(self) -> dict[str, int]:
        """What ``read`` returns now."""
        return dict(self._read())

    def families(self) -> list[Family]:
        """One family, one sample per name."""
        samples = tuple(((key,), float(n)) for key, n in self._read().items())
        return [Family(self.metric, self.kind, self.documentation, (self.label,), samples)]


# -- objects by state --------------------------------------------------------------------------


class StateGauge(Generic[E]):
    """Live objects of one machine by state, kept on each transition (:meth:`added`,
    :meth:`moved`, :meth:`removed`: one or two dict updates each), plus how many were made and
    how many went. Kamailio: ``group:<pattern % state>``, ``group:<created>``,
    ``group:<destroyed>``; Prometheus: gauge ``<metric>{state}``, counters
    ``<metric>_created_total`` and ``<metric>_<gone>_total`` (``gone``: "destroyed", "released").
    """

    def __init__(
        self,
        name: str,
        states: type[E],
        *,
        pattern: str,
        created: str,
        destroyed: str,
        metric: str,
        documentation: str,
        gone: str = "destroyed",
    ) -> None:
        self.name = name
        self.states = states
        self.pattern = pattern
        self.created_name = created
        self.destroyed_name = destroyed
        self.metric = metric
        self.gone = gone
        self.documentation = documentation
        self.counts: dict[E, int] = dict.fromkeys(states, 0)
        self.created = 0
        self.destroyed = 0

    @property
    def source(self) -> object:
        """The gauge itself."""
        return self

    def added(self, state: E) -> None:
        """An object was made, in ``state``."""
        self.counts[state] += 1
        self.created += 1

    def moved(self, old: E, new: E) -> None:
        """An object went from ``old`` to ``new``."""
        counts = self.counts
        counts[old] -= 1
        counts[new] += 1

    def removed(self, state: E) -> None:
        """An object in ``state`` went (its memory was released)."""
        self.counts[state] -= 1
        self.destroyed += 1

    @property
    def live(self) -> int:
        """Objects made and not gone, whatever their state."""
        return self.created - self.destroyed

    def values(self) -> dict[str, int]:
        """One value per state, then the totals."""
        out = {self.pattern % state.name.lower(): n for state, n in self.counts.items()}
        out[self.created_name] = self.created
        out[self.destroyed_name] = self.destroyed
        return out

    def families(self) -> list[Family]:
        """The gauge by state and the two totals."""
        by_state = tuple(((state.name.lower(),), float(n)) for state, n in self.counts.items())
        return [
            Family(self.metric, "gauge", self.documentation, ("state",), by_state),
            Family(
                f"{self.metric}_created", "counter", f"{self.documentation}: made", (), (((), self.created),)
            ),
            Family(
                f"{self.metric}_{self.gone}",
                "counter",
                f"{self.documentation}: {self.gone}",
                (),
                (((), self.destroyed),),
            ),
        ]


class DialogGauge(StateGauge[E]):
    """Dialogs by state, with Kamailio's dialog-module names where their meaning is the same:
    ``dialog:active_dialogs`` (not yet terminated, early or confirmed), ``dialog:early_dialogs``,
    ``dialog:processed_dialogs`` (made so far); and ``dialog:terminated_dialogs``: ended but
    their memory still held (by references or transactions still working for them)."""

    def values(self) -> dict[str, int]:
        """The state counts, ``active_dialogs``, and the totals."""
        out = super().values()
        terminated = sum(n for state, n in self.counts.items() if state.name == "TERMINATED")
        out["active_dialogs"] = self.live - terminated
        return out


# -- transactions ------------------------------------------------------------------------------

#: Inputs that mean a retransmission, by what they resend or absorb.
_RETRANSMITTING: dict[TxInput, str] = {
    TxInput.TIMER_A: "requests_sent",  # our INVITE again (UDP)
    TxInput.TIMER_E: "requests_sent",  # our non-INVITE request again (UDP)
    TxInput.TIMER_G: "replies_sent",  # our final response to an INVITE again, until the ACK
    TxInput.REQUEST: "requests_received",  # the peer's request again (absorbed, our last answer resent)
}
_RESPONSES = frozenset({TxInput.RECV_1XX, TxInput.RECV_2XX, TxInput.RECV_FAILURE})
#: States in which a response that arrives is a retransmission of the final one.
_FINAL_STATE_NAMES = frozenset({"COMPLETED", "ACCEPTED"})
#: The four machines of RFC 3261 §17, shown (as zeros) before any transaction is made.
_MACHINES: tuple[tuple[type[enum.Enum], str], ...] = (
    (ClientInviteState, "uac_invite"),
    (ClientNonInviteState, "uac_non_invite"),
    (ServerInviteState, "uas_invite"),
    (ServerNonInviteState, "uas_non_invite"),
)


class TransactionCounters:
    """Transactions by machine and state (Kamailio ``tm:uac_invite_calling`` ...; Prometheus
    ``invsess_transactions{machine,state}``), made and freed (``tm:created``, ``tm:freed``,
    ``tm:current``: the names of Kamailio's ``tm.stats``), and the retransmissions their tables
    take (into ``retransmissions``). Every transaction the endpoint makes calls :meth:`created`
    once and :meth:`transition` on each step of its table."""

    name = "tm"

    def __init__(self, retransmissions: CounterGroup) -> None:
        self.retransmissions = retransmissions
        self._states: dict[enum.Enum, int] = {}
        self._machines: dict[type[enum.Enum], str] = {}
        self._final_states: dict[enum.Enum, bool] = {}
        self.created_total = 0
        self.freed = 0
        for cls, machine in _MACHINES:
            self._register(cls, machine, cls["TERMINATED"])

    @property
    def source(self) -> object:
        """The counters themselves."""
        return self

    def created(self, tx: Transaction[Any]) -> None:
        """A transaction was made (in its first state)."""
        state = tx.state
        cls = type(state)
        if cls not in self._machines:  # a machine of someone else's: named by its role and method
            role = "uac" if tx.role.value == "client" else "uas"
            self._register(cls, f"{role}_{tx.key.method.lower()}_{cls.__name__.lower()}", tx.END)
        self._states[state] += 1
        self.created_total += 1

    def _register(self, cls: type[enum.Enum], machine: str, end: enum.Enum) -> None:
        self._machines[cls] = machine
        for state in cls:
            if state is not end:
                self._states.setdefault(state, 0)
            self._final_states[state] = state.name in _FINAL_STATE_NAMES

    def transition(self, tx: Transaction[Any], old: enum.Enum, event: TxInput, new: enum.Enum) -> None:
        """``tx`` took ``event`` from ``old`` to ``new`` (the same state, often)."""
        if new is not old:
            states = self._states
            states[old] -= 1
            if new is tx.END:
                self.freed += 1
            else:
                states[new] += 1
        kind = _RETRANSMITTING.get(event)
        if kind is not None:
            self.retransmissions.inc(kind)
        elif event in _RESPONSES and self._final_states[old]:
            self.retransmissions.inc("replies_received")

    def values(self) -> dict[str, int]:
        """``current``, ``created``, ``freed`` and one value per machine and state."""
        out = {"current": self.created_total - self.freed, "created": self.created_total, "freed": self.freed}
        for state, n in self._states.items():
            out[f"{self._machines[type(state)]}_{state.name.lower()}"] = n
        return out

    def families(self) -> list[Family]:
        """Live transactions by machine and state; made and freed."""
        samples = tuple(
            ((self._machines[type(state)], state.name.lower()), float(n)) for state, n in self._states.items()
        )
        return [
            Family("invsess_transactions", "gauge", "Live transactions", ("machine", "state"), samples),
            Family(
                "invsess_transactions_created",
                "counter",
                "Transactions made",
                (),
                (((), self.created_total),),
            ),
            Family("invsess_transactions_freed", "counter", "Transactions ended", (), (((), self.freed),)),
        ]


def retransmission_counters() -> CounterGroup:
    """The ``retrans`` group: what was sent again, and what the peer sent again."""
    return CounterGroup(
        "retrans",
        prefix="",
        metric="invsess_retransmissions",
        label="kind",
        documentation="Retransmissions, sent (ours) and received (the peer's)",
        keys=(
            "requests_sent",  # Timers A and E
            "replies_sent",  # Timer G
            "2xx_sent",  # a session's 2xx until its ACK
            "reliable_1xx_sent",  # a reliable provisional until its PRACK
            "acks_sent",  # our ACK again, for a 2xx that came again
            "requests_received",  # absorbed by a server transaction
            "replies_received",  # a final response that came again
        ),
    )


# -- messages ----------------------------------------------------------------------------------

#: Kamailio's ``core:rcv_requests_<method>`` names, always shown.
_KAMAILIO_REQUESTS = (
    "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS", "PRACK", "PUBLISH",
    "REFER", "REGISTER", "SUBSCRIBE", "UPDATE",
)  # fmt: skip
#: Kamailio's ``core:rcv_replies_<class>xx_<method>`` methods ("reg" is its name for REGISTER).
_KAMAILIO_REPLY_METHODS = {
    "BYE": "bye", "CANCEL": "cancel", "INVITE": "invite", "MESSAGE": "message", "PRACK": "prack",
    "REFER": "refer", "REGISTER": "reg", "UPDATE": "update",
}  # fmt: skip
#: Kamailio's exact-code ``core:rcv_replies_<code>`` names, always shown.
_KAMAILIO_CODES = (401, 404, 407, 480, 486)
#: Sent methods beyond this many distinct ones are counted as OTHER (an application may invent
#: methods; the table must stay small).
_MAX_SENT_METHODS = 64


class MessageCounters:
    """SIP messages received and sent, by method and status code (the Kamailio ``core`` group).

    Received requests are counted by method (methods outside ``known`` as OTHER: what a peer
    sends must not grow the table), received responses by (code, CSeq method), sent requests
    by method and sent responses by code — read from the first bytes of what goes out.
    The endpoint's other counters (``stray``) are read for Kamailio's ``drop_*``,
    ``bad_msg_hdr`` and ``unsupported_methods``.
    """

    name = "core"

    def __init__(self, known: Iterable[str], stray: Mapping[str, int]) -> None:
        self._known = frozenset(known)
        self._stray = stray
        self.rcv_requests: dict[str, int] = {}
        self.rcv_replies: dict[tuple[int, str], int] = {}
        self.snd_requests: dict[bytes, int] = {}
        self.snd_replies: dict[bytes, int] = {}

    @property
    def source(self) -> object:
        """The counters themselves."""
        return self

    def received_request(self, method: str) -> None:
        """A request was received (whatever became of it)."""
        if method not in self._known:
            method = "OTHER"
        self.rcv_requests[method] = self.rcv_requests.get(method, 0) + 1

    def received_response(self, code: int, method: str) -> None:
        """A response was received (``method`` from its CSeq)."""
        if method not in self._known:
            method = "OTHER"
        key = (code, method)
        self.rcv_replies[key] = self.rcv_replies.get(key, 0) + 1

    def sent(self, data: bytes) -> None:
        """A message goes out (counted from its start line, without parsing it)."""
        if data.startswith(b"SIP/2.0 "):
            code = data[8:11]
            self.snd_replies[code] = self.snd_replies.get(code, 0) + 1
            return
        method = data[: data.find(b" ", 0, 32)]
        table = self.snd_requests
        if method not in table and len(table) >= _MAX_SENT_METHODS:
            method = b"OTHER"
        table[method] = table.get(method, 0) + 1

    def values(self) -> dict[str, int]:
        """Kamailio's ``core`` names (``rcv_requests``, ``rcv_requests_invite``,
        ``rcv_replies_2xx``, ``rcv_replies_2xx_invite``, ``rcv_replies_18x``, ``rcv_replies_486``,
        ``bad_msg_hdr``, ``unsupported_methods``, ``drop_requests``, ``drop_replies``), then
        invsess's: every exact code received, and the ``snd_*`` figures."""
        out: dict[str, int] = {"rcv_requests": sum(self.rcv_requests.values())}
        for method in sorted({*_KAMAILIO_REQUESTS, *self.rcv_requests}):
            out[f"rcv_requests_{method.lower()}"] = self.rcv_requests.get(method, 0)
        out["rcv_replies"] = sum(self.rcv_replies.values())
        classes = dict.fromkeys(range(1, 7), 0)
        by_method = {(c, m): 0 for c in range(1, 7) for m in _KAMAILIO_REPLY_METHODS.values()}
        codes = dict.fromkeys(_KAMAILIO_CODES, 0)
        for (code, method), n in self.rcv_replies.items():
            cls = min(max(code // 100, 1), 6)
            classes[cls] += n
            codes[code] = codes.get(code, 0) + n
            short = _KAMAILIO_REPLY_METHODS.get(method)
            if short is not None:
                by_method[(cls, short)] += n
        out["rcv_replies_18x"] = sum(n for (code, _), n in self.rcv_replies.items() if 180 <= code < 190)
        for cls, n in classes.items():
            out[f"rcv_replies_{cls}xx"] = n
        for (cls, short), n in by_method.items():
            out[f"rcv_replies_{cls}xx_{short}"] = n
        for code in sorted(codes):
            out[f"rcv_replies_{code}"] = codes[code]
        stray = self._stray
        out["bad_msg_hdr"] = stray.get("parse errors", 0)
        out["unsupported_methods"] = stray.get("stateless 501", 0)
        out["drop_requests"] = stray.get("stray ACKs", 0)
        out["drop_replies"] = stray.get("stray responses", 0)
        out["snd_requests"] = sum(self.snd_requests.values())
        for raw_method, n in sorted(self.snd_requests.items()):
            out[f"snd_requests_{raw_method.decode('ascii', 'replace').lower()}"] = n
        out["snd_replies"] = sum(self.snd_replies.values())
        for raw_code, n in sorted(self.snd_replies.items()):
            out[f"snd_replies_{raw_code.decode('ascii', 'replace')}"] = n
        return out

    def families(self) -> list[Family]:
        """Requests and responses, received and sent."""
        return [
            Family(
                "invsess_sip_requests_received",
                "counter",
                "SIP requests received, by method",
                ("method",),
                tuple(((m,), float(n)) for m, n in sorted(self.rcv_requests.items())),
            ),
            Family(
                "invsess_sip_responses_received",
                "counter",
                "SIP responses received, by status code and CSeq method",
                ("code", "method"),
                tuple(((str(c), m), float(n)) for (c, m), n in sorted(self.rcv_replies.items())),
            ),
            Family(
                "invsess_sip_requests_sent",
                "counter",
                "SIP requests sent (retransmissions included), by method",
                ("method",),
                tuple(
                    ((m.decode("ascii", "replace"),), float(n)) for m, n in sorted(self.snd_requests.items())
                ),
            ),
            Family(
                "invsess_sip_responses_sent",
                "counter",
                "SIP responses sent (retransmissions included), by status code",
                ("code",),
                tuple(
                    ((c.decode("ascii", "replace"),), float(n)) for c, n in sorted(self.snd_replies.items())
                ),
            ),
        ]


# -- memory ------------------------------------------------------------------------------------


def pool_kind(name: str) -> str:
    """A pool's kind from its name: ``dlg-<Call-ID>-<tag>`` -> ``dlg``, ``tsx-c-<branch>`` ->
    ``tsx-c``, ``rx-msg`` -> ``rx-msg``, ``sdp-<Call-ID>`` -> ``sdp`` (names made by invsess
    keep the identifiers after the kind; an application's own names are kept whole up to the
    first digit-led part)."""
    parts = name.split("-")
    kept: list[str] = []
    for part in parts:
        if not part or not part.isalpha() or len(kept) == 2:
            break
        kept.append(part)
    return "-".join(kept) or name[:16]


class MemoryGroup:
    """The pool factory's figures: Kamailio's ``shmem`` group (``used_size`` ...), read from the
    totals the factory keeps; for Prometheus also the breakdown by pool kind and by object type,
    computed when scraped (a walk over the live pools and blocks: the cost of a scrape, never of
    traffic)."""

    name = "shmem"

    def __init__(self, factory: PoolFactory) -> None:
        self.factory = factory

    @property
    def source(self) -> object:
        """The factory (endpoints sharing one count it once)."""
        return self.factory

    def values(self) -> dict[str, int]:
        """Kamailio's six ``shmem`` statistics."""
        return self.factory.statistics().as_dict()

    def families(self) -> list[Family]:
        """Memory totals, by pool kind, and live objects by type."""
        s = self.factory.statistics()

        def gauge(name: str, doc: str, value: int) -> Family:
            return Family(name, "gauge", doc, (), (((), float(value)),))

        kinds: dict[str, list[int]] = {}
        types: dict[str, list[int]] = {}
        for pool in self.factory.pools:
            acc = kinds.setdefault(pool_kind(pool.name), [0, 0, 0])
            acc[0] += 1
            acc[1] += pool.used
            acc[2] += pool.reserved
            for block in pool.blocks():
                t = types.setdefault(type(block).__name__, [0, 0])
                t[0] += 1
                t[1] += raw_header(block)[2]
        return [
            gauge("invsess_memory_total_bytes", "Pool factory limit (shmem:total_size)", s.total_size),
            gauge("invsess_memory_used_bytes", "Bytes in live blocks (shmem:used_size)", s.used_size),
            gauge(
                "invsess_memory_real_used_bytes",
                "Bytes of chunks reserved by live pools (shmem:real_used_size)",
                s.real_used_size,
            ),
            gauge(
                "invsess_memory_max_used_bytes",
                "High-water mark of real_used (shmem:max_used_size)",
                s.max_used_size,
            ),
            gauge("invsess_memory_free_bytes", "total - real_used (shmem:free_size)", s.free_size),
            gauge("invsess_memory_fragments", "Chunks held by live pools (shmem:fragments)", s.fragments),
            Family(
                "invsess_memory_pools",
                "gauge",
                "Live pools, by kind",
                ("kind",),
                tuple(((k,), float(v[0])) for k, v in sorted(kinds.items())),
            ),
            Family(
                "invsess_memory_pool_used_bytes",
                "gauge",
                "Bytes in live blocks, by pool kind",
                ("kind",),
                tuple(((k,), float(v[1])) for k, v in sorted(kinds.items())),
            ),
            Family(
                "invsess_memory_pool_reserved_bytes",
                "gauge",
                "Bytes reserved by live pools, by pool kind",
                ("kind",),
                tuple(((k,), float(v[2])) for k, v in sorted(kinds.items())),
            ),
            Family(
                "invsess_live_objects",
                "gauge",
                "Live blocks, by type",
                ("type",),
                tuple(((k,), float(v[0])) for k, v in sorted(types.items())),
            ),
            Family(
                "invsess_live_object_bytes",
                "gauge",
                "Bytes in live blocks, by type",
                ("type",),
                tuple(((k,), float(v[1])) for k, v in sorted(types.items())),
            ),
        ]


__all__ = [
    "CounterGroup",
    "Counters",
    "DialogGauge",
    "Family",
    "Group",
    "MemoryGroup",
    "MessageCounters",
    "ProvidedGroup",
    "StateGauge",
    "TransactionCounters",
    "pool_kind",
    "retransmission_counters",
]
