"""Thin long series for plotting without losing their shape.

A leak is a trend and a spike is one request: evenly spaced picks keep the
first and lose the second. Each bucket of consecutive points keeps, for
every series, its lowest and its highest point (min-max decimation), and the
first and last points always stay, so the line still spans the whole life
and still reaches every extreme a person would look for.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["minmax_indices"]


def minmax_indices(columns: Sequence[Sequence[float | None]], budget: int) -> list[int]:
    """Indices (ascending) of at most ``budget`` rows that keep each column's shape.

    ``columns`` are parallel series of the same length; None is a gap.
    """
    n = len(columns[0]) if columns else 0
    if n <= budget:
        return list(range(n))
    if budget < 2:
        return [n - 1] if budget == 1 else []
    per_bucket = 2 * max(len(columns), 1)
    buckets = (budget - 2) // per_bucket
    inner = n - 2
    chosen = {0, n - 1}
    for b in range(buckets):
        start = 1 + b * inner // buckets
        stop = 1 + (b + 1) * inner // buckets
        if start >= stop:
            continue
        for column in columns:
            present = [i for i in range(start, stop) if column[i] is not None]
            if present:
                chosen.add(min(present, key=lambda i: column[i] or 0.0))
                chosen.add(max(present, key=lambda i: column[i] or 0.0))
    return sorted(chosen)
