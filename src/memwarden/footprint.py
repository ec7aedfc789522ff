"""A worker's memory footprint: its own RSS or PSS plus its descendants' PSS.

The descendants are where an agent service's memory lives (a Chromium
context is ~75 MB PSS in child processes while the worker grows ~2 MB), so a
limit on the worker's RSS alone would never fire. PSS for them, because
summed RSS counts Chromium's shared pages once per process (~3.5x).

Costs decide the cadence: RSS is one pread (~1 us, and already on the request
line), the descendants' walk plus one smaps_rollup each about 1 ms, the
worker's own PSS ~9 us per resident MiB. So :class:`FootprintSampler` takes
RSS on every reading and the rest every ``every`` requests or ``seconds``;
in between, the worker's PSS is the last sample moved by the RSS change
since (private growth moves both by the same amount).

:func:`measure` is the master's one-shot reading of a worker, which keeps no
file descriptor open (the master forks, and a kept descriptor would be
inherited by every worker) and logs nothing about a worker that just exited.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwarden.system import probe as _probe
from memwarden.system.proctree import subtree_pids

__all__ = ["Footprint", "FootprintSampler", "cgroup_working_set", "measure"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Footprint:
    own_bytes: int
    kind: str  # "rss" or "pss": what own_bytes is
    descendants_bytes: int | None = None  # their PSS; None: not measured
    descendant_pids: tuple[int, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.own_bytes + (self.descendants_bytes or 0)

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"footprint_bytes": self.total_bytes, "footprint": self.kind,
                               f"{self.kind}_bytes": self.own_bytes}
        if self.descendants_bytes is not None:
            out["descendants"] = len(self.descendant_pids)
            out["descendants_pss_bytes"] = self.descendants_bytes
        return out


def _statm_rss(proc_root: str, pid: int) -> int | None:
    try:
        with open(f"{proc_root}/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def measure(pid: int, kind: str = "rss", descendants: bool = True,
            proc_root: str = "/proc", sys_root: str = "/sys") -> Footprint | None:
    """One reading of process ``pid``; None when it is gone or unreadable.

    Quiet: a worker that exits between the master's list and this reading is
    not a degraded probe, so nothing is logged.
    """
    probe = _probe.Probe(proc_root, sys_root, pid=pid)
    if kind == "pss":
        rollup = probe.smaps_rollup(pid)
        own = rollup.pss_bytes if rollup is not None else None
    else:
        own = _statm_rss(proc_root, pid)
    if own is None:
        return None
    if not descendants:
        return Footprint(own, kind)
    pids = subtree_pids(pid, proc_root)
    pss = 0
    for kid in pids:
        rollup = probe.smaps_rollup(kid)
        if rollup is not None:
            pss += rollup.pss_bytes
    return Footprint(own, kind, pss, pids)


class FootprintSampler:
    """This worker's footprint, cheap between samples; safe from several threads."""

    __slots__ = (
        "_clock",
        "_desc_bytes",
        "_desc_pids",
        "_descendants",
        "_every",
        "_kind",
        "_last_sample",
        "_lock",
        "_pss",
        "_pss_rss",
        "_rss",
        "_seconds",
        "_since_sample",
        "probe",
    )

    def __init__(self, kind: str = "rss", descendants: bool = True, every: int = 10,
                 seconds: float = 5.0, process_probe: _probe.Probe | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # The worker's probe, shared with the request meter: post_fork opened its
        # statm descriptor in this process, so no thread ever reopens it.
        self.probe = process_probe if process_probe is not None else _probe.current()
        self._kind = kind
        self._descendants = descendants
        self._every = max(1, every)
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._rss: int | None = None
        self._pss: int | None = None  # last sampled PSS ...
        self._pss_rss: int | None = None  # ... and the RSS at that moment
        self._desc_bytes: int | None = None
        self._desc_pids: tuple[int, ...] = ()
        self._since_sample = 0
        self._last_sample = -1.0

    @property
    def kind(self) -> str:
        return self._kind

    def observe(self, fields: dict[str, Any]) -> Footprint | None:
        """After a request: take what the request line measured, sample if due."""
        with self._lock:
            rss = fields.get("rss_bytes")
            if isinstance(rss, int):
                self._rss = rss
            # A sampled request line carries PSS and the descendants: use them.
            pss = fields.get("pss_bytes")
            if isinstance(pss, int) and self._rss is not None:
                self._pss, self._pss_rss = pss, self._rss
            census = fields.get("census")
            if isinstance(census, dict) and isinstance(census.get("children_pss_bytes"), int):
                self._desc_bytes = census["children_pss_bytes"]
            self._since_sample += 1
            if self._due():
                self._sample()
            return self._current()

    def observe_rss(self, rss_bytes: int) -> Footprint | None:
        """After a usual request (no census, no PSS): its RSS, sample if due.

        What ``observe`` does with such a line's fields, without the fields.
        """
        with self._lock:
            self._rss = rss_bytes
            self._since_sample += 1
            if self._due():
                self._sample()
            return self._current()

    def now(self, fresh: bool = False) -> Footprint | None:
        """Between requests (idle timer, shedding): RSS now, the rest as sampled."""
        with self._lock:
            rss = self.probe.rss_bytes()
            if rss is not None:
                self._rss = rss
            if fresh or self._due():
                self._sample()
            return self._current()

    def _due(self) -> bool:
        if self._last_sample < 0 or self._since_sample >= self._every:
            return True
        return bool(self._seconds) and self._clock() - self._last_sample >= self._seconds

    def _sample(self) -> None:
        self._since_sample = 0
        self._last_sample = self._clock()
        rss = self.probe.rss_bytes()
        if rss is not None:
            self._rss = rss
        if self._kind == "pss" and self._rss is not None:
            rollup = self.probe.smaps_rollup()
            if rollup is not None:
                # Paired with statm's RSS, the source of every later reading.
                self._pss, self._pss_rss = rollup.pss_bytes, self._rss
        if self._descendants:
            desc = self.probe.descendants_memory()
            if desc is not None:
                self._desc_bytes = desc.pss_bytes if desc.pss_bytes is not None else 0
                self._desc_pids = desc.pids

    def _current(self) -> Footprint | None:
        rss = self._rss
        if rss is None:
            return None
        own = rss
        kind = "rss"
        if self._kind == "pss" and self._pss is not None and self._pss_rss is not None:
            own = max(0, self._pss + rss - self._pss_rss)
            kind = "pss"
        desc = self._desc_bytes if self._descendants else None
        return Footprint(own, kind, desc, self._desc_pids if self._descendants else ())


def cgroup_working_set(sys_root: str = "/sys",
                       cgroup: _probe.CgroupMemory | None = None,
                       process_probe: _probe.Probe | None = None) -> tuple[int, int] | None:
    """(working set, limit) of this process's memory cgroup, or None without a limit.

    Working set as the kubelet counts it: usage minus inactive page cache,
    which the kernel reclaims before it OOM-kills anyone (a service writing
    logs would otherwise look full).
    """
    p = process_probe if process_probe is not None else _probe.current()
    cg = cgroup if cgroup is not None else p.cgroup_memory()
    if cg is None or cg.limit_bytes is None or cg.current_bytes is None:
        return None
    base = Path(sys_root) / "fs" / "cgroup"
    rel = cg.path.lstrip("/")
    if cg.version == 1:
        candidates, key = [base / "memory" / rel], "total_inactive_file"
    else:
        candidates, key = [base / rel, base / "unified" / rel], "inactive_file"
    inactive = 0
    for group in candidates:
        try:
            text = (group / "memory.stat").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                try:
                    inactive = int(value)
                except ValueError:
                    inactive = 0
                break
        break
    return max(0, cg.current_bytes - inactive), cg.limit_bytes
