"""What an OTLP worker's callbacks read: /proc, once per collection, and the
request meter's last census.

Memory is read when the exporter collects rather than per request, so that a
request pays nothing for OTLP beyond what the request meter already does; one
reading serves every callback of one collection.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from memwarden.export.prom_metrics import footprint, footprint_kind
from memwarden.settings import Settings
from memwarden.system import probe as _probe

__all__ = ["Readings"]

_SNAPSHOT_SECONDS = 1.0  # one /proc reading serves every callback of one collection


class Readings:
    """What the callbacks read: fresh /proc readings, and the meter's last census."""

    def __init__(self, settings: Settings) -> None:
        self.kind, self.footprint_descendants = footprint_kind(settings)
        self.descendants = settings.census_descendants or self.footprint_descendants
        self.census: dict[str, int | float] = {}
        self._lock = threading.Lock()
        self._at = -math.inf
        self._memory: dict[str, int] = {}

    def observe(self, fields: dict[str, Any]) -> None:
        census = fields.get("census")
        if census is not None:
            self.census = census  # swapped whole; the callbacks read it from another thread

    def memory(self) -> dict[str, int]:
        with self._lock:
            now = time.monotonic()
            if now - self._at > _SNAPSHOT_SECONDS:
                self._memory = self._read()
                self._at = now
            return self._memory

    def _read(self) -> dict[str, int]:
        p = _probe.current()
        out: dict[str, int] = {}
        rss = p.rss_bytes()
        if rss is not None:
            out["process.memory.usage"] = rss
        rollup = p.smaps_rollup()
        if rollup is not None:
            out["memwarden.memory.pss"] = rollup.pss_bytes
            out["memwarden.memory.uss"] = rollup.uss_bytes
        desc_pss: int | None = None
        if self.descendants:
            desc = p.descendants_memory()
            if desc is not None and desc.pss_bytes is not None:
                desc_pss = out["memwarden.memory.descendants.pss"] = desc.pss_bytes
        total = footprint(self.kind, rss, rollup.pss_bytes if rollup is not None else None,
                          desc_pss, self.footprint_descendants)
        if total is not None:
            out["memwarden.memory.footprint"] = total
        threads = p.threads()
        if threads is not None:
            out["process.thread.count"] = threads
        fds = p.open_fds()
        if fds is not None:
            out["process.unix.file_descriptor.count"] = fds
        return out
