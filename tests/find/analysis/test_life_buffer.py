"""A running life's buffer thins to the values a plain loop over its pairs gives."""

from __future__ import annotations

import math
from array import array
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from memwarden.find.analysis.life_buffer import OpenLife

NAN = math.nan


def _add(a: float, b: float) -> float:
    if a != a:
        return b
    if b != b:
        return a
    return a + b


def _thinned_one_pair_at_a_time(life: OpenLife) -> tuple[list[int], list[list[float]], list]:
    """The rule, pair by pair: a census outlives a plain request, deltas are summed."""
    cols = [list(col) for col in life.cols]
    n = len(life.seqs) // 2 * 2
    keep = []
    for i in range(0, n, 2):
        kept, gone = ((i, i + 1) if life.census[i] is not None and life.census[i + 1] is None
                      else (i + 1, i))
        for c in (3, 4):  # rss_delta_bytes, blocks_delta
            cols[c][kept] = _add(cols[c][kept], cols[c][gone])
        keep.append(kept)
    keep.extend(range(n, len(life.seqs)))
    return ([life.seqs[i] for i in keep], [[col[i] for i in keep] for col in cols],
            [life.census[i] for i in keep])


number = st.one_of(st.just(NAN), st.floats(-1e6, 1e6, allow_nan=False), st.just(-0.0))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(rows=st.lists(st.tuples(number, number, st.booleans()), min_size=2, max_size=60))
def test_thinning_gives_the_pairwise_rule(rows: list[tuple[float, float, bool]]) -> None:
    life = OpenLife(1, 1, 0)
    for seq, (rss_delta, blocks_delta, census) in enumerate(rows, start=1):
        life.seqs.append(seq)
        life.route_ids.append(seq % 3)
        for c, col in enumerate(life.cols):
            col.append(rss_delta if c == 3 else blocks_delta if c == 4 else float(seq * 10 + c))
        life.census.append({"threads": float(seq)} if census else None)
    seqs, cols, census = _thinned_one_pair_at_a_time(life)
    life._thin()
    assert list(life.seqs) == seqs and life.census == census
    assert list(life.route_ids) == [s % 3 for s in seqs]
    for got, want in zip(life.cols, cols, strict=True):
        assert [(v, math.copysign(1.0, v)) if v == v else "nan" for v in got] == \
            [(v, math.copysign(1.0, v)) if v == v else "nan" for v in want]
    assert isinstance(life.seqs, array) and all(isinstance(c, array) for c in life.cols)


# -- judging from the columns gives what judging the built requests gives -------------


census_entry = st.one_of(
    st.none(), st.just({}),
    st.fixed_dictionaries({"threads": st.integers(1, 4).map(float)},
                          optional={"fds": st.integers(10, 14).map(float),
                                    "blocks": st.floats(0, 1e5),
                                    "blocks_collected": st.floats(0, 1e5),
                                    "gc_full_collections": st.integers(0, 3).map(float),
                                    "blocks_after_full_gc": st.floats(0, 1e5)}))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(rows=st.lists(st.tuples(number, number, number, census_entry), min_size=1,
                     max_size=300),
       absolute=st.booleans(), shuffled=st.randoms(use_true_random=False))
def test_signals_of_the_columns_are_those_of_the_requests(
        rows: list[tuple[float, float, float, dict[str, float] | None]], absolute: bool,
        shuffled: Any) -> None:
    from memwarden.find.analysis.config import AnalysisConfig
    from memwarden.find.analysis.series import life_signals

    seqs = list(range(1, len(rows) + 1))
    if len(seqs) > 3:  # some requests logged out of seq order
        head = seqs[:4]
        shuffled.shuffle(head)
        seqs[:4] = head
    life = OpenLife(9, 2, 0)
    for seq, (rss, blocks, delta, census) in zip(seqs, rows, strict=True):
        life.add((seq, seq % 2, 200.0, 1.0, rss, NAN, delta, blocks if absolute else NAN,
                  NAN, NAN, census))
    config = AnalysisConfig()
    names = [("/a", "GET"), ("/b", None)]
    got = life_signals(life.columns(), config)
    for records in (False, True):
        want = life_signals(life.worker_life(names, records=records), config)
        assert repr(got) == repr(want)  # repr: -0.0 apart from 0.0 too
        assert got == want or "nan" in repr(got)


def test_a_judged_life_is_the_assessment_of_its_requests() -> None:
    import json

    from memwarden.find.analysis.config import AnalysisConfig
    from memwarden.find.analysis.judging import judge, judge_with_series
    from memwarden.find.analysis.outcomes import LifeOutcome
    from memwarden.find.analysis.series import life_series
    from memwarden.find.analysis.stream import StreamAnalysis
    from memwarden.find.analysis.verdict import assess_life

    from .synthetic import SyntheticWorker, linear_leak

    config = AnalysisConfig()
    workers = [SyntheticWorker(pid=21, seed=3).run(1200, linear_leak(900.0)),
               SyntheticWorker(pid=22, seed=4, full_gc_every=40).run(900),
               SyntheticWorker(pid=23, seed=5, log_absolute_blocks=False).run(700),
               SyntheticWorker(pid=24, seed=6, exact_census=True).run(600, linear_leak(300.0)),
               SyntheticWorker(pid=25, seed=7).run(40)]
    stream = StreamAnalysis(config)
    for records in workers:
        for record in records:
            stream.add(json.dumps(record).encode())
    names = stream.names.names
    assert len(stream.open) == len(workers)
    for life in stream.open.values():
        built = life.worker_life(names, records=False)
        assessment = assess_life(built, config)
        judged = judge(life, names, config)
        assert judged.outcome == LifeOutcome(assessment.verdict, assessment.conflicting,
                                             life.requests, life.order, built.label,
                                             assessment.reason)
        rss = [r.rss_bytes for r in built.requests if r.rss_bytes is not None]
        assert judged.summary.verdict == assessment.verdict
        assert judged.summary.reason == assessment.reason
        assert (judged.summary.rss_start_bytes, judged.summary.rss_end_bytes) == \
            (round(rss[0]), round(rss[-1]))
        want_series = life_series(built, config, judged.markers)
        assert judged.life_series(config) == want_series
        sent = judge_with_series(life, names, config, None)
        assert sent.life is None and sent.series == want_series
        assert sent.summary == judged.summary
