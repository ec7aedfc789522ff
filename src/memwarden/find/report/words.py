"""Words and human units for the view model: exact figures, signed changes, endings."""

from __future__ import annotations

from typing import Literal

from memwarden.find.analysis.model import RecycleMarker
from memwarden.find.analysis.units import format_bytes, format_count, format_signed_bytes

__all__ = ["describe_marker", "exact_bytes", "exact_count", "is_bytes_kind", "life_label",
           "marker_detail", "optional_text", "signed_count"]


def exact_bytes(value: float) -> str:
    """Human and exact: "77.5 MiB (81,234,944 bytes)"; "512 bytes" below 1 KiB."""
    if abs(value) < 1024:
        return f"{value:,.0f} bytes"
    return f"{format_bytes(value)} ({value:,.0f} bytes)"


def exact_count(value: float) -> str:
    """Whole counts with separators, fractions with up to three decimals."""
    if value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def signed_count(value: float) -> str:
    text = exact_count(value)
    return text if text.startswith("-") or value == 0 else "+" + text


def optional_text(value: float | None,
                  render: Literal["bytes", "signed_bytes", "count"] = "bytes",
                  none: str = "-") -> str:
    """A measurement that may be missing: a dash, never a misleading zero."""
    if value is None:
        return none
    if render == "bytes":
        return format_bytes(value)
    if render == "signed_bytes":
        return format_signed_bytes(value)
    return format_count(value)


def is_bytes_kind(kind: str) -> bool:
    return kind.endswith("_bytes")


def life_label(pid: int, life: int) -> str:
    return f"pid {pid}" if life == 1 else f"pid {pid}, life {life}"


def describe_marker(marker: RecycleMarker) -> str:
    """A short phrase: "recycled (soft_limit)", "killed by SIGKILL (OOM)"."""
    if marker.event == "recycle":
        return f"recycled ({marker.reason})" if marker.reason else "recycled"
    signal = f" by {marker.signal}" if marker.signal else ""
    return f"killed{signal}{' (OOM)' if marker.oom_kill else ''}"


def marker_detail(marker: RecycleMarker) -> str:
    """The whole ending in one sentence: when, how big, against which limit."""
    what = describe_marker(marker)
    return mark_sentence(what, marker.seq, marker.footprint_bytes, marker.limit_bytes,
                         marker.timestamp)


def mark_sentence(what: str, seq: int | None, footprint_bytes: float | None,
                  limit_bytes: float | None, timestamp: str | None) -> str:
    """"What after request N, footprint F of a L limit, at T": a plot mark in words."""
    first = what[:1].upper() + what[1:]
    parts = [first if seq is None else f"{first} after request {seq:,}"]
    if footprint_bytes is not None and limit_bytes is not None:
        parts.append(f"footprint {format_bytes(footprint_bytes)} "
                     f"of a {format_bytes(limit_bytes)} limit")
    elif footprint_bytes is not None:
        parts.append(f"footprint {format_bytes(footprint_bytes)}")
    if timestamp:
        parts.append(f"at {timestamp}")
    return ", ".join(parts)
