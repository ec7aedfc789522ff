"""Stationary AR(1) noise: the null the trend rule's false alarms are measured on.

Memory series are autocorrelated (each point carries the allocations
before it), so the trend tests are calibrated, and their false alarms and
power measured, on AR(1) noise rather than independent points: by the
tests and by bench-detect (``benchmarks/trend_power.py``), from this one
generator.
"""

from __future__ import annotations

import math
import random

__all__ = ["ar1"]


def ar1(rng: random.Random, n: int, phi: float, sd: float) -> list[float]:
    """Stationary AR(1) noise of marginal deviation ``sd``."""
    innovation = sd * math.sqrt(1.0 - phi * phi)
    e = rng.gauss(0.0, sd)
    out = []
    for _ in range(n):
        out.append(e)
        e = phi * e + rng.gauss(0.0, innovation)
    return out
