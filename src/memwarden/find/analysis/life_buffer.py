"""One worker life's requests in bounded memory while the log streams by.

A life's requests are held as columns of machine numbers (about 80 bytes a
request rather than the 500 of a record object) and, past ``LIFE_POINTS``,
thinned: neighbouring requests are merged in pairs, the later one kept with
the earlier one's deltas added to its own, so the summed block and RSS
deltas still add up to the life's total and a census sample is kept over a
plain request. A life of a million requests is judged on 4,096 to 8,192 of
them, spread evenly over it, which is plenty for a robust slope; a life
shorter than ``LIFE_POINTS`` is judged on every request, as before.

The split into lives follows ``lives.WorkerLife``'s rules; the seqs a life
has seen are remembered up to ``SEEN_SEQS`` (a replacement process starts
again at 1, so a low repeated seq is what tells a new life).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from memwarden.find.analysis.lives import REORDER_TOLERANCE, WorkerLife
from memwarden.find.analysis.records import ActionEvent, LifecycleEvent, RequestRecord
from memwarden.find.analysis.series import LifeColumns

__all__ = ["COLUMNS", "FLUSH_MASK", "LIFE_POINTS", "MAX_END_EVENTS", "OpenLife", "Row"]

LIFE_POINTS = 8192
FLUSH_ROWS = 128  # a power of two that divides LIFE_POINTS // 2: thinning comes at a flush
FLUSH_MASK = FLUSH_ROWS - 1
SEEN_SEQS = 8192
MAX_END_EVENTS = 16
NAN = math.nan
# The numeric columns, in the order of a row after (seq, route id).
COLUMNS = ("status", "duration_ms", "rss_bytes", "rss_delta_bytes", "blocks_delta", "blocks",
           "pss_bytes", "uss_bytes")
_RSS = 2
_RSS_DELTA = 3
_BLOCKS_DELTA = 4
_BLOCKS = 5
# (seq, route id, status, duration, rss, rss delta, blocks delta, blocks, pss, uss, census);
# NaN stands for an absent number.
Row = tuple[int, int, float, float, float, float, float, float, float, float,
            Mapping[str, float] | None]


class _Request:
    """A request of a life being judged: ``RequestRecord``'s fields without its frozen
    dataclass's construction cost (a seventh of it), since judging builds thousands."""

    __slots__ = ("blocks", "blocks_delta", "census", "duration_ms", "method", "pid",
                 "pss_bytes", "route", "rss_bytes", "rss_delta_bytes", "seq", "status",
                 "timestamp", "uss_bytes")

    def __init__(self, pid: int, seq: int, route: str, method: str | None, status: int | None,
                 duration_ms: float | None, rss_bytes: float | None,
                 rss_delta_bytes: float | None, blocks_delta: float | None,
                 blocks: float | None, pss_bytes: float | None, uss_bytes: float | None,
                 census: Mapping[str, float] | None) -> None:
        self.pid = pid
        self.seq = seq
        self.route = route
        self.method = method
        self.status = status
        self.duration_ms = duration_ms
        self.rss_bytes = rss_bytes
        self.rss_delta_bytes = rss_delta_bytes
        self.blocks_delta = blocks_delta
        self.blocks = blocks
        self.pss_bytes = pss_bytes
        self.uss_bytes = uss_bytes
        self.census = census
        self.timestamp = None

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.route}" if self.method else self.route

    @property
    def failed(self) -> bool:
        return self.status is not None and self.status >= 500


