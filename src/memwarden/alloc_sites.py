"""Allocation sites, opt-in: tracemalloc snapshot diffs every N requests of a worker.

``MEMWARDEN_TRACEMALLOC=<frames>`` (1 to 100; unset or 0: off) starts
tracemalloc in each sampled worker at the end of its first request, keeping
that many frames per allocation (not at fork: tracing the app's imports would
slow a worker's boot several times over, for allocations no window diffs).
The worker takes a snapshot then, and every ``MEMWARDEN_TRACEMALLOC_EVERY``
requests (default 250), and logs the diff of each snapshot with the one
before as one line, logger
``memwarden.tracemalloc``, message ``allocation_sites``: ``pid``, ``seq``
(the request count at the snapshot), ``window_requests`` and ``sites``, the
:data:`TOP` sites that grew most, each ``site`` (``path:line``),
``size_diff_bytes`` and ``count_diff`` (docs/contracts.md). ``memwarden
analyze`` turns sites that keep growing into allocation suspects.

``MEMWARDEN_TRACEMALLOC_WORKERS=N`` samples the first N workers only (0, the
default: every worker): tracemalloc slows every allocation of a worker it
traces, so one traced worker among several keeps the service's cost to that
worker's share. A worker's place is the lowest one free when it forks
(:meth:`memwarden.hold.inflight.InflightWatch.index`), so a recycled worker's
replacement takes its place, and its sampling.

A site is where the app's own code made the allocation: the most recent
frame in a file under the worker's working directory (the app's, where
gunicorn runs it) and not in an installed package; failing that, the most
recent frame outside the standard library; failing that, the most recent
frame. So a cache kept by a library the app calls is named at the app's line
that calls it, given enough frames (``MEMWARDEN_TRACEMALLOC=25``); with one
frame, a site is the allocation's own line. An allocation made by memwarden
(its most recent frame outside the standard library is memwarden's), or by
tracemalloc, is left out: what memwarden allocates to measure is not the
app's growth. Paths are relative to the working directory, or start after
``site-packages/``.

A bad value is refused by the master at start with one error line, and the
sampling stays off; the server serves on (this is a diagnosis aid, not a
protection).
"""

from __future__ import annotations

import logging
import os
import sysconfig
import tracemalloc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwarden.see import meter as _meter

__all__ = ["TOP", "SiteSettings", "SiteWindows", "configure", "start_in_worker"]

FRAMES_VAR = "MEMWARDEN_TRACEMALLOC"
EVERY_VAR = "MEMWARDEN_TRACEMALLOC_EVERY"
WORKERS_VAR = "MEMWARDEN_TRACEMALLOC_WORKERS"
DEFAULT_EVERY = 250
MAX_FRAMES = 100
TOP = 20

_log = logging.getLogger("memwarden.tracemalloc")
_MEMWARDEN = str(Path(__file__).resolve().parent)
_TRACEMALLOC = tracemalloc.__file__
_STDLIB = tuple({sysconfig.get_paths()[k] + os.sep for k in ("stdlib", "platstdlib")})
_INTERNAL = ("<frozen ", "<unknown>")


@dataclass(frozen=True, slots=True)
class SiteSettings:
    frames: int
    every: int = DEFAULT_EVERY
    workers: int = 0  # 0: every worker

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SiteSettings | None:
        """The settings, None when off; ValueError naming the variable when one is bad."""
        env = os.environ if environ is None else environ
        frames = _integer(env, FRAMES_VAR, 0, 0, MAX_FRAMES)
        if frames == 0:
            return None
        return cls(frames, _integer(env, EVERY_VAR, DEFAULT_EVERY, 1, 10**9),
                   _integer(env, WORKERS_VAR, 0, 0, 10**6))


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    if raw.strip().lower() == "off" and name == FRAMES_VAR:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number from {low} to {high}"
                         ) from None
    if not low <= value <= high:
        raise ValueError(f"{name}={raw!r}: expected a whole number from {low} to {high}")
    return value


# The master's reading of the settings, inherited by every worker it forks.
_settings: list[SiteSettings | None] = [None]


def configure(environ: Mapping[str, str] | None = None) -> SiteSettings | None:
    """In the master, once at start: read the settings for the workers; a bad value
    is logged (once) and leaves the sampling off."""
    try:
        _settings[0] = SiteSettings.from_env(environ)
    except ValueError as exc:
        _settings[0] = None
        _log.error("memwarden ignores %s: allocation sites are off", exc)
    return _settings[0]


