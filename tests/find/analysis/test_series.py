"""Series: which block count is trusted, and what warm-up leaves out."""

from __future__ import annotations

from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.lives import split_lives
from memwarden.find.analysis.records import RequestRecord
from memwarden.find.analysis.series import cumulative_blocks, life_signals


def test_absolute_blocks_are_preferred_over_summed_deltas() -> None:
    # Overlapping requests each count the other's allocations in their delta.
    requests = [RequestRecord(1, i, "/x", blocks=1000.0 + i, blocks_delta=10.0)
                for i in range(1, 6)]
    values, source = cumulative_blocks(requests)
    assert source == "blocks" and values == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_deltas_are_summed_when_absolute_counts_are_missing() -> None:
    requests = [RequestRecord(1, i, "/x", blocks_delta=2.0) for i in range(1, 4)]
    assert cumulative_blocks(requests) == ([2.0, 4.0, 6.0], "blocks_delta")
    assert cumulative_blocks([RequestRecord(1, 1, "/x")]) == ([None], None)


def test_warm_up_is_left_out_of_every_signal() -> None:
    requests = [RequestRecord(1, i, "/x", rss_bytes=float(i), blocks=float(i),
                              census={"fds": 3.0, "blocks": 9.0} if i % 10 == 0 else None)
                for i in range(1, 301)]
    signals = life_signals(split_lives(requests).lives[0], AnalysisConfig())
    assert signals.warmup == 30 and signals.tested == 270
    assert signals.rss is not None and signals.rss.xs[0] == 31
    assert signals.blocks is not None and signals.blocks_source == "blocks"
    assert list(signals.census) == ["fds"]  # the census's own block count is not a resource
    assert signals.census["fds"].xs[0] == 40


def test_absolute_blocks_read_on_every_nth_request_are_a_series() -> None:
    # MEMWARDEN_BLOCKS_EVERY=16 on a quiet heap (the default), or the blocks
    # budget at its widest gap (99): one line in 16, or in 100, carries blocks.
    for every in (16, 100):
        requests = [RequestRecord(1, i, "/x", blocks=float(i) if i % every == 1 else None)
                    for i in range(1, 1001)]
        values, source = cumulative_blocks(requests)
        assert source == "blocks"
        assert values[every] == float(every) and values[1] is None
