"""Memory sizes in settings: ``512MiB``, ``1.5GB``, ``80%``, or off.

Units are explicit because single letters are ambiguous for memory: docker
and the JVM read ``512m`` as MiB, Kubernetes reads ``512M`` as 10^6 bytes.
So ``KiB MiB GiB TiB`` (and Kubernetes' ``Ki Mi Gi Ti``) are binary, ``kB
MB GB TB`` decimal, ``B`` or no unit is bytes, and ``K``/``M``/``G``/``T``
alone are refused with a message saying what to write instead.

A percentage is a fraction of a reference resolved later, at run time: for
the per-worker limits it is the worker's share of the cgroup's memory limit
(limit / workers), for the cgroup thresholds the limit itself. With no
limit to refer to, a percentage resolves to nothing (off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Size", "format_bytes", "parse_ratio", "parse_size"]

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_AMBIGUOUS = {"k": "KiB", "m": "MiB", "g": "GiB", "t": "TiB"}
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)")
_OFF = ("", "0", "off", "none")


@dataclass(frozen=True, slots=True)
class Size:
    """A number of bytes, or a fraction of a reference resolved at run time."""

    bytes: int | None = None
    fraction: float | None = None

    def resolve(self, reference: int | None) -> int | None:
        """Bytes; a fraction of ``reference``, or None when there is none."""
        if self.bytes is not None:
            return self.bytes
        if self.fraction is None or reference is None:
            return None
        return int(reference * self.fraction)

    def __str__(self) -> str:
        if self.bytes is not None:
            return format_bytes(self.bytes)
        return f"{(self.fraction or 0.0) * 100:g}%"


def _percent(text: str) -> float:
    try:
        value = float(text[:-1])
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage such as 80%") from None
    if not 0.0 < value <= 100.0:  # also rejects NaN
        raise ValueError("a percentage must be above 0% and at most 100%")
    return value / 100.0


def parse_size(raw: str) -> Size | None:
    """``512MiB`` -> Size(bytes=...), ``80%`` -> Size(fraction=0.8), ``off``/``0``/"" -> None."""
    text = raw.strip()
    if text.lower() in _OFF:
        return None
    if text.endswith("%"):
        return Size(fraction=_percent(text))
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 512MiB, 1.5GB, 80% or off")
    unit = match["unit"].lower()
    if unit in _AMBIGUOUS:
        raise ValueError(f"{match['unit']!r} is ambiguous: write {_AMBIGUOUS[unit]} (binary) "
                         f"or {unit.upper()}B (decimal)")
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {match['unit']!r}: use B, KiB, MiB, GiB, TiB, "
                         "kB, MB, GB, TB or a percentage")
    value = int(float(match["number"]) * _UNITS[unit])
    if value <= 0:
        return None
    return Size(bytes=value)


def parse_ratio(raw: str) -> float | None:
    """``90%`` or ``0.9`` -> 0.9; ``off``/``0``/"" -> None."""
    text = raw.strip()
    if text.lower() in _OFF:
        return None
    if text.endswith("%"):
        return _percent(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a ratio such as 90% or 0.9") from None
    if not 0.0 < value <= 1.0:
        raise ValueError("a ratio must be above 0 and at most 1 (or 100%)")
    return value


def format_bytes(value: int) -> str:
    """A short binary size for messages: ``1.5GiB``, ``800MiB``, ``512B``."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.4g}{unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
