"""Worker lives judged in other processes while the log is read, taken back in order.

Judging a life (its trend tests) is a pure function of the life's buffered
requests, the route names and the configuration, so it can run anywhere:
``Judges`` sends each ended life to a pool of processes and hands the
results back in the order the lives ended, which is all the stream's
bookkeeping (the verdict tally, the kept lives) depends on. The report is
the same as when every life is judged in the reading process; the reading
process only reads, and a second core judges meanwhile. The judges fit with
numpy when it is installed, the reading process then without it (its peak
memory stays that of reading; ``stats.use_numpy``).

At most ``PENDING_PER_PROCESS`` lives per process wait to be judged: past
that, reading waits for the oldest, so memory stays bounded when judging is
the slower side. Should a judge die (killed, out of memory), the lives it
had and the rest are judged in the reading process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.judging import Judged, judge_with_series
from memwarden.find.analysis.life_buffer import OpenLife
from memwarden.find.analysis.stats import use_numpy

__all__ = ["Judges", "available_cpus", "default_judges"]

PENDING_PER_PROCESS = 4


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as a container limits it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_judges() -> int:
    """``memwarden analyze``'s judges by default: one per available CPU (0 on one CPU,
    where a process of its own would only add the cost of sending each life)."""
    cpus = available_cpus()
    return cpus if cpus > 1 else 0


class Judges:
    """A pool of ``processes`` judging lives; results come back in submission order."""

    def __init__(self, processes: int, config: AnalysisConfig) -> None:
        self.config = config
        self.limit = PENDING_PER_PROCESS * processes
        self.judged_here = 0  # lives judged in this process after a judge died
        # Each life sent, its route names, the plotting bar, and its judging (None:
        # judged here).
        self.pending: deque[tuple[OpenLife, Sequence[tuple[str, str | None]],
                                  tuple[int, int, int] | None, Future[Judged] | None]] = deque()
        methods = multiprocessing.get_all_start_methods()
        # fork: the processes start from this one as it is now, before the
        # lives it buffers make it big, and need nothing re-imported.
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        # Each judge fits with numpy (when installed); this process, reading, without.
        self.pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            processes, mp_context=context, initializer=use_numpy, initargs=(True,))
        # Start them now, while this process is small.
        for started in [self.pool.submit(int) for _ in range(processes)]:
            started.result()
        use_numpy(False)

    def submit(self, life: OpenLife, names: Sequence[tuple[str, str | None]],
               bar: tuple[int, int, int] | None = None) -> Iterator[tuple[OpenLife, Judged]]:
        """Send ``life`` off; yield the lives judged by now, in order (waiting when full).

        ``bar``: the plotted lives' ``Kept.bar()`` now (``judging.judge_with_series``).
        """
        # Only the names its route ids reach travel with it.
        used = names[:max(life.route_ids, default=-1) + 1]
        future: Future[Judged] | None = None
        if self.pool is not None:
            try:
                future = self.pool.submit(judge_with_series, life, used, self.config, bar)
            except BrokenProcessPool:
                self.pool = None
        self.pending.append((life, used, bar, future))
        while self.pending and (len(self.pending) > self.limit or self.pending[0][3] is None
                                or self.pending[0][3].done()):
            yield self._next()

    def drain(self) -> Iterator[tuple[OpenLife, Judged]]:
        """Every life still out, in order."""
        while self.pending:
            yield self._next()

    def _next(self) -> tuple[OpenLife, Judged]:
        life, names, bar, future = self.pending.popleft()
        if future is not None:
            try:
                return life, future.result()
            except BrokenProcessPool:
                # A judge died (killed, out of memory): the rest are judged here.
                self.pool = None
        self.judged_here += 1
        return life, judge_with_series(life, names, self.config, bar)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
