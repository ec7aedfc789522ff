"""Human-readable numbers for reasons, evidence lines and the text report."""

from __future__ import annotations

import math
import re

__all__ = ["format_bytes", "format_count", "format_signed_bytes", "more_requests",
           "requests_asked"]

# Every reason that asks for a longer run says so in these words, so the
# figure can be read back (an adaptive audit runs that many more).
_MORE = "run about {n} more requests in this worker"
_MORE_PATTERN = re.compile(r"run about ([0-9,]+) more requests in this worker")

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(value: float) -> str:
    """1536 -> "1.5 KiB"; whole bytes below 1 KiB."""
    if not math.isfinite(value):
        return "?"
    size = abs(value)
    unit = 0
    while size >= 1024.0 and unit < len(_UNITS) - 1:
        size /= 1024.0
        unit += 1
    sign = "-" if value < 0 else ""
    if unit == 0:
        return f"{sign}{size:.0f} B"
    return f"{sign}{size:.1f} {_UNITS[unit]}"


def format_signed_bytes(value: float) -> str:
    """Always signed: "+10.0 KiB", "-4 B"."""
    text = format_bytes(value)
    return text if text.startswith(("-", "?")) else "+" + text


def format_count(value: float) -> str:
    """A count or rate with sensible precision: 160.2, 3, 0.012."""
    if not math.isfinite(value):
        return "?"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def more_requests(n: int) -> str:
    """The phrase that asks for ``n`` more requests of a worker (at least 1)."""
    return _MORE.format(n=f"{max(1, n):,}")


def requests_asked(reason: str) -> int | None:
    """The largest number of more requests a reason asks for, or None."""
    asked = [int(m.group(1).replace(",", "")) for m in _MORE_PATTERN.finditer(reason)]
    return max(asked) if asked else None
