"""Which route a census count follows: increments regressed on call counts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from memwarden.analysis.resources import census_route_fit


def test_census_fit_recovers_per_call_increments_under_noise() -> None:
    rng = random.Random(1)
    intervals = []
    for _ in range(60):
        calls = Counter({"GET /a": rng.randint(0, 10), "POST /b": rng.randint(0, 5),
                         "GET /c": rng.randint(0, 8)})
        delta = 3.0 * calls["POST /b"] + rng.uniform(-1, 1)
        intervals.append((calls, delta))
    fit = census_route_fit(intervals)
    assert fit["POST /b"] == pytest.approx(3.0, abs=0.2)
    assert abs(fit["GET /a"]) < 0.2 and abs(fit["GET /c"]) < 0.2


def test_census_fit_needs_more_intervals_than_routes() -> None:
    assert census_route_fit([(Counter({"GET /a": 1, "GET /b": 1}), 1.0)]) == {}
