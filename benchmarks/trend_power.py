"""The trend rule's power and false alarms on synthetic series, old rule and new.

The trend rule (memwarden.find.analysis.trend) is judged on series whose
truth is known, in one run: the earlier rule (every window needs its own
trend test, ``TrendRule(level_lift=False)``) and the current one (a middle
window may instead show a significant lift of its level).

Power: a leak at twice the floor (floor 1 per point, slope 2) under AR(1)
noise with phi 0.5 and 0.8, the noise's deviation set so that each of the
four windows rises by ``rise`` noise deviations. False alarms: series that
do not leak, each "growing" counted: stationary AR(1) noise, allocator
high-water marks (the level is the running maximum of rare large
requests), warming caches (an exponential approach to a full cache), a
cache that fills and then stops, and a random walk. Seeds are fixed, so a
run repeats exactly.

Also measured, not used: trend-free prewhitening (TFPW, Yue et al. 2002)
in place of the variance correction, for one window's test (its false
alarms on AR(1) noise are several times the nominal 5%), and Theil-Sen over
all pairs in place of 6,000 random ones (the spread of a window's slope
barely moves, at several times the cost).

Run alone (``python benchmarks/trend_power.py``) or from detection.py.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

from memwarden.find.analysis import stats
from memwarden.find.analysis.noise import ar1
from memwarden.find.analysis.trend import MAX_TEST_POINTS, TrendRule, assess_trend

FLOOR = 1.0
OLD = TrendRule(FLOOR, level_lift=False)
NEW = TrendRule(FLOOR)
Series = Callable[[random.Random, int], list[float]]


def leak(phi: float, rise: float) -> Series:
    """Slope 2 (twice the floor); each of 4 windows rises ``rise`` noise deviations."""
    def make(rng: random.Random, n: int) -> list[float]:
        sd = 2.0 * FLOOR * n / 4.0 / rise
        return [2.0 * FLOOR * i + e for i, e in enumerate(ar1(rng, n, phi, sd))]
    return make


def noise(phi: float) -> Series:
    def make(rng: random.Random, n: int) -> list[float]:
        return ar1(rng, n, phi, 2.0 * FLOOR * n / 4.0)
    return make


def high_water(rng: random.Random, n: int) -> list[float]:
    # A rare large request raises the allocator's high-water mark when it
    # beats every earlier one: steps that come ever more rarely.
    level, out = 0.0, []
    for e in ar1(rng, n, 0.5, 0.1 * n):
        if rng.random() < 0.01:
            level = max(level, rng.expovariate(1.0) * n)
        out.append(level + e)
    return out


def warming_cache(rng: random.Random, n: int) -> list[float]:
    tau = rng.uniform(n / 8.0, n / 3.0)
    full = rng.uniform(2.0, 6.0) * FLOOR * n
    return [full * (1.0 - math.exp(-i / tau)) + e
            for i, e in enumerate(ar1(rng, n, 0.8, 0.1 * n))]


def fills_then_stops(rng: random.Random, n: int) -> list[float]:
    stop = rng.uniform(0.3, 0.7) * n
    rate = rng.uniform(2.0, 8.0) * FLOOR
    return [rate * min(i, stop) + e for i, e in enumerate(ar1(rng, n, 0.8, 0.1 * n))]


def random_walk(rng: random.Random, n: int) -> list[float]:
    y, out = 0.0, []
    for _ in range(n):
        y += rng.gauss(0.0, 0.5 * math.sqrt(n))
        out.append(y)
    return out


POWER: dict[str, Series] = {
    f"slope 2x floor, phi {phi}, rise {rise:g} sd/window": leak(phi, rise)
    for phi in (0.5, 0.8) for rise in (1.0, 2.0)
}
FALSE: dict[str, Series] = {
    "AR(1) noise, phi 0.5": noise(0.5),
    "AR(1) noise, phi 0.8": noise(0.8),
    "high-water marks": high_water,
    "warming cache": warming_cache,
    "cache fills, then stops": fills_then_stops,
    "random walk": random_walk,
}


@contextmanager
def earlier_trend_rule() -> Iterator[None]:
    """Every TrendRule built meanwhile defaults to the earlier rule (no level lift).

    For judging the same logs with both rules: analyze builds its rules
    deep inside, with the defaults. Not thread-safe: judge one log at a time.
    """
    init = TrendRule.__init__
    defaults = init.__defaults__
    assert defaults is not None and defaults[-1] is True
    init.__defaults__ = (*defaults[:-1], False)
    try:
        yield
    finally:
        init.__defaults__ = defaults


@dataclass(frozen=True)
class Rates:
    old: int
    new: int
    runs: int


def called(series: Series, n: int, runs: int, seed: int) -> Rates:
    """How many of ``runs`` seeded series each rule calls growing."""
    xs = [float(i) for i in range(n)]
    old = new = 0
    for k in range(runs):
        ys = series(random.Random(seed * 1_000_003 + k), n)
        old += assess_trend(xs, ys, OLD).state == "growing"
        new += assess_trend(xs, ys, NEW).state == "growing"
    return Rates(old, new, runs)


def seconds_per_call(n: int, rules: Sequence[TrendRule], calls: int = 10,
                     rounds: int = 3) -> list[float]:
    """Seconds per call of each rule: the best of ``rounds`` interleaved rounds.

    Interleaved and the best round kept, so that load from other processes
    on a shared machine falls on both rules alike and mostly drops out.
    """
    xs = [float(i) for i in range(n)]
    ys = leak(0.8, 1.0)(random.Random(7), n)
    best = [math.inf] * len(rules)
    for _ in range(rounds):
        for k, rule in enumerate(rules):
            started = time.perf_counter()
            for _ in range(calls):
                assess_trend(xs, ys, rule)
            best[k] = min(best[k], (time.perf_counter() - started) / calls)
    return best


def theil_sen_sampling(m: int = 512, runs: int = 20) -> tuple[float, float, float, float]:
    """Slope spread and seconds per fit: 6,000 random pairs against all pairs.

    On one window of ``m`` points of the phi 0.8 leak, where a slope decides
    whether the window reaches half the floor.
    """
    sampled, exact, t_sampled, t_exact = [], [], 0.0, 0.0
    xs = [float(i) for i in range(m)]
    keep = stats.MAX_PAIRS
    try:
        for k in range(runs):
            ys = leak(0.8, 1.0)(random.Random(k), 4 * m)[:m]
            started = time.perf_counter()
            fit = stats.theil_sen(xs, ys)
            t_sampled += time.perf_counter() - started
            stats.MAX_PAIRS = m * m
            started = time.perf_counter()
            full = stats.theil_sen(xs, ys)
            t_exact += time.perf_counter() - started
            stats.MAX_PAIRS = keep
            assert fit is not None and full is not None
            sampled.append(fit.slope)
            exact.append(full.slope)
    finally:
        stats.MAX_PAIRS = keep
    return (statistics.pstdev(sampled), statistics.pstdev(exact),
            t_sampled / runs, t_exact / runs)


def tfpw_z(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Mann-Kendall z after trend-free prewhitening (Yue et al. 2002), no correction.

    Detrend with the Theil-Sen slope, remove the lag-1 autocorrelation of
    what is left, add the trend back, and test as if the points were
    independent.
    """
    fit = stats.theil_sen(xs, ys)
    assert fit is not None
    detrended = [y - fit.slope * x for x, y in zip(xs, ys, strict=True)]
    mean = math.fsum(detrended) / len(detrended)
    centred = [d - mean for d in detrended]
    r1 = (math.fsum(a * b for a, b in pairwise(centred))
          / math.fsum(c * c for c in centred))
    white = [detrended[t] - r1 * detrended[t - 1] + fit.slope * xs[t]
             for t in range(1, len(xs))]
    s = stats._mann_kendall_s(white)
    return (s - math.copysign(1.0, s)) / math.sqrt(stats._mann_kendall_variance(white)) \
        if s else 0.0


