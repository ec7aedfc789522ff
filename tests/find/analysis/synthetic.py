"""Synthetic memwarden logs from realistic noise models.

A worker is simulated request by request: the Python heap (allocated
blocks, ~64 bytes each) moves with zero-sum allocator noise, RSS follows the
heap in whole pages with page jitter and the allocator's high-water steps,
and a census is taken every few requests. Scenarios add leaks, caches,
spikes and lazy imports on top.

With ``exact_census`` the census also carries the live heap after a
collection (``blocks_collected``), as under ``MEMWARDEN_CENSUS_COLLECT=1``:
the kept blocks, plus what the requests in flight hold at that moment, plus
a warm-up that decays over a few hundred requests (measured in a clean Flask
app under gunicorn: ~270 blocks, ~1 block/request at first).
``full_gc_every`` instead simulates CPython's own full collections, seen by
the census as ``gc_full_collections`` and ``blocks_after_full_gc``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from memwarden.find.analysis.noise import ar1 as ar1  # the one AR(1) generator

PAGE = 4096
MIB = 1024 * 1024
BYTES_PER_BLOCK = 64


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    weight: float = 1.0
    leak_bytes: float = 0.0  # retained per call
    census_per_call: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


DEFAULT_ROUTES = (Route("GET", "/items/{id}", 3.0), Route("POST", "/chat", 1.0),
                  Route("GET", "/health", 1.0))

# Extra effects of one request: (blocks kept, bytes kept) on top of the route's.
Effect = Callable[[int], tuple[float, float]]


@dataclass
class SyntheticWorker:
    pid: int = 4121
    seed: int = 0
    routes: Sequence[Route] = DEFAULT_ROUTES
    blocks_noise: float = 50.0
    hwm_total_bytes: float = 3 * MIB
    census_every: int = 10
    census_base: dict[str, float] = field(default_factory=lambda: {
        "threads": 3, "fds": 14, "children": 0, "asyncio.tasks": 1, "asyncio.loops": 1,
        "sessions": 5})
    log_absolute_blocks: bool = True
    rss_base: float = 80 * MIB
    blocks_base: float = 130_000.0
    exact_census: bool = False
    inflight_blocks: float = 50.0   # live blocks of requests in flight at a census: 0..this
    warmup_blocks: float = 270.0    # live-heap warm-up of a clean app...
    warmup_span: float = 150.0      # ...decaying over about this many requests
    full_gc_every: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.seq = 0
        self.kept_blocks = 0.0
        self.kept_bytes = 0.0
        self.hwm = 0.0
        self.noise = 0.0
        self.census = dict(self.census_base)
        self.blocks = self.blocks_base
        self.rss = self.rss_base
        self.full_collections = 0
        self.after_full_gc: float | None = None

    def request(self, route: Route | None = None, *, extra_blocks: float = 0.0,
                extra_bytes: float = 0.0, transient_blocks: float = 0.0) -> dict[str, Any]:
        rng = self.rng
        if route is None:
            route = rng.choices(list(self.routes), [r.weight for r in self.routes])[0]
        self.seq += 1
        self.kept_blocks += route.leak_bytes / BYTES_PER_BLOCK + extra_blocks
        self.kept_bytes += route.leak_bytes + extra_bytes
        # Zero-sum noise: the heap wobbles around its true size, never drifts.
        self.noise = rng.uniform(-self.blocks_noise, self.blocks_noise)
        blocks = self.blocks_base + self.kept_blocks + self.noise + transient_blocks
        if self.hwm < self.hwm_total_bytes and rng.random() < 0.02:
            self.hwm += rng.randint(16, 128) * PAGE
        heap_pages = -(-self.kept_bytes // PAGE)
        rss = self.rss_base + heap_pages * PAGE + self.hwm + rng.randint(-2, 2) * PAGE
        for kind, per_call in route.census_per_call.items():
            self.census[kind] = self.census.get(kind, 0) + per_call
        line: dict[str, Any] = {
            "timestamp": "2026-11-28T01:02:03.456Z", "level": "INFO",
            "logger": "memwarden.request", "message": "request",
            "request_id": f"r{self.pid}-{self.seq}", "pid": self.pid, "seq": self.seq,
            "method": route.method, "route": route.path,
            "status": 200, "duration_ms": round(rng.uniform(2, 40), 3),
            "rss_bytes": int(rss), "rss_delta_bytes": int(rss - self.rss),
            "blocks_delta": round(blocks - self.blocks),
        }
        if self.log_absolute_blocks:
            line["blocks"] = round(blocks)
        if self.full_gc_every and self.seq % self.full_gc_every == 0:
            self.full_collections += 1
            self.after_full_gc = self.live_heap()
        if self.seq == 1 or self.seq % self.census_every == 0:
            census: dict[str, float] = dict(self.census)
            if self.exact_census:
                self.full_collections += 1  # collecting first is a full collection
                self.after_full_gc = census["blocks_collected"] = self.live_heap()
            if self.exact_census or self.full_gc_every:
                census["gc_full_collections"] = self.full_collections
                if self.after_full_gc is not None:
                    census["blocks_after_full_gc"] = self.after_full_gc
            line["census"] = census
        self.blocks, self.rss = blocks, rss
        return line

    def live_heap(self) -> float:
        """The live heap right after a collection: what a census with collect=1 sees."""
        warm = self.warmup_blocks * (1.0 - math.exp(-self.seq / self.warmup_span))
        return round(self.blocks_base + self.kept_blocks + warm
                     + self.rng.uniform(0.0, self.inflight_blocks))

    def run(self, requests: int, effect: Effect | None = None,
            route: Route | None = None) -> list[dict[str, Any]]:
        out = []
        for i in range(requests):
            kept_blocks, kept_bytes = effect(i) if effect is not None else (0.0, 0.0)
            out.append(self.request(route, extra_blocks=kept_blocks, extra_bytes=kept_bytes))
        return out


def to_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    return [json.dumps(record) for record in records]


def linear_leak(bytes_per_request: float) -> Effect:
    return lambda _i: (bytes_per_request / BYTES_PER_BLOCK, bytes_per_request)


def cache_fill(keys: int, blocks_per_key: float = 100.0) -> Effect:
    """A cache that gains one entry per request until it holds ``keys`` entries."""
    return lambda i: (blocks_per_key, blocks_per_key * BYTES_PER_BLOCK) if i < keys else (0, 0)


def random_key_cache(keys: int, share: float, blocks_per_key: float, seed: int = 0) -> Effect:
    """A cache over ``keys`` random keys, hit by ``share`` of the requests: it fills
    ever more slowly (each hit is less likely to bring a new key) and stops."""
    rng = random.Random(seed)
    seen: set[int] = set()

    def effect(_i: int) -> tuple[float, float]:
        if rng.random() < share:
            key = rng.randrange(keys)
            if key not in seen:
                seen.add(key)
                return blocks_per_key, blocks_per_key * BYTES_PER_BLOCK
        return 0.0, 0.0
    return effect


def lazy_imports(first: int = 5, blocks: float = 20_000.0, rss_bytes: float = 5 * MIB) -> Effect:
    return lambda i: (blocks / first, rss_bytes / first) if i < first else (0.0, 0.0)


def recycle_line(pid: int, reason: str = "max_requests", requests: int = 0) -> dict[str, Any]:
    return {"timestamp": "2026-11-28T01:02:04.000Z", "level": "INFO",
            "logger": "memwarden.recycle", "message": "recycle", "pid": pid,
            "reason": reason, "footprint_bytes": 200 * MIB, "limit_bytes": 256 * MIB,
            "requests": requests}


def allocation_line(pid: int, seq: int, window: int,
                    sites: Sequence[tuple[str, int, int]]) -> dict[str, Any]:
    return {"timestamp": "2026-11-28T01:02:04.000Z", "level": "INFO",
            "logger": "memwarden.tracemalloc", "message": "allocation_sites", "pid": pid,
            "seq": seq, "window_requests": window,
            "sites": [{"site": s, "size_diff_bytes": size, "count_diff": count}
                      for s, size, count in sites]}
