"""From a worker life's requests to the series the tests and plots use.

Allocated blocks come first: ``sys.getallocatedblocks()`` counts objects
the interpreter holds and ignores the allocator's free-but-kept memory that
makes RSS rise in runs without a leak. When the absolute count (``blocks``)
is logged it is used as is: under threads or async workers, the deltas of
overlapping requests each include the others' allocations, so their sum
over-counts; the absolute count does not.

Two census fields measure the live heap without garbage, and beat both:
``blocks_collected`` (right after a ``gc.collect()``, on every census when
``MEMWARDEN_CENSUS_COLLECT=1``) and ``blocks_after_full_gc`` (right after the
most recent full collection, new whenever ``gc_full_collections`` moves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import add

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.lives import WorkerLife
from memwarden.find.analysis.model import ActionMarker, LifeSeries, RecycleMarker, SeriesPoint
from memwarden.find.analysis.records import RequestRecord

__all__ = ["LifeColumns", "LifeSignals", "Signal", "cumulative_blocks", "life_series",
           "life_signals"]

EXACT_KEY = "blocks_collected"
FULL_GC_KEY = "blocks_after_full_gc"
FULL_GC_COUNT_KEY = "gc_full_collections"
# Census keys that are not resources: memory totals the series already carry,
# and the garbage collector's own bookkeeping.
NOT_RESOURCES = frozenset({"blocks", "rss_bytes", "pss_bytes", "uss_bytes", EXACT_KEY,
                           FULL_GC_KEY, FULL_GC_COUNT_KEY})
# Shares of requests carrying a field before it is trusted as a series.
# 0.01: a reading every 100 requests (the blocks budget's widest gap; by default
# one in 16 while RSS stands still) is still a series of the live heap.
ABSOLUTE_BLOCKS_SHARE = 0.01
DELTA_BLOCKS_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Signal:
    """One measured series over request numbers (seq), after warm-up."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class LifeSignals:
    requests: int
    warmup: int  # requests left out at the start
    blocks: Signal | None
    blocks_source: str | None  # "blocks" (absolute) or "blocks_delta" (summed)
    heap_blocks: float | None  # absolute allocated blocks where the tested span starts
    rss: Signal | None
    census: dict[str, Signal]
    # The live heap after a collection, after warm-up: at each census that
    # collected first, and at each census that saw a new full collection.
    exact: Signal | None = None
    full_gc: Signal | None = None
    # Median requests between census lines (None: fewer than two).
    census_every: float | None = None

    @property
    def tested(self) -> int:
        return self.requests - self.warmup


@dataclass(frozen=True, slots=True)
class LifeColumns:
    """A life's requests as the columns its tests read, in seq order (None: absent).

    Judging builds these straight from a buffered life's arrays
    (``life_buffer.OpenLife.columns``), without a request object each.
    """

    seqs: Sequence[int]
    blocks: Sequence[float | None]
    blocks_delta: Sequence[float | None]
    rss_bytes: Sequence[float | None]
    census: Sequence[Mapping[str, float] | None]

    @classmethod
    def of(cls, requests: Sequence[RequestRecord]) -> LifeColumns:
        return cls([r.seq for r in requests], [r.blocks for r in requests],
                   [r.blocks_delta for r in requests], [r.rss_bytes for r in requests],
                   [r.census for r in requests])


def cumulative_blocks(requests: Sequence[RequestRecord]) -> tuple[list[float | None], str | None]:
    """Allocated blocks at each request, relative to the first; and which field gave them."""
    return _cumulative_blocks([r.blocks for r in requests], [r.blocks_delta for r in requests])


def _cumulative_blocks(blocks: Sequence[float | None], deltas: Sequence[float | None]
                       ) -> tuple[list[float | None], str | None]:
    n = len(blocks)
    if n == 0:
        return [], None
    absolute = n - blocks.count(None)
    if absolute >= ABSOLUTE_BLOCKS_SHARE * n:
        base = next(v for v in blocks if v is not None)
        return [v - base if v is not None else None for v in blocks], "blocks"
    counted = n - deltas.count(None)
    if counted >= DELTA_BLOCKS_SHARE * n:
        # total += delta or 0.0, request after request, from 0.0.
        totals: list[float | None] = list(accumulate([d or 0.0 for d in deltas], add,
                                                     initial=0.0))
        del totals[0]
        return totals, "blocks_delta"
    return [None] * n, None


def _heap_blocks(columns: LifeColumns, start: int) -> float | None:
    """The first absolute block count from ``start`` on: the request's own, or a census's."""
    blocks, censuses = columns.blocks, columns.census
    for index in range(start, len(blocks)):
        value = blocks[index]
        if value is not None:
            return value
        census = censuses[index]
        if census and "blocks" in census:
            return census["blocks"]
    return None


