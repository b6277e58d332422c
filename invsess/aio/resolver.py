"""Where a SIP URI goes: RFC 3263 server location, asynchronously.

:class:`SystemResolver` (the default) resolves a host name to A/AAAA records through the event
loop's resolver (``getaddrinfo`` in a thread: /etc/hosts and the system's DNS), with the
transport and port of the URI or their defaults — what PJSIP does when no DNS server is
configured. :class:`DnsResolver` is RFC 3263 §4 in full through dnspython: NAPTR (the
transports we serve, by order and preference), then SRV (by priority, weighted at random within
a priority, RFC 2782), then A/AAAA; a URI with a port or a ``transport`` parameter skips the
steps it makes moot. Both answer with an ordered list of :class:`Target` s; a name that leads
nowhere raises :class:`ResolutionError` with the reason.

Only the first target is used today (failing over to the next on a 503 or a timeout, RFC 3263
§4.3, is not done).
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Protocol

import attrs
import dns.asyncresolver
import dns.exception
import dns.resolver

from invsess.address import is_ip
from invsess.sip import SipUri

#: The RFC 3263 NAPTR service for each transport (RFC 3263 §4.1).
SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
#: The SRV prefix for each transport (RFC 3263 §4.1: _sips._tcp for TLS).
SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}


class ResolutionError(Exception):
    """A URI whose host leads to no address: the reason says which lookup failed."""


@attrs.frozen
class Target:
    """One place to send to: an IP address, a port and a transport."""

    host: str
    port: int
    transport: str


class Resolver(Protocol):
    """What the user agent asks for an address: targets in the order to try them."""

    async def resolve(self, uri: SipUri, transports: tuple[str, ...]) -> list[Target]:
        """Targets for ``uri``, using only ``transports`` (those we listen on)."""
        ...


def _fixed(uri: SipUri, transports: tuple[str, ...]) -> tuple[str | None, int | None]:
    """The transport and port the URI itself fixes (RFC 3263 §4.1, §4.2)."""
    transport = uri.transport
    if transport is None and uri.secure:
        transport = "tls"
    if transport is not None and transport not in transports:
        raise ResolutionError(f"{uri}: transport {transport} is not one we listen on")
    return transport, uri.port


class SystemResolver:
    """A/AAAA through the loop's resolver; see the module docstring."""

    async def resolve(self, uri: SipUri, transports: tuple[str, ...]) -> list[Target]:
        """The URI's host's addresses, with its transport (else udp, tls for sips) and port."""
        transport, port = _fixed(uri, transports)
        transport = transport or ("udp" if "udp" in transports else transports[0])
        port = port or DEFAULT_PORT[transport]
        host = uri.host_port[0]
        if is_ip(host):
            return [Target(host, port, transport)]
        return [Target(address, port, transport) for address in await lookup_host(host)]


