"""The master names the request a worker was serving when it died.

Before each fork the master maps a small shared area for the new worker
(:mod:`memwarden.see.inflight_slot` holds its layout and the worker's
writes). The worker records each request there when it starts and clears the
record when it ends, so a worker that dies mid-request leaves its request
behind. In ``child_exit`` the master reads the area and, when the worker died
by a gunicorn timeout, an OOM kill or another signal with a request in
flight, logs one ``death_in_flight`` line (logger ``memwarden.recycle``) and
publishes :class:`memwarden.events.DeathInFlight`. A worker that died idle,
or exited on its own (a recycle), gets no line.

``footprint_start_bytes`` is the worker's RSS when the request started (as
the meter read it at the end of the worker's previous request);
``footprint_last_bytes`` the master's own reading of the worker's RSS on its
last tick while a request was in flight (twice a second), absent when no
tick fell inside the request.

The area also gives each live worker a small index, the lowest one free when
it forks: a replacement takes its predecessor's index, so "the first N
workers" stays N workers over recycles (the allocation-site sampling uses it).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import signal
import time
from collections.abc import Callable
from typing import Any

from memwarden import events, handoff
from memwarden.footprint import measure
from memwarden.hold import perform as actions
from memwarden.hold.exits import ExitStatus
from memwarden.see import inflight_slot
from memwarden.see.meter import clean_label
from memwarden.see.redact import safe_path

__all__ = ["InflightWatch", "death_cause"]

_log = logging.getLogger("memwarden.recycle")


def death_cause(worker: Any, status: ExitStatus | None, oom: bool) -> tuple[str, str] | None:
    """(cause, signal name) of a death that may have cut a request short, else None.

    gunicorn's timeout sends SIGABRT (the worker's handler then exits with
    status 1) and SIGKILL if the worker is still there at the next timeout;
    it marks the worker ``aborted`` first, which is how the master tells.
    """
    if getattr(worker, "aborted", False) is True:
        name = status.signal_name if status is not None and status.signal is not None else None
        return events.DIED_TIMEOUT, name or "SIGABRT"
    if status is None or status.signal is None:
        return None  # it exited by itself: a recycle, a crash at boot, a normal stop
    name = status.signal_name or f"signal {status.signal}"
    if oom and status.signal == signal.SIGKILL:
        return events.DIED_OOM_KILL, name
    return events.DIED_SIGNAL, name


class InflightWatch:
    """The master's areas, one per worker, by gunicorn's worker ``age``."""

    def __init__(self, proc_root: str = "/proc", sys_root: str = "/sys",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._proc_root = proc_root
        self._sys_root = sys_root
        self._clock = clock  # perf_counter: the clock the workers stamp requests with
        self._areas: dict[int, mmap.mmap] = {}
        self._index: dict[int, int] = {}
        self._last: dict[int, tuple[float, int]] = {}  # pid: (when, RSS) while busy

    # -- master ---------------------------------------------------------------------

    def pre_fork(self, worker: Any) -> None:
        age = getattr(worker, "age", None)
        if not isinstance(age, int):
            return
        self._areas[age] = mmap.mmap(-1, inflight_slot.SIZE, flags=mmap.MAP_SHARED)
        used = set(self._index.values())
        self._index[age] = next(i for i in range(len(used) + 1) if i not in used)

    def index(self, worker: Any) -> int | None:
        """The worker's index among the live ones (0 for the first), None if unknown."""
        return self._index.get(getattr(worker, "age", None))  # type: ignore[arg-type]

    def sample(self, workers: dict[int, Any]) -> None:
        """Each tick: the RSS of every worker serving a request, as its last sample."""
        for pid, worker in workers.items():
            area = self._areas.get(getattr(worker, "age", None))  # type: ignore[arg-type]
            if area is None or area.closed or not inflight_slot.busy(area):
                self._last.pop(pid, None)
                continue
            fp = measure(pid, "rss", False, self._proc_root, self._sys_root)
            if fp is not None:
                self._last[pid] = (self._clock(), fp.total_bytes)
        # gunicorn adds a worker to WORKERS right after forking it and takes it
        # out where it calls child_exit: an area of no listed worker is one
        # whose fork failed or whose child_exit was missed.
        live = {getattr(w, "age", None) for w in workers.values()}
        for age in [a for a in self._areas if a not in live]:
            self._index.pop(age, None)
            self._close(age)

    def died(self, worker: Any, status: ExitStatus | None, oom: bool) -> None:
        """``child_exit``: log and publish the request in flight, if the death cut one."""
        pid = getattr(worker, "pid", None)
        age = getattr(worker, "age", None)
        last = self._last.pop(pid, None) if isinstance(pid, int) else None
        self._index.pop(age, None)  # type: ignore[arg-type]
        area = self._areas.get(age)  # type: ignore[arg-type]
        if area is None or not isinstance(pid, int):
            return
        try:
            cause = death_cause(worker, status, oom)
            records = inflight_slot.read(area) if cause is not None else []
            if cause is None or not records:
                return
            record = records[0]  # the longest running, when several were in flight
            seconds = round(max(0.0, self._clock() - record.started), 3)
            route = (record.route if record.route_is_template
                     else clean_label(safe_path(record.route)))
            fields: dict[str, Any] = {
                "pid": pid, "cause": cause[0], "signal": cause[1],
                "request_id": record.request_id, "method": record.method, "route": route,
                "seconds": seconds, "footprint_start_bytes": record.rss_start_bytes}
            if last is not None and last[0] >= record.started:
                fields["footprint_last_bytes"] = last[1]
            actions.emit(_log, "death_in_flight", fields, logging.ERROR)
            death = events.DeathInFlight(cause[0], route, record.request_id, seconds)
            events.publish(death)
            handoff.keep(death)  # for an exporter that sends from workers only
        finally:
            self._close(age)  # type: ignore[arg-type]

    def close(self) -> None:
        for age in list(self._areas):
            self._close(age)

    def _close(self, age: int) -> None:
        area = self._areas.pop(age, None)
        if area is not None:
            with contextlib.suppress(Exception):
                area.close()

    # -- worker ----------------------------------------------------------------------

    def adopt(self, worker: Any) -> None:
        """In the new worker, after fork: write into its own area; unmap the others'."""
        own = self._areas.pop(getattr(worker, "age", None), None)  # type: ignore[arg-type]
        self.close()
        self._index.clear()
        self._last.clear()
        if own is not None:
            inflight_slot.install(own)
