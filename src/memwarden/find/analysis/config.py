"""The thresholds of the analysis, in one place.

The defaults favour silence over false alarms: a benchmark of no-leak runs
must see no "leak" verdict, while a leak of ~10 KB per request still shows
within a few hundred requests (within ~150 when the census counts the live
heap after a collection, ``MEMWARDEN_CENSUS_COLLECT=1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["AnalysisConfig"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """Thresholds for the verdict and the suspects. All are per worker life."""

    # Warm-up: the first requests of a life fill caches, import lazily and
    # grow allocator arenas. The larger of the fraction and the minimum is
    # left out of every trend.
    warmup_fraction: float = 0.10
    warmup_min_requests: int = 20
    # Requests after warm-up before a life can be judged (4 windows of 30).
    min_requests: int = 120
    windows: int = 4
    # Allocated blocks per request below which growth is not called a leak.
    # Garbage waiting in the oldest GC generation grows a worker by a block or
    # so per request until the next full collection (measured: ~0.5 in a small
    # Flask app); a leak worth chasing is well above it.
    min_blocks_per_request: float = 4.0
    # Garbage that survives into the oldest GC generation is only freed by a
    # full collection, which CPython runs once the objects promoted since the
    # last one exceed a quarter of the long-lived ones. Until then the heap
    # ramps up exactly like a leak (measured: ~4 blocks/request for 2000+
    # requests in a trivial Flask app). Block growth within this share of the
    # heap is therefore not called a leak on its own.
    garbage_allowance: float = 0.25
    # The live heap after a full collection (census ``blocks_collected``, or
    # ``blocks_after_full_gc`` sampled at each full collection) holds no
    # garbage, so a steady rise is a leak without any garbage allowance: a
    # rise of this many blocks per request in every window (warm-up adds ~1
    # block/request for the first few hundred requests)...
    exact_min_blocks_per_request: float = 2.0
    # ...or of this many, in a life long enough for warm-up to be over...
    exact_long_run_blocks_per_request: float = 1.0
    exact_long_run_requests: int = 1000
    # ...that does not slow down, and that outgrows warm-up: what a clean app
    # adds after the warm-up window. Measured under gunicorn and the soak:
    # 260-610 blocks over the first 300 requests of clean Flask apps (~1
    # block/request at first: lazy imports, first calls of rare routes,
    # caches of the app, the server and the interpreter), up to ~2,000 with a
    # small bounded cache still filling. Steady growth short of it is "run
    # longer", never "leak".
    exact_warmup_allowance_blocks: float = 2000.0
    # Bigger apps warm up more (more modules to import lazily, more caches):
    # the allowance is at least this share of the live heap.
    exact_warmup_heap_share: float = 0.015
    # ...and past this many times the series' own wobble (the robust spread of
    # its points around the trend): under threads, the requests in flight at a
    # census hold hundreds of blocks that come and go.
    exact_noise_multiple: float = 5.0
    # Blocks per call for a route to be named from the live heap: warm-up
    # spreads a block or so per call over every route.
    exact_route_min_blocks_per_call: float = 2.0
    # A leak of large objects (a 64 KiB buffer is ONE allocated block) rises
    # slowly in blocks: this many per request in every window is a leak when
    # RSS grows in every window too.
    exact_large_objects_blocks_per_request: float = 0.5
    # RSS must then grow this much per request, and this much per new block:
    # large objects, not small ones beside an allocator high-water climb.
    exact_large_objects_rss_bytes_per_request: float = 16 * 1024.0
    exact_large_objects_bytes_per_block: float = 4096.0
    # Steps up per window: a leak keeps adding, a lazy import adds once.
    exact_min_rises: int = 3
    # Requests after warm-up before the live heap may decide (it also needs
    # ``windows`` x 5 census points: a census every 5 requests or more often).
    exact_min_requests: int = 100
    # The plateau test (analysis.plateau): after warm-up, a live heap whose rate
    # settles at a positive level is a leak, not a cache that filled. It looks
    # from this many requests after warm-up on ("inconclusive" when the last
    # half still rises)...
    steady_check_min_requests: int = 600
    # ...and calls a leak from this many on: clean Flask apps under gunicorn
    # still add a trickle of 0.3-0.6 blocks/request up to ~1,000 requests of a
    # worker (caches of the server and the framework filling from unique
    # URLs and users), under 0.1 past ~1,500 (measured by bench-recall's traps)...
    steady_min_requests: int = 1200
    # ...and a settled rate of at least this many blocks per request...
    steady_min_blocks_per_request: float = 0.4
    # ...or of this many when RSS grows in every window too.
    steady_min_blocks_with_rss: float = 0.25
    # Full collections seen after warm-up before their series may decide.
    full_gc_min_samples: int = 4
    # RSS trend floor when RSS only supports the verdict.
    rss_support_bytes_per_request: float = 1024.0
    # RSS alone (no block counts, or blocks flat) calls a leak only past both
    # of these: allocator high-water marks add a few MiB in runs without one.
    rss_only_bytes_per_request: float = 4096.0
    rss_only_min_growth_bytes: float = 16 * MIB
    # Census counts (threads, fds, children...): slope and total rise floors.
    resource_per_request: float = 0.01
    resource_min_growth: float = 3.0
    # Census points needed before a resource count may decide the verdict.
    resource_min_points: int = 6
    children_pss_bytes_per_request: float = 16 * 1024.0
    # gc.<type> census counts.
    type_per_request: float = 0.5
    type_min_growth: float = 50.0
    # Route attribution: blocks per call and the t statistic to name a route.
    route_min_blocks_per_call: float = 1.0
    route_min_t: float = 3.0
    # Allocation sites: bytes per request below which a site is not named.
    site_min_bytes_per_request: float = 64.0
    max_suspects: int = 20
    max_plot_points: int = 2000

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not value >= 0:
                raise ValueError(f"AnalysisConfig.{spec.name} must be >= 0, got {value!r}")
        if not 0.0 <= self.warmup_fraction < 0.5:
            raise ValueError("AnalysisConfig.warmup_fraction must be in [0, 0.5)")
        if self.windows < 2:
            raise ValueError("AnalysisConfig.windows must be at least 2")
        for name in ("min_blocks_per_request", "rss_support_bytes_per_request",
                     "exact_min_blocks_per_request", "exact_long_run_blocks_per_request",
                     "exact_large_objects_blocks_per_request",
                     "exact_large_objects_rss_bytes_per_request",
                     "exact_large_objects_bytes_per_block",
                     "steady_min_blocks_per_request", "steady_min_blocks_with_rss",
                     "rss_only_bytes_per_request", "resource_per_request",
                     "children_pss_bytes_per_request", "type_per_request"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AnalysisConfig.{name} must be positive")
        if self.max_plot_points < 10:
            raise ValueError("AnalysisConfig.max_plot_points must be at least 10")

    def warmup_requests(self, requests: int) -> int:
        """How many of a life's first requests are warm-up."""
        return min(requests, max(self.warmup_min_requests,
                                 math.ceil(requests * self.warmup_fraction)))

    def requests_needed(self, tested: int | None = None) -> int:
        """The smallest life that leaves ``tested`` (default ``min_requests``) after warm-up."""
        want = self.min_requests if tested is None else tested
        n = want
        while n - self.warmup_requests(n) < want:
            n += 1
        return n
