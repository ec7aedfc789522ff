"""The thresholds of the analysis, in one place.

The defaults favour silence over false alarms: a benchmark of no-leak runs
must see no "leak" verdict, while a leak of ~10 KB per request still shows
within a few hundred requests.
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

    def requests_needed(self) -> int:
        """The smallest life that leaves ``min_requests`` after warm-up."""
        n = self.min_requests
        while n - self.warmup_requests(n) < self.min_requests:
            n += 1
        return n
