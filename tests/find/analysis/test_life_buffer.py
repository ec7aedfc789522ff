"""A running life's buffer thins to the values a plain loop over its pairs gives."""

from __future__ import annotations

import math
from array import array

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
