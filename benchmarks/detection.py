"""Detection power: how soon a leak is called "leak", and how often a clean run is.

Every run is real: a small Flask app under gunicorn (one sync worker) on
127.0.0.1, driven by memwarden's soak through ``memwarden.find.audit.run_audit``,
with the census counting the live heap after a collection every 5 requests
(``MEMWARDEN_CENSUS_COLLECT=1``) and allocated blocks read as production
reads them (``MEMWARDEN_BLOCKS_EVERY``, the library's default unless
``--blocks-every`` says otherwise; an audit of one's own reads them on every
request). The app keeps 1 KB, 10 KB or 100 KB per
request (records of ~100-byte strings, the way session and context data
pile up) or nothing; around that it does what real apps do and what fools
memory tests: temporary work of random size, a rare report that raises the
allocator's high-water mark by tens of MiB, a cache over a bounded key space
that fills and stops, a lazy import on a rare route. Seeds, traffic mix,
concurrency and the app's sizes differ on every run.

Each run's log is cut into growing prefixes (every ``--step`` requests) and
each prefix is judged three ways on the same lines:

- memwarden: ``memwarden.find.analysis.analyze_lines`` says "leak";
- baseline A: last-minus-first RSS above 10 MiB or 10% of the first RSS;
- baseline B: an ordinary least-squares slope of RSS against request number,
  positive at p < 0.05 (one-sided; normal approximation of the t statistic,
  which is close at the 50+ points of every prefix).

"Requests to detect" is the first prefix called a leak (median over the
runs of a size); a false leak is a no-leak run called a leak at any prefix.

Then the trend rule alone, old and new, on synthetic series of known truth
(trend_power.py): how often a leak at twice the floor under AR(1) noise is
called growing, and how often series that do not leak are (AR(1) noise,
high-water marks, warming caches, a cache that stops, a random walk).

The last line is the summary the Makefile target prints:
``requests_to_detect_10kb=N false_leaks=M/R baseline_false_leaks=B/R
requests_to_detect_1kb=K`` (B counts baseline B, OLS), then the trend
rule's keys: ``trend_power_phi05_old/new``, ``trend_power_phi08_old/new``
(share of leaking series called growing), ``trend_false_leaks_old/new``
and ``trend_power_ratio`` (new over old, both phi together).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trend_power import earlier_trend_rule
from trend_power import report as trend_report

from memwarden.find.analysis import analyze_lines
from memwarden.find.audit import run_audit
from memwarden.settings import Settings

MIB = 1024 * 1024
KIB = 1024
LEAK_SIZES = (1 * KIB, 10 * KIB, 100 * KIB)

# The app, written to a temporary directory for gunicorn to import. Its
# sizes come from BENCH_SEED, so every run is a slightly different app.
APP = '''
import os
import random

from flask import Flask, request

LEAK_BYTES = int(os.environ.get("BENCH_LEAK_BYTES", "0"))
rng = random.Random(int(os.environ.get("BENCH_SEED", "0")))
REPORT_ROWS = rng.randint(150_000, 400_000)   # the rare report's temporary rows
CACHE_KEYS = rng.randint(8, 40)                # the bounded cache's key space
CHAT_WORDS = (rng.randint(50, 200), rng.randint(500, 3000))

app = Flask(__name__)
_kept = []
_prices = {}


@app.after_request
def keep(response):
    if LEAK_BYTES:
        # ~100-byte strings: a 51-character str is 100 bytes on 64-bit CPython.
        n = len(_kept)
        _kept.append([f"{n:08d}:{i:06d}:" + "x" * 35 for i in range(LEAK_BYTES // 100)])
    return response


@app.get("/items/<int:item_id>")
def item(item_id):
    return {"item": item_id, "related": [item_id + k for k in range(10)]}


@app.post("/chat")
def chat():
    body = request.get_json(silent=True) or {}
    words = [f"{body.get('message', '')}-{i}" for i in range(random.randint(*CHAT_WORDS))]
    return {"words": len(words), "chars": sum(map(len, words))}


@app.get("/price/<int:item_id>")
def price(item_id):
    key = item_id % CACHE_KEYS
    if key not in _prices:
        _prices[key] = {"tiers": [float(key * 10 + k) for k in range(40)]}
    return _prices[key]


@app.get("/report")
def report():
    rows = [f"row {i}: {i * 7}" for i in range(REPORT_ROWS)]
    return {"rows": len(rows)}


@app.get("/export")
def export():
    import xml.dom.minidom

    return {"rows": len(xml.dom.minidom.parseString("<r><x/></r>").childNodes)}
'''


@dataclass(frozen=True)
class Run:
    leak_bytes: int
    seed: int


@dataclass(frozen=True)
class Outcome:
    run: Run
    requests: int
    # The first prefix (requests) each method calls a leak; None: never.
    memwarden: int | None
    last_minus_first: int | None
    ols: int | None
    final_verdict: str
    seconds: float
    log: Path | None = None


def _routes(rng: random.Random) -> dict[str, Any]:
    return {"routes": [
        {"method": "GET", "path": "/items/{rand}", "weight": rng.uniform(2, 6)},
        {"method": "POST", "path": "/chat", "json": {"message": "hello {rand}"},
         "weight": rng.uniform(1, 4)},
        {"method": "GET", "path": "/price/{rand}", "weight": rng.uniform(1, 3)},
        {"method": "GET", "path": "/report", "weight": rng.uniform(0.05, 0.3)},
        {"method": "GET", "path": "/export", "weight": rng.uniform(0.02, 0.1)},
    ]}


def _request_lines(path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """(seq, raw line, parsed) of every request line, in request order."""
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = json.loads(raw)
        if line.get("logger") == "memwarden.request" and line.get("message") == "request":
            out.append((int(line["seq"]), raw, line))
    out.sort(key=lambda item: item[0])
    return out


def last_minus_first(rss: Sequence[float]) -> bool:
    """Baseline A: RSS rose by more than 10 MiB or 10% from the first request."""
    rise = rss[-1] - rss[0]
    return rise > 10 * MIB or rise > 0.10 * rss[0]


def ols_slope_positive(xs: Sequence[float], ys: Sequence[float], alpha: float = 0.05) -> bool:
    """Baseline B: least-squares slope of ys on xs, positive at one-sided p < alpha."""
    n = len(xs)
    if n < 3:
        return False
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return False
    slope = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = math.fsum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    se = math.sqrt(residual / (n - 2) / sxx)
    if se == 0:
        return slope > 0
    p = 1.0 - statistics.NormalDist().cdf(slope / se)
    return slope > 0 and p < alpha


def _first(prefixes: Sequence[int], called: Callable[[int], bool]) -> int | None:
    return next((k for k in prefixes if called(k)), None)


def _prefixes(total: int, step: int) -> list[int]:
    prefixes = list(range(step, total + 1, step))
    if not prefixes or prefixes[-1] != total:
        prefixes.append(total)
    return prefixes


def first_leak(log: Path, step: int) -> int | None:
    """The first prefix memwarden calls a leak (None: never)."""
    lines = _request_lines(log)
    return _first(_prefixes(len(lines), step), lambda k: analyze_lines(
        [raw for _seq, raw, _line in lines[:k]]).verdict == "leak")


def judge(log: Path, step: int) -> tuple[int, int | None, int | None, int | None, str]:
    """Requests in the log, the first prefix each method calls a leak, the final verdict."""
    lines = _request_lines(log)
    total = len(lines)
    prefixes = _prefixes(total, step)

    def ours(k: int) -> bool:
        return analyze_lines([raw for _seq, raw, _line in lines[:k]]).verdict == "leak"

    def points(k: int) -> tuple[list[float], list[float]]:
        pts = [(float(seq), float(line["rss_bytes"])) for seq, _raw, line in lines[:k]
               if isinstance(line.get("rss_bytes"), int)]
        return [x for x, _ in pts], [y for _, y in pts]

    final = analyze_lines([raw for _seq, raw, _line in lines]).verdict
    return (total, _first(prefixes, ours),
            _first(prefixes, lambda k: last_minus_first(points(k)[1])),
            _first(prefixes, lambda k: ols_slope_positive(*points(k))), final)


def one_run(run: Run, requests: int, step: int, workdir: Path,
            blocks_every: int = Settings().blocks_every) -> Outcome:
    rng = random.Random(run.seed * 7919 + run.leak_bytes)
    out = workdir / f"run-{run.leak_bytes}-{run.seed}"
    out.mkdir(parents=True)
    routes = out / "routes.json"
    routes.write_text(json.dumps(_routes(rng)))
    started = time.monotonic()
    result = run_audit(
        "bench_app:app", workdir / "app", routes, requests=requests, workers=1, out=out / "audit",
        env={"MEMWARDEN_CENSUS_COLLECT": "1", "BENCH_LEAK_BYTES": str(run.leak_bytes),
             "BENCH_SEED": str(run.seed), "MEMWARDEN_BLOCKS_EVERY": str(blocks_every)},
        census_every=5, concurrency=(1, rng.randint(1, 6)), idle=(0.0, 0.0),
        new_users=rng.uniform(0.1, 0.5), seed=run.seed, seconds=300.0)
    total, ours, lmf, ols, final = judge(result.requests_log, step)
    return Outcome(run, total, ours, lmf, ols, final, time.monotonic() - started,
                   result.requests_log)


def _detected(values: Sequence[int | None], requests: int) -> str:
    found = sorted(v for v in values if v is not None)
    missed = len(values) - len(found)
    if not found:
        return f"not within {requests}"
    text = f"{statistics.median(found):g}"
    if len(found) > 1:
        text += f" ({found[0]}-{found[-1]})"
    if missed:
        text += f", {missed} missed"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests per run")
    parser.add_argument("--step", type=int, default=50, help="prefix step (requests)")
    parser.add_argument("--blocks-every", type=int, default=Settings().blocks_every,
                        help="MEMWARDEN_BLOCKS_EVERY in the app's workers (the default's)")
    parser.add_argument("--leak-runs", type=int, default=4, help="runs per leak size")
    parser.add_argument("--clean-runs", type=int, default=20, help="no-leak runs")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--synthetic-runs", type=int, default=100,
                        help="seeded series per synthetic trend scenario")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the runs' files in DIR (default: a temporary directory)")
    args = parser.parse_args(argv)

    runs = [Run(size, seed) for size in LEAK_SIZES for seed in range(1, args.leak_runs + 1)]
    runs += [Run(0, seed) for seed in range(100, 100 + args.clean_runs)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="memwarden-detect-") as tmp:
        workdir = args.keep.resolve() if args.keep is not None else Path(tmp)
        (workdir / "app").mkdir(parents=True)
        (workdir / "app" / "bench_app.py").write_text(APP, encoding="utf-8")
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            outcomes = list(pool.map(
                lambda run: one_run(run, args.requests, args.step, workdir,
                                   args.blocks_every), runs))
        # The same logs judged again with the earlier trend rule, one at a
        # time (the rule is swapped for the whole process while they are).
        with earlier_trend_rule():
            earlier = [first_leak(o.log, args.step) if o.log else None for o in outcomes]

    print(f"detection: {len(runs)} real gunicorn runs of {args.requests} requests "
          f"(1 sync worker, soak traffic, census every 5 requests with a collection), "
          f"judged every {args.step} requests; {time.monotonic() - started:.0f} s")
    header = (f"{'leak per request':<18}{'runs':>5}  {'memwarden':<22}"
              f"{'A: RSS last-first':<22}{'B: OLS slope p<0.05':<22}")
    print()
    print("requests until a 'leak' verdict (median, range)")
    print(header)
    for size in LEAK_SIZES:
        group = [o for o in outcomes if o.run.leak_bytes == size]
        print(f"{f'{size // KIB} KB':<18}{len(group):>5}  "
              f"{_detected([o.memwarden for o in group], args.requests):<22}"
              f"{_detected([o.last_minus_first for o in group], args.requests):<22}"
              f"{_detected([o.ols for o in group], args.requests):<22}")
    by_size = {size: [e for o, e in zip(outcomes, earlier, strict=True)
                      if o.run.leak_bytes == size] for size in (*LEAK_SIZES, 0)}
    print("the same logs, memwarden with the earlier trend rule: "
          + ", ".join(f"{size // KIB} KB {_detected(by_size[size], args.requests)}"
                      for size in LEAK_SIZES)
          + f"; no-leak runs called 'leak': {sum(e is not None for e in by_size[0])}"
          f"/{len(by_size[0])}")
    clean = [o for o in outcomes if o.run.leak_bytes == 0]
    r = len(clean)
    ours_false = sum(o.memwarden is not None for o in clean)
    lmf_false = sum(o.last_minus_first is not None for o in clean)
    ols_false = sum(o.ols is not None for o in clean)
    print()
    print("no-leak runs called 'leak' at any prefix")
    print(header)
    print(f"{'none':<18}{r:>5}  {f'{ours_false}/{r}':<22}{f'{lmf_false}/{r}':<22}"
          f"{f'{ols_false}/{r}':<22}")
    verdicts = {v: sum(o.final_verdict == v for o in clean) for v in ("no_leak", "inconclusive")}
    print(f"memwarden's verdicts on the full no-leak runs: {verdicts['no_leak']} no_leak, "
          f"{verdicts['inconclusive']} inconclusive, {ours_false} leak")
    print()
    keys = trend_report(args.synthetic_runs)
    trend_keys = " ".join(f"{k}={v}" for k, v in keys.items())
    print(f"requests_to_detect_10kb={_median_detect(outcomes, 10 * KIB)} "
          f"false_leaks={ours_false}/{r} baseline_false_leaks={ols_false}/{r} "
          f"requests_to_detect_1kb={_median_detect(outcomes, KIB)} {trend_keys}")
    return 0


def _median_detect(outcomes: Sequence[Outcome], size: int) -> str:
    """Median requests to a leak verdict over the runs of ``size``; "none" if any missed."""
    group = [o.memwarden for o in outcomes if o.run.leak_bytes == size]
    found = [v for v in group if v is not None]
    return f"{statistics.median(found):g}" if len(found) == len(group) and found else "none"


if __name__ == "__main__":
    sys.exit(main())
