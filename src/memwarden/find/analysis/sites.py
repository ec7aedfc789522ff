"""Allocation-site suspects from tracemalloc snapshot diffs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.model import Suspect
from memwarden.find.analysis.records import AllocationWindow
from memwarden.find.analysis.stats import median
from memwarden.find.analysis.units import format_signed_bytes

__all__ = ["allocation_suspects"]


def allocation_suspects(windows: Sequence[AllocationWindow],
                        config: AnalysisConfig) -> list[Suspect]:
    """Sites whose tracemalloc diff keeps growing, per request of each window.

    Each ``allocation_sites`` line is read as the diff of two snapshots taken
    ``window_requests`` requests apart in one worker.
    """
    rates: dict[str, list[tuple[float, float, AllocationWindow, float]]] = {}
    for window in windows:
        for diff in window.sites:
            rates.setdefault(diff.site, []).append(
                (diff.size_diff_bytes / window.window_requests,
                 diff.count_diff / window.window_requests, window, diff.size_diff_bytes))
    total = len(windows)
    suspects = []
    for site, seen in rates.items():
        byte_rates = [rate for rate, _count, _window, _size in seen]
        positive = sum(1 for rate in byte_rates if rate > 0)
        bytes_per_request = median(byte_rates)
        latest_rate, _latest_count, latest_window, latest_size = seen[-1]
        if bytes_per_request < config.site_min_bytes_per_request or latest_rate <= 0 \
                or positive < 0.75 * len(seen):
            continue
        appearances = len(seen)
        confidence = (positive / appearances) * (1 - 0.5 ** appearances) \
            * math.sqrt(appearances / total)
        evidence = (f"{site}: {format_signed_bytes(bytes_per_request)}/request in {positive} of "
                    f"{appearances} tracemalloc windows (latest {format_signed_bytes(latest_size)}"
                    f" over {latest_window.window_requests} requests in pid {latest_window.pid})")
        per_request = median([count for _rate, count, _window, _size in seen])
        suspects.append(Suspect("allocation", site, per_request, round(bytes_per_request),
                                confidence, evidence))
    return suspects
