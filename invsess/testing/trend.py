"""Is a series rising beyond its noise? A least-squares slope and a one-sided t-test.

The soak bench samples ``used_size`` every K calls; memory that a workload in steady state uses
goes up and down with the calls in flight, memory that leaks goes up with the calls made. The
test fits ``y = a + b*x`` by least squares over the samples taken after the warm-up and calls
the series *rising* when both hold:

* ``b > t * se(b)``: the slope is above zero with the given confidence (one-sided Student t
  test, ``n - 2`` degrees of freedom, ``se(b) = sqrt(SSR / (n - 2) / Sxx)``), and
* ``b > tolerance``: it is above what is allowed anyway (bytes per call).

The first rule ignores noise; the second ignores a slope that is real but too small to matter
(and a perfectly flat fit, where ``se(b)`` is 0, would otherwise call any rise significant).
Samples of a steady workload are correlated in time, which makes ``se(b)`` optimistic: the
tolerance is what keeps a false alarm rare, and the docs state the one the soak uses.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import attrs

#: The fewest samples the test accepts (6 degrees of freedom: the t approximation is good there).
MIN_SAMPLES = 8


def t_quantile(confidence: float, dof: int) -> float:
    """Student's t quantile (one-sided ``confidence``, ``dof`` degrees of freedom), by the
    Cornish-Fisher expansion around the normal quantile: within 0.2 % of the exact value for
    ``dof >= 6`` and confidences up to 0.999 (no SciPy needed)."""
    if not 0.5 < confidence < 1.0:
        raise ValueError("confidence must be between 0.5 and 1")
    if dof < 1:
        raise ValueError("at least one degree of freedom")
    z = statistics.NormalDist().inv_cdf(confidence)
    n = float(dof)
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * n**4)
    )


@attrs.frozen
class Trend:
    """The fit and the verdict; ``slope`` and ``tolerance`` in y units per x unit."""

    slope: float
    intercept: float
    stderr: float
    samples: int
    confidence: float
    t_critical: float
    tolerance: float

    @property
    def threshold(self) -> float:
        """The slope above which the series counts as rising."""
        return max(self.t_critical * self.stderr, self.tolerance)

    @property
    def rising(self) -> bool:
        """True when the slope is beyond both the noise and the tolerance."""
        return self.slope > self.threshold

    def describe(self, unit: str = "bytes per call") -> str:
        """One line: the slope, its standard error, the threshold and the verdict."""
        verdict = "RISING" if self.rising else "flat"
        return (
            f"slope {self.slope:+.3f} {unit} (standard error {self.stderr:.3f}, {self.samples} samples); "
            f"rising means above {self.threshold:.3f} "
            f"(t={self.t_critical:.2f} at {self.confidence:.0%}, tolerance {self.tolerance:g}): {verdict}"
        )


def trend(
    xs: Sequence[float], ys: Sequence[float], *, confidence: float = 0.99, tolerance: float = 0.0
) -> Trend:
    """Fit ``ys`` against ``xs`` and test the slope (see the module docstring)."""
    n = len(xs)
    if n != len(ys):
        raise ValueError("xs and ys differ in length")
    if n < MIN_SAMPLES:
        raise ValueError(f"{n} samples: the slope test needs at least {MIN_SAMPLES}")
    if tolerance < 0:
        raise ValueError("tolerance must not be negative")
    mx = math.fsum(xs) / n
    my = math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("every x is the same: no slope to fit")
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ssr = math.fsum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    stderr = math.sqrt(ssr / (n - 2) / sxx)
    return Trend(slope, intercept, stderr, n, confidence, t_quantile(confidence, n - 2), tolerance)


__all__ = ["MIN_SAMPLES", "Trend", "t_quantile", "trend"]
