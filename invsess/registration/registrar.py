"""A small registrar (RFC 3261 §10.3), sans-IO: bindings of contacts to addresses-of-record.

:class:`Registrar` answers REGISTER requests that reach it (attach it to a session layer, or
feed it ``RequestReceived`` events): it adds, refreshes and removes bindings, answers 423 with
Min-Expires to an interval below ``min_expires``, 500 to a REGISTER older than the binding's
(same Call-ID, lower or equal CSeq: §10.3 step 7), 400 to a ``Contact: *`` that is not alone
or not with ``Expires: 0``, 403 when the authenticated user is not the address-of-record's,
and lists every current binding of the address-of-record, each with its ``expires``, in the
200. Authentication itself is the endpoint's (a :class:`~invsess.auth.DigestAuthenticator`
screens the REGISTER before it gets here).

Bindings expire lazily: an expired one is dropped when its address-of-record is next read, so
the registrar needs no timer. It holds plain values (strings and numbers), never a message, so
nothing it keeps belongs to a pool. Statistics use Kamailio's usrloc names.
"""

from __future__ import annotations

from typing import Any

import attrs

from invsess.endpoint import Endpoint
from invsess.logs import get_logger
from invsess.sip import ContactStar, NameAddress, ParseError, Request, SipUri, make_response
from invsess.transaction import Event, RequestReceived, ServerTransaction

_LOG = get_logger("invsess.registrar")

DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 7200


@attrs.frozen
class Binding:
    """One contact bound to an address-of-record, until ``expires_at``."""

    contact: str  # the Contact as it will be listed (without an expires parameter)
    uri: str
    expires_at: float
    call_id: str
    cseq: int
    instance: str | None = None


class Registrar:
    """Bindings by address-of-record; see the module docstring.

    ``use_domain``: an address-of-record is ``user@host`` (True) or the user alone (False, as
    Kamailio's ``use_domain=0``: one registrar for one domain, however clients name it).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        default_expires: int | None = None,
        use_domain: bool = False,
        max_contacts: int = 10,
    ) -> None:
        if default_expires is None:
            default_expires = max(min_expires, min(DEFAULT_EXPIRES, max_expires))
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        self.endpoint = endpoint
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.use_domain = use_domain
        self.max_contacts = max_contacts
        self._aors: dict[str, dict[str, Binding]] = {}
        self.stats: dict[str, int] = {"accepted_regs": 0, "rejected_regs": 0}

    # -- lookups -----------------------------------------------------------------------------

    def key(self, uri: object) -> str | None:
        """The address-of-record key of a To URI (None for one that is not sip:/sips:)."""
        if not isinstance(uri, SipUri) or not uri.user:
            return None
        user = uri.user.lower()
        return f"{user}@{uri.host_port[0].lower()}" if self.use_domain else user

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor`` (a key as :meth:`key` makes it, or a bare user)."""
        bindings = self._aors.get(aor.lower())
        if bindings is None:
            return []
        for uri in [u for u, b in bindings.items() if b.expires_at <= now]:
            del bindings[uri]
        if not bindings:
            del self._aors[aor.lower()]
            return []
        return list(bindings.values())

    def statistics(self, now: float) -> dict[str, int]:
        """Kamailio's usrloc/registrar counters: users, contacts, and REGISTERs taken/refused."""
        users = [aor for aor in list(self._aors) if self.lookup(aor, now)]
        contacts = sum(len(self._aors[aor]) for aor in users)
        return {
            "registered_users": len(users),
            "location-users": len(users),
            "location-contacts": contacts,
            **self.stats,
        }

    # -- the transaction user interface ------------------------------------------------------

    def on_event(self, event: Event, now: float) -> bool:
        """Answer REGISTER requests (True); leave everything else (False)."""
        if not isinstance(event, RequestReceived) or event.request.method != "REGISTER":
            return False
        self.register(event.transaction, event.request, now)
        return True

    def next_deadline(self) -> float | None:
        """None: bindings expire lazily."""
        return None

    def handle_timers(self, now: float) -> None:
        """Nothing is timed."""

    # -- REGISTER ----------------------------------------------------------------------------

    def register(self, tx: ServerTransaction[Any], request: Request, now: float) -> None:
        """Process one REGISTER (§10.3) and answer it through ``tx``."""
        try:
            code, reason, headers = self._process(request, now)
        except ParseError as exc:
            code, reason, headers = 400, str(exc)[:80], []
        self.stats["accepted_regs" if code == 200 else "rejected_regs"] += 1
        response = make_response(request, code, reason, to_tag=self.endpoint.new_tag(), headers=headers)
        self.endpoint.respond(tx, response, now)

    def _process(self, request: Request, now: float) -> tuple[int, str | None, list[tuple[str, object]]]:
        to = request.to
        aor = self.key(to.uri) if to is not None else None
        if aor is None:
            return 404, "Not Found", []  # §10.3 step 5: not an address-of-record we can keep
        for credentials in request.authorization:
            username = (credentials.param("username") or "").lower()
            if username and username != aor.split("@")[0] and credentials.param("userhash") != "true":
                return 403, "Forbidden", []  # §10.3 step 4: not this user's address-of-record
        contacts = request.contact
        default = request.expires if request.expires is not None else self.default_expires
        call_id, cseq = request.call_id or "", request.cseq.number if request.cseq else 0
        if any(isinstance(c, ContactStar) for c in contacts):
            if len(contacts) != 1 or request.expires != 0:
                return 400, "Contact * needs Expires: 0 and no other Contact", []
            self._aors.pop(aor, None)
            return 200, None, []
        bindings = {b.uri: b for b in self.lookup(aor, now)}
        changes: dict[str, Binding | None] = {}
        for contact in contacts:
            if not isinstance(contact, NameAddress):  # pragma: no cover - ContactStar handled above
                continue
            value = contact.param("expires")
            expires = int(value) if value is not None and value.isdigit() else default
            if 0 < expires < self.min_expires:
                return 423, None, [("Min-Expires", str(self.min_expires))]
            uri = str(contact.uri)
            old = bindings.get(uri)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                return 500, "Out of order REGISTER", [("Retry-After", "1")]
            if expires == 0:
                changes[uri] = None
                continue
            params = tuple((k, v) for k, v in contact.params if k.lower() != "expires")
            instance = contact.param("+sip.instance")
            changes[uri] = Binding(
                contact=str(NameAddress(contact.uri, contact.display_name, params)),
                uri=uri,
                expires_at=now + min(expires, self.max_expires),
                call_id=call_id,
                cseq=cseq,
                instance=instance,
            )
        for uri, binding in changes.items():
            if binding is None:
                bindings.pop(uri, None)
            else:
                bindings[uri] = binding
        if len(bindings) > self.max_contacts:
            return 503, "Too many contacts", [("Retry-After", "60")]
        if bindings:
            self._aors[aor] = bindings
        else:
            self._aors.pop(aor, None)
        _LOG.info("register", aor=aor, contacts=len(bindings))
        listed: list[tuple[str, object]] = [
            ("Contact", f"{b.contact};expires={max(0, round(b.expires_at - now))}") for b in bindings.values()
        ]
        return 200, None, listed


__all__ = ["DEFAULT_EXPIRES", "MAX_EXPIRES", "MIN_EXPIRES", "Binding", "Registrar"]
