"""The send guard: the last check before a datagram or a connection leaves this host.

SIP tells a receiver where to answer (Via, Contact, Record-Route); a hostile or test message
can name any address — RFC 4475 names 192.0.2.x and 255.255.255.255. The guard refuses
broadcast, multicast and unspecified destinations always, and everything outside the allowed
networks when a list is given (tests allow only loopback).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

from invsess.errors import InvsessError

LOOPBACK = ("127.0.0.0/8", "::1/128")
_PASSED_MAX = 4096


class SendRefusedError(InvsessError):
    """The guard refused a destination; nothing was sent."""


@attrs.define
class SendGuard:
    """Refuses destinations outside ``allowed`` (None: any unicast address) and counts refusals."""

    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    refused: list[tuple[str, int]] = attrs.field(factory=list)
    #: Hosts already found allowed: a busy peer is checked once, not per datagram (bounded).
    _passed: set[str] = attrs.field(factory=set, init=False, repr=False)

    @classmethod
    def loopback_only(cls) -> SendGuard:
        """A guard for tests and local tools: 127.0.0.0/8 and ::1 only."""
        return cls.of(LOOPBACK)

    @classmethod
    def of(cls, networks: Iterable[str]) -> SendGuard:
        """A guard allowing the given networks."""
        return cls(tuple(ipaddress.ip_network(n) for n in networks))

    def check(self, destination: tuple[str, int]) -> None:
        """Raise :class:`SendRefusedError` unless ``destination`` may be sent to."""
        if destination[0] in self._passed:
            return
        host = destination[0].strip("[]")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            self.refused.append(destination)
            raise SendRefusedError(f"refusing to send to {host!r}: not an IP address (no DNS here)") from None
        bad = (
            addr.is_multicast
            or addr.is_unspecified
            or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"))
        )
        if bad or (self.allowed is not None and not any(addr in net for net in self.allowed)):
            self.refused.append(destination)
            raise SendRefusedError(f"refusing to send to {destination[0]}:{destination[1]}")
        if len(self._passed) >= _PASSED_MAX:
            self._passed.clear()
        self._passed.add(destination[0])