def start_in_worker(index: int | None) -> SiteWindows | None:
    """In a worker after fork: trace and sample it when its place is among the sampled."""
    settings = _settings[0]
    if settings is None:
        return None
    if settings.workers and (index is None or index >= settings.workers):
        return None
    windows = SiteWindows(settings)
    windows.start()
    return windows


class SiteWindows:
    """One worker's snapshots and the lines of their diffs. Called by the meter after
    each request with the worker's request count; never raises."""

    def __init__(self, settings: SiteSettings, root: str | None = None) -> None:
        self.settings = settings
        self._root = (root or os.getcwd()).rstrip(os.sep) + os.sep
        self._previous: tracemalloc.Snapshot | None = None
        self._previous_seq = 0
        self._filters = [tracemalloc.Filter(False, _TRACEMALLOC),
                         tracemalloc.Filter(False, _MEMWARDEN + os.sep + "*"),
                         tracemalloc.Filter(False, "<frozen *"),
                         tracemalloc.Filter(False, "<unknown>")]
        self._labels: dict[str, str] = {}

    def start(self) -> None:
        """Be called after every request; tracing starts with the first."""
        _meter.set_window_hook(self)

    def stop(self) -> None:
        _meter.set_window_hook(None)
        self._previous = None

    def __call__(self, seq: int) -> None:
        previous = self._previous
        if previous is not None and seq - self._previous_seq < self.settings.every:
            return
        try:
            if previous is None and not tracemalloc.is_tracing():
                tracemalloc.start(self.settings.frames)
            snapshot = tracemalloc.take_snapshot().filter_traces(self._filters)
            if previous is not None:
                self._log(seq, seq - self._previous_seq, self.sites(snapshot, previous))
            self._previous, self._previous_seq = snapshot, seq
        except Exception:
            self.stop()
            _log.exception("memwarden could not take a tracemalloc snapshot; allocation "
                           "sites are off in this worker")

    def sites(self, new: tracemalloc.Snapshot, old: tracemalloc.Snapshot
              ) -> list[dict[str, Any]]:
        """The TOP sites that grew most from ``old`` to ``new``, memwarden's left out."""
        key = "lineno" if self.settings.frames == 1 else "traceback"
        grown: dict[str, list[int]] = {}
        for diff in new.compare_to(old, key):
            if not diff.size_diff and not diff.count_diff:
                continue
            site = self._site(diff.traceback)
            if site is None:
                continue
            total = grown.setdefault(site, [0, 0])
            total[0] += diff.size_diff
            total[1] += diff.count_diff
        top = sorted(((size, count, site) for site, (size, count) in grown.items() if size > 0),
                     reverse=True)[:TOP]
        return [{"site": site, "size_diff_bytes": size, "count_diff": count}
                for size, count, site in top]

    def _site(self, traceback: tracemalloc.Traceback) -> str | None:
        # tracemalloc lists the oldest frame first.
        recent = list(reversed(traceback))
        outside = next((f for f in recent if not f.filename.startswith(_STDLIB)
                        and not f.filename.startswith(_INTERNAL)), None)
        if outside is not None and (outside.filename.startswith(_MEMWARDEN + os.sep)
                                    or outside.filename == _TRACEMALLOC):
            return None  # memwarden's own, or tracemalloc's
        chosen = next((f for f in recent if self._is_app(f.filename)), outside or recent[0])
        return f"{self._label(chosen.filename)}:{chosen.lineno}"

    def _is_app(self, filename: str) -> bool:
        return (filename.startswith(self._root) and "site-packages" + os.sep not in filename
                and not filename.startswith(_MEMWARDEN + os.sep))

    def _label(self, filename: str) -> str:
        label = self._labels.get(filename)
        if label is None:
            if filename.startswith(self._root):
                label = filename[len(self._root):]
            elif "site-packages" + os.sep in filename:
                label = filename.rsplit("site-packages" + os.sep, 1)[1]
            else:
                label = filename
            self._labels[filename] = label
        return label

    def _log(self, seq: int, window: int, sites: list[dict[str, Any]]) -> None:
        _log.info("allocation_sites", extra={"memwarden": {
            "pid": os.getpid(), "seq": seq, "window_requests": window, "sites": sites}})
