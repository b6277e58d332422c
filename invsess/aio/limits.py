"""The transports' limits as values: how the UDP reader drains and sheds, and what the TCP/TLS
transports allow (docs/hardening.md gives every default and why)."""

from __future__ import annotations

import attrs

try:  # POSIX only; elsewhere the configured maximum stands alone
    import resource
except ImportError:  # pragma: no cover - not on the platforms this runs on
    resource = None  # type: ignore[assignment]


@attrs.frozen
class UdpLimits:
    """How the UDP reader drains and sheds (docs/hardening.md)."""

    #: Datagrams read per wake-up of the reader at most.
    batch: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    #: Seconds of work on queued new requests per turn of the event loop (after everything
    #: that keeps calls going); the rest waits for the next turn.
    budget: float = attrs.field(default=0.05, validator=attrs.validators.gt(0))
    #: A new request that waited longer than this in our queue is shed (503): its sender has
    #: retransmitted it by then (T1 is 0.5 s), and the backlog must not grow old.
    max_delay: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: New requests queued at most; beyond, the oldest are shed.
    max_queue: int = attrs.field(default=4096, validator=attrs.validators.gt(0))
    #: SO_RCVBUF asked for (the kernel caps it at net.core.rmem_max); None keeps the default.
    receive_buffer: int | None = 4 * 1024 * 1024


@attrs.frozen
class StreamLimits:
    """Limits of the TCP/TLS transports, Kamailio's ``tcp_*`` parameters in spirit (defaults in
    docs/hardening.md)."""

    max_connections: int = attrs.field(default=1024, validator=attrs.validators.gt(0))
    max_connections_per_ip: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    read_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    idle_timeout: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    handshake_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    max_handshakes: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    max_buffered: int = attrs.field(default=16 * 1024 * 1024, validator=attrs.validators.gt(0))
    max_write_buffer: int = attrs.field(default=1024 * 1024, validator=attrs.validators.gt(0))
    accept_retry: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: File descriptors kept free: max_connections is lowered to RLIMIT_NOFILE minus this.
    fd_reserve: int = attrs.field(default=32, validator=attrs.validators.gt(0))
    backlog: int = attrs.field(default=512, validator=attrs.validators.gt(0))

    def effective_max_connections(self) -> int:
        """``max_connections``, lowered to what the file descriptor limit allows now."""
        if resource is None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - self.fd_reserve))

    def effective_per_ip(self, total: int) -> int:
        """``max_connections_per_ip``, and never more than three quarters of ``total``: one
        address cannot take every connection."""
        return max(1, min(self.max_connections_per_ip, total - total // 4))


__all__ = ["StreamLimits", "UdpLimits"]
