"""Transport addresses: the one ``Address`` type of the package and how hosts are written.

An address is ``(host, port)`` with the host bare (``"::1"``, never ``"[::1]"``), as sockets
give and take it. Inside SIP text (Via, URIs) and in human-readable output an IPv6 host is
written in brackets; :func:`uri_host` and :func:`format_address` are the only places that do it.
"""

from __future__ import annotations

import functools
import ipaddress

#: ``(host, port)``, the host bare, as the socket layer uses it.
Address = tuple[str, int]


def uri_host(host: str) -> str:
    """A host as SIP text writes it: an IPv6 address in brackets, anything else unchanged."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_address(address: Address) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:5060``)."""
    return f"{uri_host(address[0])}:{address[1]}"


def parse_address(text: str) -> Address:
    """The inverse of :func:`format_address`; raises ValueError on anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not host:port: {text!r}")
    return host.strip("[]"), int(port)


@functools.lru_cache(maxsize=1024)  # asked for each in-dialog request: ipaddress parses slowly
def is_ip(host: str) -> bool:
    """True for an IPv4 address or a bracketed or bare IPv6 address (not a name)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


__all__ = ["Address", "format_address", "is_ip", "parse_address", "uri_host"]
