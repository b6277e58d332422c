"""Where a monitoring server listens: ``[HOST:]PORT``, loopback unless a host is given."""

from __future__ import annotations

import ipaddress

import attrs


@attrs.frozen
class BindAddress:
    """Where to listen: an IP address (no names: nothing here resolves DNS) and a port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_host: str = "127.0.0.1") -> BindAddress:
        """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the host is loopback unless given."""
        text = text.strip()
        if text.isdigit():
            host, port = default_host, text
        elif text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"expected [IPv6]:PORT, not {text!r}")
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise ValueError(f"expected PORT or HOST:PORT, not {text!r}")
        if not port.isdigit() or int(port) > 65535:
            raise ValueError(f"invalid port in {text!r}")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address (nothing here resolves names)") from None
        return cls(host, int(port))

    @property
    def loopback(self) -> bool:
        """True for 127.0.0.0/8 and ::1."""
        return ipaddress.ip_address(self.host).is_loopback


__all__ = ["BindAddress"]
