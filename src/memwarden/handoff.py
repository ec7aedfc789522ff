"""Events the gunicorn master saw, handed to the next worker it forks.

Some exporters can send nothing from the master (the New Relic agent reports
no data from a process forked after its application was activated), so an
event only the master sees (a worker that died with a request in flight)
would never leave. The master :func:`keep` s such events; the next worker it
forks inherits them over fork and :func:`take` s them, and the master forgets
them as soon as that fork is done, so exactly one worker is handed each.

Nothing is republished on the event bus: an exporter that does send from the
master has heard the event there already.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from memwarden.events import Event

__all__ = ["keep", "take"]

_MAX_KEPT = 64  # a master whose workers keep dying forks often: a bound, all the same
_kept: deque[Event] = deque(maxlen=_MAX_KEPT)
_lock = threading.Lock()


def keep(event: Event) -> None:
    """In the master: hand ``event`` to the next worker forked."""
    with _lock:
        _kept.append(event)


def take() -> list[Event]:
    """In a worker: the events handed to it (once; empty in any other process)."""
    with _lock:
        events = list(_kept)
        _kept.clear()
    return events


def _forget() -> None:
    # After a fork in the parent: the child has its copy, the master none.
    _kept.clear()


os.register_at_fork(after_in_parent=_forget)
