"""What a soak counted, and the progress line it shows while it runs."""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["Progress", "SoakSummary", "retry_after"]


@dataclass(slots=True)
class SoakSummary:
    """Counts of a finished soak. ``failed``: status >= 500 after retries, or no
    response at all; ``shed``: requests answered 503 with Retry-After at least
    once; ``retried``: requests sent more than once."""

    requests: int = 0
    failed: int = 0
    shed: int = 0
    retried: int = 0
    retries: int = 0
    connection_errors: int = 0
    users: int = 0
    new_user_visits: int = 0
    bursts: int = 0
    seconds: float = 0.0
    stopped_by: str = "requests"  # or "seconds", or "stop" (the caller's stop event)
    statuses: dict[str, int] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "shed": self.shed,
                "retried": self.retried, "retries": self.retries,
                "connection_errors": self.connection_errors, "users": self.users,
                "new_user_visits": self.new_user_visits, "bursts": self.bursts,
                "seconds": round(self.seconds, 3), "stopped_by": self.stopped_by,
                "statuses": dict(sorted(self.statuses.items()))}


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class Progress:
    """One updating line on a terminal, plain periodic lines otherwise."""

    def __init__(self, stream: TextIO | None, total: int, seconds: float) -> None:
        self._stream = stream
        self.total = total
        self._seconds = seconds
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._every = 0.2 if self._tty else 5.0
        self._last = -math.inf
        self._width = 0

    def update(self, summary: SoakSummary, active: int, elapsed: float,
               final: bool = False) -> None:
        if self._stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < self._every:
            return
        self._last = now
        text = (f"soak: {summary.requests}/{self.total} requests, "
                f"{elapsed:.1f}/{self._seconds:g} s, {active} active users, "
                f"{summary.users} users, {summary.failed} failed, {summary.shed} shed, "
                f"{summary.retried} retried")
        if final:
            text += f" (done: stopped by {summary.stopped_by})"
        try:
            if self._tty:
                pad = max(self._width - len(text), 0)
                self._width = len(text)
                self._stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            else:
                self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None  # a closed terminal must not stop the soak
