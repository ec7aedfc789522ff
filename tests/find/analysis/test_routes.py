"""Route regression: per-call costs, trimmed against collections and spikes."""

from __future__ import annotations

from memwarden.find.analysis.lives import split_lives
from memwarden.find.analysis.records import RequestRecord
from memwarden.find.analysis.routes import block_deltas, route_costs, route_effects


def test_block_deltas_fall_back_to_absolute_differences() -> None:
    requests = [RequestRecord(1, 1, "/x", blocks=100.0), RequestRecord(1, 2, "/x", blocks=130.0),
                RequestRecord(1, 3, "/x", blocks_delta=-5.0, blocks=125.0)]
    assert block_deltas(requests) == [None, 30.0, -5.0]


def test_delta_after_a_collecting_census_starts_from_the_census() -> None:
    """The census collects garbage after the request's own reading; the next
    request's delta must not carry that drop."""
    requests = [RequestRecord(1, 1, "/x", blocks=1000.0, blocks_delta=5.0,
                              census={"blocks_collected": 900.0, "blocks": 905.0}),
                RequestRecord(1, 2, "/x", blocks=910.0, blocks_delta=-90.0)]
    assert block_deltas(requests) == [5.0, 5.0]


def test_route_effects_trim_a_collection_landing_in_a_quiet_route() -> None:
    records = []
    for seq in range(1, 401):
        route = "/leaky" if seq % 2 else "/quiet"
        delta = 20.0 if route == "/leaky" else 0.0
        if seq == 200:
            delta = -50_000.0  # a full collection runs inside one quiet request
        records.append(RequestRecord(1, seq, route, method="GET", blocks_delta=delta))
    life = split_lives(records).lives[0]
    effects = {e.route: e for e in route_effects([(life, 40)])}
    assert effects["GET /leaky"].blocks_per_call == 20.0
    assert effects["GET /quiet"].blocks_per_call == 0.0


def test_route_cost_table() -> None:
    records = [RequestRecord(1, i, "/x", method="GET", status=500 if i == 3 else 200,
                             duration_ms=2.0, rss_delta_bytes=4096.0 * (i % 2), blocks_delta=1.0)
               for i in range(1, 11)]
    (cost,) = route_costs(split_lives(records).lives)
    assert (cost.route, cost.count, cost.failed) == ("GET /x", 10, 1)
    assert cost.mean_rss_delta_bytes == 2048.0 and cost.median_rss_delta_bytes == 2048.0
    assert cost.mean_blocks_delta == 1.0 and cost.mean_duration_ms == 2.0