class OpenLife:
    """The requests, end events and marks of one life; see the module docstring."""

    __slots__ = ("after_census", "census", "cols", "end_events", "index", "last_line", "marks",
                 "max_seq", "min_seq", "order", "pending", "pid", "prev_blocks", "requests",
                 "route_ids", "seen", "seqs")

    def __init__(self, pid: int, index: int, order: int) -> None:
        self.pid = pid
        self.index = index
        self.order = order  # global creation order: the report lists lives in it
        self.requests = 0  # every request, kept or merged
        self.seqs = array("q")
        self.route_ids = array("I")
        self.cols = [array("d") for _ in COLUMNS]
        self.census: list[Mapping[str, float] | None] = []
        # The numbers of the latest rows (fewer than FLUSH_ROWS), row after row: one
        # extend a row instead of an append per column; ``flush`` moves them.
        self.pending = array("d")
        self.end_events: list[LifecycleEvent] = []
        self.marks: list[tuple[int, ActionEvent]] = []
        self.seen = bytearray(SEEN_SEQS // 8 + 1)  # a bit per seq up to SEEN_SEQS
        self.max_seq = 0
        self.min_seq: int | None = None
        self.last_line = 0  # the input line of its latest request
        # For each request's own block delta (routes.block_deltas): the last
        # absolute count, and the closing count of the census before (NaN: none).
        self.prev_blocks = NAN
        self.after_census = NAN

    def starts_new_life(self, seq: int) -> bool:
        """``WorkerLife._starts_new_life`` with a bounded memory of seen seqs."""
        if seq <= SEEN_SEQS and self.seen[seq >> 3] & (1 << (seq & 7)):
            return True
        if seq < self.max_seq - REORDER_TOLERANCE and (self.min_seq is None
                                                       or seq < self.min_seq):
            return True
        return bool(self.end_events) and seq <= REORDER_TOLERANCE and seq < self.max_seq

    def add(self, row: Row) -> None:
        seq = row[0]
        self.requests += 1
        if seq <= SEEN_SEQS:
            self.seen[seq >> 3] |= 1 << (seq & 7)
        if seq > self.max_seq:
            self.max_seq = seq
        if self.min_seq is None or seq < self.min_seq:
            self.min_seq = seq
        self.seqs.append(seq)
        self.route_ids.append(row[1])
        self.census.append(row[10])
        self.pending.extend(row[2:10])
        if not len(self.seqs) & FLUSH_MASK:
            self.flush()

    def flush(self) -> None:
        """The pending numbers into their columns (a slice each), and the columns thinned
        once they reach LIFE_POINTS: the values a row at a time gives."""
        pending = self.pending
        if pending:
            width = len(self.cols)
            for i, col in enumerate(self.cols):
                col.extend(pending[i::width])
            del pending[:]
        if len(self.seqs) >= LIFE_POINTS:
            self._thin()

    def _thin(self) -> None:
        """Merge neighbours in pairs: half the points, the same sums of deltas.

        Column by column (a census sample outlives a plain request; the kept
        one's deltas get the other's added): the values a loop over the pairs
        gives, at a fraction of its cost.
        """
        size = len(self.seqs)
        n = size // 2 * 2
        census = self.census
        kept = [i if census[i] is not None and census[i + 1] is None else i + 1
                for i in range(0, n, 2)]
        gone = [k ^ 1 for k in kept]  # the other of each pair (pairs start at even i)
        keep = kept + list(range(n, size))
        pick = itemgetter(*keep) if len(keep) > 1 else lambda v: tuple(v[i] for i in keep)
        cols = [array("d", pick(col)) for col in self.cols]
        for c in (_RSS_DELTA, _BLOCKS_DELTA):
            values = self.cols[c]
            # NaN (absent) adds nothing: a sum of the two present, or the one present.
            merged = [b if a != a else a if b != b else a + b
                      for a, b in zip([values[k] for k in kept], [values[g] for g in gone],
                                      strict=True)]
            cols[c][:len(merged)] = array("d", merged)
        self.seqs = array("q", pick(self.seqs))
        self.route_ids = array("I", pick(self.route_ids))
        self.cols = cols
        self.census = list(pick(census))

    def end(self, event: LifecycleEvent) -> None:
        if len(self.end_events) < MAX_END_EVENTS:
            self.end_events.append(event)

    def mark(self, event: ActionEvent) -> None:
        self.marks.append((self.max_seq, event))

    @property
    def thinned(self) -> bool:
        self.flush()
        return len(self.seqs) < self.requests

    def _in_seq_order(self) -> Callable[[Sequence[Any]], Sequence[Any]]:
        """A column's values in seq order (the requests as ``worker_life`` lists them)."""
        self.flush()
        n = len(self.seqs)
        order = sorted(range(n), key=self.seqs.__getitem__)
        if order == list(range(n)):
            return lambda values: values
        # Out of order means two requests at least, so itemgetter gives a tuple.
        return itemgetter(*order)

    def worker_life(self, routes: Sequence[tuple[str, str | None]],
                    records: bool = True) -> WorkerLife:
        """The kept requests as a ``WorkerLife`` in seq order (``routes`` names the ids).

        ``records=False`` builds lighter request objects with the same fields, for
        the plotted series; the suspects' lives get real records (their routes may
        be folded).
        """
        column = self._in_seq_order()
        make: Any = RequestRecord if records else _Request
        n = len(self.seqs)
        # Column by column, then one constructor call per request through map: the
        # same values as a loop over the rows, at a fraction of its cost.
        names = [routes[i] for i in column(self.route_ids)]
        statuses = [None if v != v else int(v) for v in column(self.cols[0])]
        optional = [[None if v != v else v for v in column(col)] for col in self.cols[1:]]
        requests = list(map(make, repeat(self.pid, n), column(self.seqs),
                            [name[0] for name in names], [name[1] for name in names],
                            statuses, *optional, column(self.census)))
        life = self.bare_life()
        life.requests = requests
        return life

    def bare_life(self) -> WorkerLife:
        """The life without its requests: its pid, index, end events and marks."""
        life = WorkerLife(pid=self.pid, index=self.index, end_events=list(self.end_events),
                          marks=list(self.marks))
        life._max_seq = self.max_seq
        return life

    def columns(self) -> LifeColumns:
        """The columns the trend tests read, in seq order: ``LifeColumns.of`` the
        ``worker_life``'s requests, without building them."""
        column = self._in_seq_order()

        def optional(values: Sequence[float]) -> list[float | None]:
            return [None if v != v else v for v in column(values)]

        return LifeColumns(list(column(self.seqs)), optional(self.cols[_BLOCKS]),
                           optional(self.cols[_BLOCKS_DELTA]), optional(self.cols[_RSS]),
                           list(column(self.census)))

    # -- plain JSON, for partial summaries -----------------------------------------------

    def to_json(self) -> dict[str, Any]:
        self.flush()
        return {"pid": self.pid, "index": self.index, "order": self.order,
                "requests": self.requests, "seqs": list(self.seqs),
                "route_ids": list(self.route_ids),
                "cols": [[None if v != v else v for v in col] for col in self.cols],
                "census": self.census, "max_seq": self.max_seq}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], route_ids: Sequence[int],
                  end_events: list[LifecycleEvent], marks: list[tuple[int, ActionEvent]]
                  ) -> OpenLife:
        """Rebuild one life; ``route_ids`` maps the partial's route ids to this run's."""
        life = cls(data["pid"], data["index"], data["order"])
        life.requests = data["requests"]
        life.seqs = array("q", data["seqs"])
        life.route_ids = array("I", (route_ids[i] for i in data["route_ids"]))
        life.cols = [array("d", (NAN if v is None else v for v in col)) for col in data["cols"]]
        life.census = list(data["census"])
        life.end_events = end_events
        life.marks = marks
        life.max_seq = data["max_seq"]
        return life
