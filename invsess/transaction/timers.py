"""RFC 3261 §17 timer values (Table 4), derived from T1, T2 and T4."""

from __future__ import annotations

import attrs


@attrs.frozen
class TimerConfig:
    """T1 (RTT estimate), T2 (max non-INVITE retransmit interval), T4 (max message lifetime).

    Every other timer derives from these as RFC 3261 Table 4 and RFC 6026 say.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    #: Delay before a server INVITE transaction sends 100 Trying itself (RFC 3261 §17.2.1).
    trying_delay: float = 0.2

    def __attrs_post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("timers need 0 < T1 <= T2")
        if self.t4 <= 0 or self.trying_delay < 0:
            raise ValueError("T4 must be positive and the 100 Trying delay not negative")

    @property
    def b(self) -> float:
        """INVITE client transaction timeout (64*T1)."""
        return 64 * self.t1

    f = h = j = l = m = b  # all 64*T1  # noqa: E741 - RFC 3261 names

    def d(self, reliable: bool) -> float:
        """Wait time for response retransmits: 32 s over UDP (at least 64*T1), 0 reliable."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def i(self, reliable: bool) -> float:
        """Wait time for ACK retransmits: T4 over UDP, 0 reliable."""
        return 0.0 if reliable else self.t4

    k = i
