"""One pass over the lines in bounded memory: each worker life judged when it ends.

A life ends when its PID logs a request of a new process (the split rules
of ``lives``) or when the input ends. Until then its requests are held in a
``life_buffer.OpenLife`` (bounded, thinned past ``LIFE_POINTS``); once it
is judged only its outcome is kept (``outcomes``), its summary and plotted
series if it ranks among the lives the report lists, and its requests if
it ranks among the ``MAX_POOL`` lives the suspects are computed from.
Route costs are summed as the requests go by (``route_tally``). So memory
grows with the number of workers running at once, never with lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from memwarden.find.analysis.actions import PLOTTED, ActionTally, from_lifecycle
from memwarden.find.analysis.batch import add_batch
from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.deaths import DeathTally
from memwarden.find.analysis.fast_lines import DECODE_ERRORS, decode_request
from memwarden.find.analysis.judges import Judges
from memwarden.find.analysis.judging import Judged, judge, marker
from memwarden.find.analysis.life_buffer import OpenLife, Row
from memwarden.find.analysis.model import LifeSeries, RecycleMarker, WorkerSummary
from memwarden.find.analysis.outcomes import Kept, VerdictTally, priority
from memwarden.find.analysis.reader import (
    MAX_LINE_BYTES,
    LineParser,
    _InvalidRecord,
    decode_line,
)
from memwarden.find.analysis.records import (
    ActionEvent,
    AllocationWindow,
    DeathInFlight,
    LifecycleEvent,
)
from memwarden.find.analysis.request_row import RouteNames, request_row
from memwarden.find.analysis.route_tally import RouteTally

__all__ = ["MAX_PLOTTED_ACTIONS", "MAX_POOL", "MAX_SERIES", "MAX_WORKERS", "StreamAnalysis",
           "marker"]

MAX_PLOTTED_ACTIONS = 1000
MAX_WORKERS = 500   # lives listed in report.json's workers
MAX_SERIES = 40     # lives whose memory the HTML report plots
MAX_POOL = 8        # lives whose requests the suspects are computed from
MAX_ORPHANS = 1000  # recycle and kill lines of a PID with no request before them
MAX_WINDOWS = 4096  # allocation_sites lines; thinned evenly past it
# A life whose PID has been silent this many lines is judged without waiting
# for the end of the input: after its recycle or kill line, stragglers come
# within milliseconds; without one, a worker that logs nothing while its
# peers log SILENT_PER_OPEN lines each (at least SILENT lines in all) is gone
# (killed without a line, or its log rotated away): a worker that gets its
# share of a balanced load misses 500 turns in a row with odds of e^-500.
# Without this, a fleet's log would keep every dead PID open to the end.
SILENT_AFTER_END = 20_000
SILENT = 100_000
SILENT_PER_OPEN = 500
SWEEP_EVERY = 1 << 16
MAX_SWEPT = 1 << 16
REQUEST_LOGGER = "memwarden.request"
NAN = float("nan")

# (pid, timestamp) -> keep the line? (--since, --until, --worker)
LineFilter = Callable[[int, "str | None"], bool]


class StreamAnalysis:
    """Feed it lines (``add``), then ``finish`` (``analyze.report_of``) for the report.

    ``judges``: processes that judge the ended lives while this one reads
    (``judges.Judges``; 0: judged here). The report is the same either way.
    The judges are forked where the platform can fork, as this process is when
    the analysis is made: a caller running other threads then (whose locks a
    fork copies as they are) should pass 0.
    """

    def __init__(self, config: AnalysisConfig | None = None,
                 keep_line: LineFilter | None = None, judges: int = 0) -> None:
        self.config = config or AnalysisConfig()
        self.keep_line = keep_line
        self.parser = LineParser()
        self.names = RouteNames()
        self.open: dict[int, OpenLife] = {}
        self.next_order = 0
        self.tally = VerdictTally()
        self.routes = RouteTally()
        self.workers: Kept[tuple[WorkerSummary, tuple[RecycleMarker, ...]]] = Kept(MAX_WORKERS)
        self.series: Kept[LifeSeries] = Kept(MAX_SERIES)
        self.pool: Kept[OpenLife] = Kept(MAX_POOL)
        # The lives judged beyond MAX_WORKERS: how many, their requests, per verdict.
        self.other_lives = 0
        self.other_requests = 0
        self.other_verdicts: dict[str, int] = {}
        self.requests = 0
        self.failed = 0
        self.windows: list[AllocationWindow] = []
        self.window_stride = 1
        self.window_seen = 0
        self.actions = ActionTally()
        self.plotted = 0
        self.orphans: list[LifecycleEvent] = []
        self.deaths = DeathTally()
        self._count_route = self.parser.route_counter
        self._known_route = self.names.known
        self._swept: dict[int, int] = {}  # pid -> index of its last life judged early
        # For benchmarks: this process's time spent on ended lives (judging them,
        # or waiting for the judges), and the judging itself, wherever it ran.
        self.judging_seconds = 0.0
        self.judged_seconds = 0.0
        self.judges = Judges(judges, self.config) if judges > 0 else None

    # -- lines in ----------------------------------------------------------------------

    def add(self, raw: str | bytes | None) -> None:
        counters = self.parser.counters
        counters.lines += 1
        if raw is None or len(raw) > MAX_LINE_BYTES:
            counters.oversized_lines += 1
            return
        if decode_request is not None and type(raw) is bytes and raw[:1] == b"{":
            try:
                line = decode_request(raw)
            except DECODE_ERRORS:
                line = None
            if line is not None and line.message == "request" \
                    and line.logger == REQUEST_LOGGER and self._fast_request(line):
                return
        self.add_decoded_slowly(raw)

    def add_batch(self, lines: Sequence[bytes | None]) -> None:
        """``add`` each of the lines, in order (``batch``: less Python per line)."""
        add_batch(self, lines, SWEEP_EVERY)

    def add_decoded_slowly(self, raw: str | bytes) -> None:
        """``add`` for a line counted in ``lines`` that the fast path did not take."""
        counters = self.parser.counters
        if type(raw) is not bytes or raw[:1] != b"{":
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            raw = text.strip().lstrip("\ufeff")
            if not raw.startswith("{"):
                counters.skipped_lines += 1
                return
        try:
            obj = decode_line(raw)
        except (ValueError, RecursionError):
            counters.malformed_lines += 1
            return
        if type(obj) is not dict:
            counters.malformed_lines += 1
            return
        if obj.get("message") == "request" and obj.get("logger") == REQUEST_LOGGER:
            self._request(obj)
            return
        record = self.parser.parse_object(obj)
        if record is not None:
            self.add_record(record)

    def _fast_request(self, line: Any) -> bool:
        """A line msgspec decoded and range-checked; False (nothing done) when it needs
        the reader's own checks (no route, unprintable text)."""
        route, method = line.route or "", line.method or None
        # A route and method seen on this path passed its checks then.
        found = self._known_route((route, method))
        if found is None:
            if not route or not route.isprintable() or (method and not method.isprintable()):
                return False
            found = self.names.entry(route, method)
        rid, key = found
        census = line.census
        row: Row = (line.seq, rid, float(line.status),
                    line.duration_ms, line.rss_bytes, line.rss_delta_bytes, line.blocks_delta,
                    line.blocks, line.pss_bytes, line.uss_bytes,
                    None if census is None else self.parser.census_dict(census))
        self._take(line.pid, row, key, line.timestamp or None)
        return True

    def _request(self, obj: Mapping[str, Any]) -> None:
        parser = self.parser
        counters = parser.counters
        try:
            pid, row, key, timestamp = request_row(obj, counters, self.names, parser.census_of)
        except _InvalidRecord:
            counters.invalid_records += 1
            return
        self._take(pid, row, key, timestamp)

    def _take(self, pid: int, row: Row, key: str, timestamp: str | None) -> None:
        parser = self.parser
        counters = parser.counters
        if self.keep_line is not None and not self.keep_line(pid, timestamp):
            counters.filtered_lines += 1
            return
        counters.request_lines += 1
        self._count_route(key)
        life = self.open.get(pid)
        if life is None or life.starts_new_life(row[0]):
            life = self.new_life(pid, life)
        life.add(row)
        life.last_line = counters.lines
        self.requests += 1
        if not self.requests & (SWEEP_EVERY - 1):
            self.sweep()
        status = row[2]
        failed = status >= 500
        self.failed += failed
        # routes.block_deltas, request by request.
        blocks, blocks_delta = row[7], row[6]
        previous, after_census = life.prev_blocks, life.after_census
        if after_census == after_census and blocks == blocks:
            delta = blocks - after_census
        elif blocks_delta == blocks_delta:
            delta = blocks_delta
        elif blocks == blocks and previous == previous:
            delta = blocks - previous
        else:
            delta = NAN
        census = row[10]
        closing = census.get("blocks") if census else None
        life.prev_blocks = blocks
        life.after_census = NAN if closing is None else closing
        self.routes.add(key, failed, row[5], delta, row[3])

    def new_life(self, pid: int, ended: OpenLife | None) -> OpenLife:
        """Open the next life of ``pid``, judging the one it ends (if any)."""
        if ended is not None:
            self.close(ended)
            index = ended.index + 1
        else:
            index = self._swept.pop(pid, 0) + 1
        life = OpenLife(pid, index, self.next_order)
        self.next_order += 1
        self.open[pid] = life
        return life

    def _kept(self, pid: int, timestamp: str | None) -> bool:
        if self.keep_line is None or self.keep_line(pid, timestamp):
            return True
        self.parser.counters.filtered_lines += 1
        return False

    def add_record(self, record: object) -> None:
        """A record other than a request line's (those take the fast path)."""
        if isinstance(record, ActionEvent):
            if not self._kept(record.pid, record.timestamp):
                return
            self.actions.add(record)
            life = self.open.get(record.pid)
            if record.would and record.action in PLOTTED and life is not None \
                    and self.plotted < MAX_PLOTTED_ACTIONS:
                self.plotted += 1
                life.mark(record)
        elif isinstance(record, LifecycleEvent):
            if not self._kept(record.pid, record.timestamp):
                return
            self.actions.add(from_lifecycle(record))
            life = self.open.get(record.pid)
            if life is not None:
                life.end(record)
            elif len(self.orphans) < MAX_ORPHANS:
                self.orphans.append(record)
        elif isinstance(record, DeathInFlight):
            if self._kept(record.pid, record.timestamp):
                self.deaths.add(record, self.parser.counters.lines)
        elif isinstance(record, AllocationWindow) and self._kept(record.pid, None):
            self._window(record)

    def _window(self, window: AllocationWindow) -> None:
        """Keep every stride-th window; past MAX_WINDOWS, every other one of those."""
        self.window_seen += 1
        if self.window_seen % self.window_stride:
            return
        self.windows.append(window)
        if len(self.windows) >= MAX_WINDOWS:
            del self.windows[::2]
            self.window_stride *= 2

    # -- lives out ---------------------------------------------------------------------

    def close(self, life: OpenLife) -> None:
        """Judge a life that has ended and keep what ranks of it."""
        started = time.perf_counter()
        life.flush()  # what is sent or kept of it is its columns
        try:
            self._close(life)
        finally:
            self.judging_seconds += time.perf_counter() - started

    def _close(self, life: OpenLife) -> None:
        if self.judges is None:
            self._keep(life, judge(life, self.names.names, self.config))
            return
        for done, judged in self.judges.submit(life, self.names.names, self.series.bar()):
            self._keep(done, judged)

    def _keep(self, life: OpenLife, judged: Judged) -> None:
        """Keep what ranks of a judged life (in the order the lives ended)."""
        self.judged_seconds += judged.seconds
        outcome = judged.outcome
        self.tally.add(outcome)
        key = priority(outcome)
        dropped = self.workers.add(key, (judged.summary, judged.markers))
        if dropped is not None:
            self.count_other(dropped[0])
        if self.series.ranks(key):
            self.series.add(key, judged.life_series(self.config))
        self.pool.add(key, life)

    def count_other(self, lost: WorkerSummary) -> None:
        self.other_lives += 1
        self.other_requests += lost.requests
        self.other_verdicts[lost.verdict] = self.other_verdicts.get(lost.verdict, 0) + 1

    def sweep(self) -> None:
        """Judge the lives of PIDs that have gone silent (see SILENT)."""
        now = self.parser.counters.lines
        limit = max(SILENT, SILENT_PER_OPEN * len(self.open))
        for pid, life in list(self.open.items()):
            silent = now - life.last_line
            if silent > limit or (life.end_events and silent > SILENT_AFTER_END):
                del self.open[pid]
                self.close(life)
                # Should the PID come back (reused), its next life is numbered on.
                self._swept[pid] = life.index
                if len(self._swept) > MAX_SWEPT:
                    del self._swept[next(iter(self._swept))]

    def close_all(self) -> None:
        """Judge every life still open, and wait for the judges (then let them go)."""
        for life in sorted(self.open.values(), key=lambda open_life: open_life.order):
            self.close(life)
        self.open.clear()
        if self.judges is not None:
            started = time.perf_counter()
            for done, judged in self.judges.drain():
                self._keep(done, judged)
            self.judges.shutdown()
            self.judges = None
            self.judging_seconds += time.perf_counter() - started
