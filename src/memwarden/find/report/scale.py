"""Axes: nice tick values and human labels for bytes, counts and request numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Axis", "AxisKind", "Tick", "axis_for", "byte_unit", "format_tick", "nice_step"]

AxisKind = Literal["bytes", "count", "request"]

# Any finite value gets an axis. Beyond this magnitude the domain is cut, so
# that a span with its margins stays finite; below the smallest step, a span
# is too small for a power of ten to round it (and log10 of an underflow fails).
MAX_MAGNITUDE = 1e300
SMALLEST_STEP = 1e-300

BYTE_UNITS: tuple[tuple[str, float], ...] = (
    ("B", 1.0), ("KiB", 1024.0), ("MiB", 1024.0**2), ("GiB", 1024.0**3), ("TiB", 1024.0**4))
_MULTIPLES = (1.0, 2.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Tick:
    value: float
    text: str


@dataclass(frozen=True, slots=True)
class Axis:
    """A linear axis: its domain (``lo`` to ``hi``, data units) and labelled ticks."""

    title: str
    kind: AxisKind
    lo: float
    hi: float
    ticks: tuple[Tick, ...]

    def fraction(self, value: float) -> float:
        """Where ``value`` sits on the axis: 0 at ``lo``, 1 at ``hi``.

        Halves first, so no difference of two finite values overflows; a
        value far off the axis stays just off it, drawn at a finite place.
        """
        span = self.hi / 2 - self.lo / 2
        if not span > 0 or not math.isfinite(value):
            return 0.5
        return min(2.0, max(-1.0, (value / 2 - self.lo / 2) / span))


def byte_unit(magnitude: float) -> tuple[str, float]:
    """The largest binary unit not above ``magnitude``: (name, size in bytes)."""
    chosen = BYTE_UNITS[0]
    for unit in BYTE_UNITS:
        if abs(magnitude) >= unit[1]:
            chosen = unit
    return chosen


def nice_step(span: float, target: int) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that cuts ``span`` in at most
    ``target + 1`` steps."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / (max(target, 1) + 1)
    if raw <= SMALLEST_STEP:
        return SMALLEST_STEP
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in _MULTIPLES:
        if multiple * power >= raw * (1 - 1e-9):
            return multiple * power
    return 10.0 * power  # unreachable: 10 * power > raw


def _decimals(step: float) -> int:
    for decimals in range(4):
        scaled = step * 10**decimals
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return decimals
    return 4


def _number(value: float, decimals: int) -> str:
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_tick(value: float, kind: AxisKind, step: float, unit: tuple[str, float]) -> str:
    """A short tick label: "80 MiB", "2.5 KiB", "120k", "1.5M", "1,500".

    ``unit`` is the axis's unit, chosen once from its largest value so that
    every tick of an axis reads in the same unit.
    """
    if abs(value) < step * 1e-9:
        value = 0.0
    name, size = unit
    if value == 0.0 and kind != "bytes":
        return "0"
    text = _number(value / size, _decimals(step / size))
    if kind == "bytes":
        return f"{text} {name}"
    return text + name


def _count_unit(magnitude: float) -> tuple[str, float]:
    for suffix, size in (("M", 1e6), ("k", 1e3)):
        if magnitude >= (1e6 if suffix == "M" else 1e4):
            return suffix, size
    return "", 1.0


def axis_for(values: list[float], kind: AxisKind, title: str, target_ticks: int = 5,
             include_zero: bool = False, min_span: float = 0.0) -> Axis:
    """An axis that shows every value, with ``target_ticks`` or so round ticks.

    Bytes get ticks at round numbers of one binary unit (MiB or KiB), counts
    and request numbers whole steps: a thread count never reads 2.5. A span
    below ``min_span`` is widened around its middle, so that noise in a flat
    series is not stretched to fill the plot and read as a trend.
    """
    finite = [min(MAX_MAGNITUDE, max(-MAX_MAGNITUDE, v)) for v in values if math.isfinite(v)]
    lo = min(finite) if finite else 0.0
    hi = max(finite) if finite else 1.0
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if 0 < hi - lo < min_span:
        middle = (lo + hi) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
        if include_zero and min(finite, default=0.0) >= 0 > lo:
            lo, hi = 0.0, min_span
    if hi - lo <= 0:
        pad = max(abs(hi) * 0.01, 1024.0 if kind == "bytes" else 1.0)
        # A flat series sits mid-axis; a flat zero count stays on a zero floor.
        lo, hi = (0.0, hi + pad) if 0 <= lo < pad else (lo - pad, hi + pad)
    if kind == "request":
        step = max(1.0, nice_step(hi - lo, target_ticks))
        lo_t = math.floor(lo / step) * step
        hi_t = math.ceil(hi / step) * step
        ticks = _ticks(lo_t, hi_t, step, kind, ("", 1.0), inside=(lo, hi))
        return Axis(title, kind, lo, hi, ticks)
    magnitude = max(abs(lo), abs(hi))
    unit = byte_unit(magnitude) if kind == "bytes" else _count_unit(magnitude)
    size = unit[1]
    margin = (hi - lo) * 0.04
    step = max(1.0, nice_step((hi - lo + 2 * margin) / size, target_ticks) * size)
    nonnegative = lo >= 0
    lo = math.floor((lo - margin) / step) * step
    hi = math.ceil((hi + margin) / step) * step
    if nonnegative:
        lo = max(lo, 0.0)
    return Axis(title, kind, lo, hi, _ticks(lo, hi, step, kind, unit, inside=(lo, hi)))


def _ticks(first: float, last: float, step: float, kind: AxisKind,
           unit: tuple[str, float], inside: tuple[float, float]) -> tuple[Tick, ...]:
    ticks = []
    count = round((last - first) / step)
    for k in range(count + 1):
        value = first + k * step
        if inside[0] - step * 1e-9 <= value <= inside[1] + step * 1e-9:
            ticks.append(Tick(value, format_tick(value, kind, step, unit)))
    return tuple(ticks)
