"""The requests in flight in this worker, where the master can read them after it died.

The master maps a small shared memory area for each worker before forking it
(:mod:`memwarden.hold.inflight`); the worker :func:`install` s it after fork.
A request writes one fixed-size record there when it starts (one
``struct.pack_into``: no syscall, no allocation but the encoded strings) and
clears the record's first byte when it ends. A worker killed mid-request
(SIGKILL, the OOM killer, a gunicorn timeout) leaves its record behind, and
the master names that request in its ``death_in_flight`` line.

Several records per worker, since a threaded or async worker serves several
requests at once; each request takes a free record and gives it back.
Nothing is written when no area was installed (outside gunicorn, in the
master, in a process the worker forked).

A record holds the raw path (the route template is not known yet when the
request starts): the master makes it a safe route (ids as ``<var>``) before
it logs it, so the path reaches no log line as it came. On a gunicorn
timeout, :func:`abort` (from the ``worker_abort`` hook, in the worker)
replaces it with the route template when the framework knows it by then, and
keeps the records: the SystemExit gunicorn raises next unwinds the request,
which must not clear its own record on the way out.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

from memwarden.see import context as _context
from memwarden.see import meter as _meter

__all__ = ["RECORDS", "SIZE", "InflightRecord", "SlotWriter", "abort", "begin", "busy", "end",
           "install", "read", "uninstall"]

EMPTY, BUSY = 0, 1
PATH, TEMPLATE = 1, 2  # what the route field holds
# state, route kind, started (perf_counter: CLOCK_MONOTONIC, which the master
# shares), RSS at start (-1: unknown), request id, method, route or path.
_RECORD = struct.Struct("<BB6xdq128s16s224s")
RECORDS = 32
SIZE = _RECORD.size * RECORDS


@dataclass(frozen=True, slots=True)
class InflightRecord:
    """One request in flight, as read back from a worker's area."""

    request_id: str
    method: str
    route: str
    route_is_template: bool
    started: float
    rss_start_bytes: int | None


class SlotWriter:
    """The worker's side: takes a free record per request, gives it back at the end."""

    __slots__ = ("_free", "_mm", "_pack")

    def __init__(self, area: mmap.mmap) -> None:
        self._mm = area
        self._pack = _RECORD.pack_into
        # Offsets, not indexes: the hot path multiplies nothing. list.pop and
        # list.append are atomic, so threads need no lock.
        self._free = [i * _RECORD.size for i in reversed(range(RECORDS))]

    def begin(self, request_id: str, method: str, path: str, started: float) -> int:
        """Record a request that starts; returns its record's offset (-1: none free)."""
        free = self._free
        if not free:
            return -1
        offset = free.pop()
        rss = _meter._worker.rss
        self._pack(self._mm, offset, BUSY, PATH, started, -1 if rss is None else rss,
                   request_id.encode(), method.encode(), path.encode("utf-8", "replace"))
        return offset

    def end(self, offset: int) -> None:
        self._mm[offset] = EMPTY
        self._free.append(offset)

    def set_route(self, offset: int, route: str) -> None:
        # The kind byte, then the route field: past state, kind, pad, d, q, id, method.
        self._mm[offset + 1] = TEMPLATE
        start = offset + _RECORD.size - 224
        encoded = route.encode("utf-8", "replace")[:224]
        self._mm[start:start + 224] = encoded.ljust(224, b"\0")


# The worker's writer; None when there is nowhere to write (the trackers test
# it before calling, so a request pays one global lookup when it is off).
writer: SlotWriter | None = None


def install(area: mmap.mmap) -> None:
    """In a worker, after fork: write this worker's requests into ``area``."""
    global writer
    writer = SlotWriter(area)


def uninstall() -> None:
    global writer
    writer = None


os.register_at_fork(after_in_child=uninstall)  # a process the worker forks is no worker


def begin(request_id: str, method: str, path: str, started: float) -> int:
    w = writer
    return -1 if w is None else w.begin(request_id, method, path, started)


def end(offset: int) -> None:
    """The request of the record at ``offset`` ended (nothing after :func:`abort`)."""
    w = writer
    if w is not None:
        w.end(offset)


def abort() -> None:
    """A gunicorn timeout is ending this worker: name the request being served by
    its route template when the framework has one, and keep every record."""
    global writer
    w, writer = writer, None
    if w is None:
        return
    current = _context._request.get()
    offset = getattr(current, "slot", -1)
    route_now = getattr(current, "route_now", None)
    if isinstance(offset, int) and offset >= 0 and callable(route_now):
        route = route_now()
        if isinstance(route, str):
            w.set_route(offset, route)


def read(area: mmap.mmap) -> list[InflightRecord]:
    """The records in flight in ``area`` (the master's side), oldest first."""
    records = []
    for i in range(RECORDS):
        state, kind, started, rss, rid, method, route = _RECORD.unpack_from(
            area, i * _RECORD.size)
        if state != BUSY:
            continue
        records.append(InflightRecord(
            request_id=_text(rid), method=_text(method), route=_text(route),
            route_is_template=kind == TEMPLATE, started=started,
            rss_start_bytes=rss if rss >= 0 else None))
    records.sort(key=lambda r: r.started)
    return records


def busy(area: mmap.mmap) -> bool:
    """Whether any record in ``area`` is in flight: one byte per record."""
    size = _RECORD.size
    return any(area[i * size] == BUSY for i in range(RECORDS))


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")
