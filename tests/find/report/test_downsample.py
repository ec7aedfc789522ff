"""Min-max thinning: a budget, the ends, and every bucket's extremes."""

from __future__ import annotations

import random

from memwarden.find.report.downsample import minmax_indices


def test_short_series_are_kept_whole() -> None:
    assert minmax_indices([[1.0, 2.0, 3.0]], 10) == [0, 1, 2]
    assert minmax_indices([], 10) == []


def test_budget_ends_and_global_extremes_are_kept() -> None:
    rng = random.Random(1)
    rss: list[float | None] = [rng.uniform(0, 1) for _ in range(10_000)]
    blocks: list[float | None] = [rng.uniform(0, 1) for _ in range(10_000)]
    rss[4321] = 50.0
    blocks[777] = -50.0
    kept = minmax_indices([rss, blocks], 600)
    assert len(kept) <= 600
    assert kept == sorted(set(kept))
    assert kept[0] == 0 and kept[-1] == 9999
    assert 4321 in kept and 777 in kept


def test_gaps_are_skipped_not_chosen_as_extremes() -> None:
    values: list[float | None] = [None if i % 2 else float(i % 7) for i in range(1000)]
    kept = minmax_indices([values], 50)
    assert len(kept) <= 50
    assert all(values[i] is not None for i in kept[1:-1])


def test_tiny_budgets() -> None:
    assert minmax_indices([[1.0] * 100], 1) == [99]
    assert minmax_indices([[1.0] * 100], 0) == []
    assert minmax_indices([[float(i) for i in range(100)]], 2) == [0, 99]