async def lookup_host(host: str) -> list[str]:
    """The addresses of ``host`` from the system's resolver (IPv4 first), without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ResolutionError(f"cannot resolve {host}: {exc.strerror}") from None
    found = sorted({str(info[4][0]) for info in infos}, key=lambda a: (":" in a, a))
    if not found:
        raise ResolutionError(f"cannot resolve {host}: no address")
    return found


class DnsResolver:
    """RFC 3263 through dnspython; see the module docstring.

    ``nameservers``: (address, port) pairs to ask (default: the system's configuration).
    ``seed`` makes the weighted SRV choice reproducible.
    """

    def __init__(
        self,
        nameservers: list[tuple[str, int]] | None = None,
        *,
        timeout: float = 2.0,
        seed: int | None = None,
    ) -> None:
        if nameservers:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [address for address, _ in nameservers]
            self._dns.port = nameservers[0][1]
        else:
            self._dns = dns.asyncresolver.Resolver()
        self._dns.lifetime = timeout
        self._random = random.Random(seed)  # noqa: S311 - RFC 2782 load spreading, not secrecy

    async def resolve(self, uri: SipUri, transports: tuple[str, ...]) -> list[Target]:
        """RFC 3263 §4: NAPTR -> SRV -> A/AAAA, each step only when the URI leaves it open."""
        transport, port = _fixed(uri, transports)
        host = uri.host_port[0]
        if is_ip(host):
            chosen = transport or ("udp" if "udp" in transports else transports[0])
            return [Target(host, port or DEFAULT_PORT[chosen], chosen)]
        if port is not None:  # §4.2: a port means A/AAAA only
            chosen = transport or ("udp" if "udp" in transports else transports[0])
            return [Target(a, port, chosen) for a in await self._addresses(host)]
        if transport is None:
            records = await self._naptr(host, transports)
            if records:
                for service_transport, replacement in records:
                    targets = await self._srv(replacement, service_transport)
                    if targets:
                        return targets
                raise ResolutionError(f"{host}: the NAPTR records lead to no SRV target")
            wanted = transports
        else:
            wanted = (transport,)
        for candidate in wanted:  # §4.1: no NAPTR, try each transport's SRV
            targets = await self._srv(f"{SRV_PREFIX[candidate]}.{host}", candidate)
            if targets:
                return targets
        chosen = transport or ("udp" if "udp" in transports else transports[0])
        return [Target(a, DEFAULT_PORT[chosen], chosen) for a in await self._addresses(host)]

    async def _query(self, name: str, rdtype: str) -> list[object]:
        try:
            answer = await self._dns.resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise ResolutionError(f"DNS lookup of {name} {rdtype} failed: {exc}") from None
        return list(answer)

    async def _naptr(self, host: str, transports: tuple[str, ...]) -> list[tuple[str, str]]:
        """(transport, SRV name) of the NAPTR records we can use, by order then preference."""
        usable = []
        for record in await self._query(host, "NAPTR"):
            service = record.service.decode().upper()  # type: ignore[attr-defined]
            flags = record.flags.decode().lower()  # type: ignore[attr-defined]
            transport = SERVICES.get(service)
            if transport is None or transport not in transports or flags != "s":
                continue
            replacement = record.replacement.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
            usable.append((record.order, record.preference, transport, replacement))  # type: ignore[attr-defined]
        usable.sort(key=lambda r: (r[0], r[1]))
        return [(transport, replacement) for _, _, transport, replacement in usable]

    async def _srv(self, name: str, transport: str) -> list[Target]:
        """The SRV targets of ``name`` in RFC 2782 order, each resolved to its addresses."""
        records = [
            (r.priority, r.weight, r.target.to_text(omit_final_dot=True), r.port)  # type: ignore[attr-defined]
            for r in await self._query(name, "SRV")
        ]
        if len(records) == 1 and records[0][2] in ("", "."):
            return []  # "service decidedly not available" (RFC 2782)
        out: list[Target] = []
        for priority in sorted({r[0] for r in records}):
            group = [r for r in records if r[0] == priority]
            while group:  # RFC 2782: weighted random order within a priority
                total = sum(r[1] for r in group)
                pick = self._random.uniform(0, total) if total else 0
                running, index = 0, 0
                for index, record in enumerate(group):  # noqa: B007 - the index is the pick
                    running += record[1]
                    if running >= pick:
                        break
                _, _, target, port = group.pop(index)
                out += [Target(a, port, transport) for a in await self._addresses(target)]
        return out

    async def _addresses(self, host: str) -> list[str]:
        """A, then AAAA, records of ``host`` (a failed AAAA lookup does not undo found A records)."""
        found = [str(r) for r in await self._query(host, "A")]
        try:
            found += [str(r) for r in await self._query(host, "AAAA")]
        except ResolutionError:
            if not found:
                raise
        if not found:
            raise ResolutionError(f"{host} has no A or AAAA record")
        return found


__all__ = ["DnsResolver", "ResolutionError", "Resolver", "SystemResolver", "Target", "lookup_host"]