def _signal(xs: list[float], ys: list[float]) -> Signal | None:
    return Signal(tuple(xs), tuple(ys)) if xs else None


def _full_gc_samples(columns: LifeColumns, after_seq: float) -> tuple[list[float], list[float]]:
    """``blocks_after_full_gc`` where ``gc_full_collections`` moved, after ``after_seq``.

    The value was recorded by the collection itself, somewhere between this
    census and the one before; it is placed at this census.
    """
    xs: list[float] = []
    ys: list[float] = []
    seen: float | None = None
    for seq, census in zip(columns.seqs, columns.census, strict=True):
        if not census or FULL_GC_COUNT_KEY not in census:
            continue
        count = census[FULL_GC_COUNT_KEY]
        value = census.get(FULL_GC_KEY)
        if seen is not None and count > seen and value is not None and seq > after_seq:
            xs.append(seq)
            ys.append(value)
        seen = count
    return xs, ys


def _census_every(columns: LifeColumns) -> float | None:
    seqs = [seq for seq, census in zip(columns.seqs, columns.census, strict=True) if census]
    gaps = sorted(b - a for a, b in pairwise(seqs) if b > a)
    return float(gaps[len(gaps) // 2]) if gaps else None


def life_signals(life: WorkerLife | LifeColumns, config: AnalysisConfig) -> LifeSignals:
    """The tested series of a life (its requests, or their columns: the same signals)."""
    columns = LifeColumns.of(life.requests) if isinstance(life, WorkerLife) else life
    seqs = columns.seqs
    n = len(seqs)
    warmup = config.warmup_requests(n)
    blocks, source = _cumulative_blocks(columns.blocks, columns.blocks_delta)
    rss = columns.rss_bytes
    tested = range(warmup, n)
    bx: list[float] = [seqs[i] for i in tested if blocks[i] is not None]
    by = [value for value in blocks[warmup:] if value is not None]
    rx: list[float] = [seqs[i] for i in tested if rss[i] is not None]
    ry = [value for value in rss[warmup:] if value is not None]
    census: dict[str, tuple[list[float], list[float]]] = {}
    ex: list[float] = []
    ey: list[float] = []
    censuses = columns.census
    for index in tested:
        request_census = censuses[index]
        if not request_census:
            continue
        seq = seqs[index]
        collected = request_census.get(EXACT_KEY)
        if collected is not None:
            ex.append(seq)
            ey.append(collected)
        for kind, count in request_census.items():
            if kind in NOT_RESOURCES:
                continue
            xs, ys = census.setdefault(kind, ([], []))
            xs.append(seq)
            ys.append(count)
    return LifeSignals(
        requests=n,
        warmup=warmup,
        blocks=_signal(bx, by),
        blocks_source=source if bx else None,
        heap_blocks=_heap_blocks(columns, warmup),
        rss=_signal(rx, ry),
        census={kind: Signal(tuple(xs), tuple(ys)) for kind, (xs, ys) in census.items()},
        exact=_signal(ex, ey),
        full_gc=_signal(*_full_gc_samples(columns, seqs[warmup - 1] if warmup else 0)),
        census_every=_census_every(columns),
    )


def _evenly_spaced(indices: Sequence[int], limit: int) -> list[int]:
    if len(indices) <= limit:
        return list(indices)
    if limit <= 1:
        return [indices[-1]]
    step = (len(indices) - 1) / (limit - 1)
    return sorted({indices[round(k * step)] for k in range(limit)})


def life_series(life: WorkerLife, config: AnalysisConfig,
                recycles: tuple[RecycleMarker, ...],
                actions: tuple[ActionMarker, ...] = ()) -> LifeSeries:
    """The plotted points of one life: at most ``max_plot_points``.

    Half the budget goes to evenly spaced requests, half to evenly spaced
    census samples, so a census taken every 100 requests is never thinned
    away by the per-request points.
    """
    requests = life.requests
    blocks, _source = cumulative_blocks(requests)
    budget = config.max_plot_points // 2
    chosen = set(_evenly_spaced(range(len(requests)), budget))
    with_census = [i for i, r in enumerate(requests) if r.census]
    chosen.update(_evenly_spaced(with_census, budget))
    points = []
    for i in sorted(chosen):
        request = requests[i]
        census = dict(request.census) if request.census else None
        points.append(SeriesPoint(seq=request.seq, rss_bytes=request.rss_bytes,
                                  blocks=blocks[i], census=census))
    warmup = config.warmup_requests(len(requests))
    warmup_end = requests[warmup - 1].seq if 0 < warmup <= len(requests) else None
    return LifeSeries(pid=life.pid, life=life.index, warmup_end_seq=warmup_end,
                      points=tuple(points), recycles=recycles, actions=actions)