def one_window_tests(runs: int) -> None:
    """One window's test at z >= 1.645: the corrected Mann-Kendall against TFPW."""
    print("one window's trend test at z >= 1.645 (nominal 5% false alarms): "
          "variance correction (used) against TFPW (not used)")
    print(f"  {'window':<24}{'false alarms':<28}{'power, slope 2x floor':<28}")
    for m in (100, 512):
        for phi in (0.5, 0.8):
            xs = [float(i) for i in range(m)]
            counts = {0.0: [0, 0], 2.0: [0, 0]}
            for slope, tally in counts.items():
                for k in range(runs):
                    noise_m = ar1(random.Random(k * 7 + 1), m, phi, 2.0 * FLOOR * m)
                    ys = [slope * FLOOR * i + e for i, e in enumerate(noise_m)]
                    fit = stats.theil_sen(xs, ys)
                    tally[0] += fit is not None and fit.z >= 1.645
                    tally[1] += tfpw_z(xs, ys) >= 1.645
            (c0, t0), (c2, t2) = counts[0.0], counts[2.0]
            print(f"  {f'{m} points, phi {phi}':<24}"
                  f"{f'{100 * c0 / runs:.0f}% vs TFPW {100 * t0 / runs:.0f}%':<28}"
                  f"{f'{100 * c2 / runs:.0f}% vs TFPW {100 * t2 / runs:.0f}%':<28}")


