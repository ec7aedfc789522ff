"""Which route a census count follows: increments regressed on call counts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from memwarden.find.analysis.fit import FAILED_SUFFIX, fit_routes, merge_failed
from memwarden.find.analysis.resources import census_route_fit


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


def test_failed_calls_fitted_apart_fold_back_into_their_route() -> None:
    """A leak on the error path: the failed calls carry it all; the route is reported."""
    rng = random.Random(2)
    intervals = []
    for _ in range(80):
        calls = Counter({"POST /orders": rng.randint(0, 4),
                         "POST /orders" + FAILED_SUFFIX: rng.randint(0, 2),
                         "GET /orders": rng.randint(0, 4)})
        intervals.append((calls, 170.0 * calls["POST /orders" + FAILED_SUFFIX]
                          + rng.uniform(-5, 5)))
    split = fit_routes(intervals)
    assert split is not None
    assert split.per_call["POST /orders" + FAILED_SUFFIX] == pytest.approx(170.0, rel=0.05)
    merged = merge_failed(split)
    assert set(merged.per_call) == {"POST /orders", "GET /orders"}
    failed, ok = split.calls["POST /orders" + FAILED_SUFFIX], split.calls["POST /orders"]
    assert merged.per_call["POST /orders"] == pytest.approx(170.0 * failed / (failed + ok),
                                                            rel=0.05)
    assert merged.calls["POST /orders"] == failed + ok
