"""Which lines an analysis reads: ``--since``, ``--until`` (ISO 8601) and ``--worker PID``.

A line is kept when its pid matches (with ``--worker``) and its timestamp
lies in [since, until). A line without a timestamp, or with one that does
not parse, is kept: it cannot be placed, and dropping it would hide it.
Timestamps without a zone are read as UTC, as memwarden writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["LineFilter", "line_filter", "parse_time"]

LineFilter = Callable[[int, "str | None"], bool]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time ("2026-11-28", "2026-11-28T02:26:55.530Z"); ValueError if not one."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def line_filter(since: str | None = None, until: str | None = None,
                worker: int | None = None) -> LineFilter | None:
    """The filter for these options; None when there is nothing to filter."""
    if since is None and until is None and worker is None:
        return None
    low = parse_time(since) if since is not None else None
    high = parse_time(until) if until is not None else None
    cache: dict[str, bool] = {}  # lines of one millisecond share their answer

    def in_window(timestamp: str) -> bool:
        found = cache.get(timestamp)
        if found is not None:
            return found
        try:
            moment = parse_time(timestamp)
        except ValueError:
            keep = True
        else:
            keep = (low is None or moment >= low) and (high is None or moment < high)
        if len(cache) > 4096:
            cache.clear()
        cache[timestamp] = keep
        return keep

    def keep(pid: int, timestamp: str | None) -> bool:
        if worker is not None and pid != worker:
            return False
        if timestamp is None or (low is None and high is None):
            return True
        return in_window(timestamp)

    return keep