def calibration(runs: int) -> None:
    """On stationary AR(1) noise: how often a window's test and a level lift fire.

    A window's own test at z >= 1.645 should fire in 5% of windows, a lift
    of a middle window at z >= 3 in 0.13%.
    """
    print("on stationary AR(1) noise: windows at z >= 1.645 (nominal 5%), "
          "middle-window lifts >= 3 (nominal 0.13%)")
    for n in (120, 400, 2048):
        # The windows' own tests run on the points the rule tests: a series
        # longer than MAX_TEST_POINTS is first reduced to bin medians.
        size = -(-n // MAX_TEST_POINTS)
        cells = []
        for phi in (0.5, 0.8, 0.9):
            fired = lifted = windows = middles = 0
            for k in range(runs):
                ys = ar1(random.Random(k * 13 + 5), n, phi, 100.0)
                trend = assess_trend([float(i) for i in range(n)], ys, NEW)
                lifted += sum(lift >= 3.0 for lift in trend.window_lifts[1:-1])
                middles += len(trend.window_lifts[1:-1])
                pts = [statistics.median(ys[i:i + size]) for i in range(0, n, size)]
                for w in range(4):
                    part = pts[w * len(pts) // 4:(w + 1) * len(pts) // 4]
                    fit = stats.theil_sen([float(i) for i in range(len(part))], part)
                    fired += fit is not None and fit.z >= 1.645
                    windows += 1
            cells.append(f"phi {phi}: {100 * fired / windows:.1f}% / {100 * lifted / middles:.2f}%")
        print(f"  {n:>5} points  " + "   ".join(cells))


def _share(count: int, runs: int) -> str:
    return f"{count}/{runs} ({100.0 * count / runs:.0f}%)"


def report(runs: int, lengths: Sequence[int] = (2048, 400)) -> dict[str, str]:
    """Print the tables; return the summary keys for the last line."""
    started = time.monotonic()
    header = f"  {'series':<44}{'n':>6}  {'old rule':<16}{'new rule':<16}"
    print(f"trend rule on synthetic series ({runs} seeded series each, floor {FLOOR:g}/point, "
          f"4 windows)")
    print("called 'growing' when it leaks (power)")
    print(header)
    power: dict[tuple[str, int], Rates] = {}
    for seed, (name, series) in enumerate(POWER.items(), start=1):
        for n in lengths:
            rates = power[name, n] = called(series, n, runs, seed)
            print(f"  {name:<44}{n:>6}  {_share(rates.old, runs):<16}"
                  f"{_share(rates.new, runs):<16}")
    print("called 'growing' when it does not leak (false leaks)")
    print(header)
    false_old = false_new = false_runs = 0
    for seed, (name, series) in enumerate(FALSE.items(), start=100):
        for n in lengths:
            rates = called(series, n, runs, seed)
            false_old, false_new = false_old + rates.old, false_new + rates.new
            false_runs += runs
            print(f"  {name:<44}{n:>6}  {_share(rates.old, runs):<16}"
                  f"{_share(rates.new, runs):<16}")
    old_s, new_s = seconds_per_call(lengths[0], (OLD, NEW))
    print(f"cost: {1000 * old_s:.1f} ms per {lengths[0]}-point series (old), "
          f"{1000 * new_s:.1f} ms (new)")
    sd_sampled, sd_exact, t_sampled, t_exact = theil_sen_sampling()
    print(f"Theil-Sen on a 512-point window: slope sd {sd_sampled:.3f} with 6,000 random "
          f"pairs ({1000 * t_sampled:.1f} ms), {sd_exact:.3f} with all pairs "
          f"({1000 * t_exact:.1f} ms)")
    one_window_tests(2 * runs)
    calibration(runs)
    print(f"synthetic part: {time.monotonic() - started:.0f} s")
    n = lengths[0]
    phi5 = power[next(k for k in POWER if "phi 0.5, rise 1 " in k), n]
    phi8 = power[next(k for k in POWER if "phi 0.8, rise 1 " in k), n]
    old_total, new_total = phi5.old + phi8.old, phi5.new + phi8.new
    return {
        "trend_power_phi05_old": f"{phi5.old / runs:.2f}",
        "trend_power_phi05_new": f"{phi5.new / runs:.2f}",
        "trend_power_phi08_old": f"{phi8.old / runs:.2f}",
        "trend_power_phi08_new": f"{phi8.new / runs:.2f}",
        "trend_false_leaks_old": f"{false_old}/{false_runs}",
        "trend_false_leaks_new": f"{false_new}/{false_runs}",
        "trend_power_ratio": f"{new_total / old_total:.2f}" if old_total else "inf",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="seeded series per scenario")
    args = parser.parse_args(argv)
    keys = report(args.runs)
    print(" ".join(f"{k}={v}" for k, v in keys.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
