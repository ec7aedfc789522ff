"""Recall: which leaks an audit finds, at what size, and what it calls traps.

Every run is real: an app generated from the templates in ``recall_apps.py``
runs under gunicorn on 127.0.0.1 (2 sync workers; the ASGI family on
``uvicorn_worker.UvicornWorker``), audited by ``memwarden.find.audit.run_audit``
with the census counting the live heap after a collection every 10 requests.
Each leak family keeps 100 B, 600 B, 2 KB or 8 KB of payload per call of one
route of three (25% of the traffic); each trap does what fools memory tests
without leaking (bounded caches and deques, late lazy imports, a large
temporary allocation, session stores with eviction).

Every run is one adaptive audit: it judges first at ``--first`` requests
(1,500) and, while a worker's verdict is "inconclusive" with a number of
requests that would decide, sends them, up to ``--max`` requests. The fixed
audit's verdict is the adaptive run's first checkpoint: the same requests
(the soak's plan is the seed's, whatever is sent after), every answered
request's line in the log, the same analysis of it.

Besides the real runs, the plateau test's false-leak rate is simulated on
synthetic worker lives that do not leak (``--simulated``).

Last line: ``recall_fixed=A/N recall_adaptive=B/N false_leaks=F/T
median_requests_adaptive=R``: leak runs called "leak" at the first
checkpoint and at the end, trap runs called "leak" at the end, and the
median requests the adaptive audits sent (all runs).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from recall_apps import KINDS, ROUTES, write_app

from memwarden.find.audit import run_audit

SIZES = (100, 600, 2048, 8192)
LEAKS = ("dict_objects", "closures", "logging_handlers", "asyncio_tasks", "threads", "fds",
         "large_buffers")
# Eight variants of each trap: (bytes per entry, the trap's bound). Caches and
# deques fill within the first few hundred requests of a worker; sessions cap
# at PARAM users; lazy imports start after PARAM calls of the route.
TRAPS: dict[str, tuple[tuple[int, int], ...]] = {
    "bounded_cache": ((600, 8), (600, 48), (2048, 16), (2048, 32), (2048, 48), (8192, 8),
                      (8192, 24), (8192, 48)),
    "bounded_deque": ((600, 10), (600, 40), (600, 75), (2048, 10), (2048, 40), (2048, 75),
                      (8192, 10), (8192, 40)),
    "lazy_imports": tuple((600, calls) for calls in (20, 40, 60, 80, 100, 130, 160, 200)),
    "large_temporary": tuple((600, rows) for rows in (50, 100, 200, 300, 400, 500, 600, 800)),
    "session_store": ((600, 8), (600, 16), (600, 32), (600, 64), (2048, 8), (2048, 16),
                      (2048, 32), (2048, 64)),
}


@dataclass(frozen=True)
class Run:
    kind: str
    size: int
    param: int
    seed: int

    @property
    def leak(self) -> bool:
        return KINDS[self.kind].leak

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.size}-{self.param}-{self.seed}"


@dataclass(frozen=True)
class Outcome:
    run: Run
    fixed: str
    adaptive: str
    requests: int
    stopped_because: str
    named: bool
    seconds: float


def one_run(run: Run, workdir: Path, first: int, most: int, max_seconds: float) -> Outcome:
    apps = workdir / "apps"
    app = f"recall_{run.kind}:app"
    started = time.monotonic()
    for attempt in (1, 2):
        result = run_audit(
            app, apps, workdir / "routes.json", requests=first, workers=2,
            out=workdir / "runs" / f"{run.label}-{attempt}", max_requests=most,
            seconds=max_seconds,
            env={"BENCH_SIZE": str(run.size), "BENCH_PARAM": str(run.param),
                 "BENCH_SEED": str(run.seed), "MEMWARDEN_LOOP_TRACKING": "1"},
            census_every=10, concurrency=(1, 4), idle=(0.0, 0.0), seed=run.seed)
        # A server that logged no request line did not run the app with
        # memwarden (it failed to start a worker): that is no verdict to count.
        if result.request_lines:
            break
        print(f"{run.label}: no request lines (attempt {attempt}); see {result.gunicorn_log}",
              file=sys.stderr)
    fixed = result.checkpoints[0].verdict if result.checkpoints else result.verdict
    routes = [s for s in result.report.get("suspects", []) if s.get("kind") == "route"]
    named = bool(routes) and str(routes[0].get("name", "")).startswith("GET /work")
    return Outcome(run, fixed, result.verdict, result.soak.requests, result.stopped_because,
                   named, time.monotonic() - started)


def simulated_false_leaks(lives: int, seed: int = 7) -> tuple[int, int]:
    """The plateau test over synthetic lives that do not leak: (leaks, lives).

    Caches that fill, random-key caches, long warm-ups, trickles (a steady
    0.2-0.8 blocks/request that stops within the first two thirds of the
    life) and clean lives; 750, 1,500 or 3,000 requests; quiet and noisy
    censuses.
    """
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    from find.analysis.synthetic import (
        BYTES_PER_BLOCK,
        SyntheticWorker,
        cache_fill,
        random_key_cache,
        to_lines,
    )

    from memwarden.find.analysis import analyze_lines

    rng = random.Random(seed)
    leaks = 0
    for run in range(lives):
        kind = run % 5
        requests = rng.choice((750, 1500, 3000))
        warm = rng.uniform(500.0, 3000.0) if kind == 2 else 270.0
        worker = SyntheticWorker(seed=run, exact_census=True, census_every=10,
                                 inflight_blocks=rng.choice((50.0, 400.0)), warmup_blocks=warm,
                                 warmup_span=rng.uniform(100.0, 400.0) if kind == 2 else 150.0)
        rate, stop = rng.uniform(0.2, 0.8), rng.randint(300, requests * 2 // 3)
        effects = {
            0: cache_fill(rng.randint(20, 300), rng.uniform(10.0, 100.0)),
            1: random_key_cache(rng.randint(10, 60), 0.25, rng.uniform(20.0, 100.0), run),
            3: lambda i, rate=rate, stop=stop: (
                (rate, rate * BYTES_PER_BLOCK) if i < stop else (0.0, 0.0)),
        }
        report = analyze_lines(to_lines(worker.run(requests, effects.get(kind))))
        leaks += report.verdict == "leak"
    return leaks, lives


def _size(size: int) -> str:
    return f"{size // 1024} KB" if size >= 1024 else f"{size} B"


def _table(outcomes: Sequence[Outcome]) -> None:
    print(f"{'leak family':<18}{'size':>7}  {'fixed':<13}{'adaptive':<13}{'requests':>9}  "
          f"{'top route /work':<16}")
    for outcome in outcomes:
        run = outcome.run
        if not run.leak:
            continue
        print(f"{run.kind:<18}{_size(run.size):>7}  {outcome.fixed:<13}{outcome.adaptive:<13}"
              f"{outcome.requests:>9}  {'yes' if outcome.named else 'no':<16}")
    print()
    print(f"{'trap':<18}{'runs':>5}  {'fixed leak/inc/no':<20}{'adaptive leak/inc/no':<22}"
          f"{'requests (median)':>18}")
    for kind in TRAPS:
        group = [o for o in outcomes if o.run.kind == kind]
        if not group:
            continue

        def counts(verdicts: list[str]) -> str:
            return "/".join(str(verdicts.count(v)) for v in ("leak", "inconclusive", "no_leak"))

        print(f"{kind:<18}{len(group):>5}  {counts([o.fixed for o in group]):<20}"
              f"{counts([o.adaptive for o in group]):<22}"
              f"{statistics.median(o.requests for o in group):>18g}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=1500, help="requests at the first look")
    parser.add_argument("--max", type=int, default=12000, help="request limit of an audit")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time limit of one run")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--simulated", type=int, default=400,
                        help="synthetic no-leak lives for the plateau test's false-leak rate")
    parser.add_argument("--quick", action="store_true",
                        help="two leaks and two traps, short audits: checks the script runs")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the runs' files in DIR (default: a temporary directory)")
    args = parser.parse_args(argv)

    runs: list[Run] = []
    seed = 1
    for kind in LEAKS:
        for size in SIZES:
            runs.append(Run(kind, size, 0, seed))
            seed += 1
    for kind, variants in TRAPS.items():
        for size, param in variants:
            runs.append(Run(kind, size, param, seed))
            seed += 1
    first, most, simulated = args.first, args.max, args.simulated
    if args.quick:
        runs = [Run("dict_objects", 8192, 0, 1), Run("threads", 2048, 0, 2),
                Run("bounded_deque", 2048, 10, 3), Run("lazy_imports", 600, 20, 4)]
        first, most, simulated = 200, 400, 8
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="memwarden-recall-") as tmp:
        workdir = args.keep.resolve() if args.keep is not None else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "routes.json").write_text(json.dumps(ROUTES), encoding="utf-8")
        for kind in {run.kind for run in runs}:
            write_app(KINDS[kind], workdir / "apps")
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            outcomes = list(pool.map(
                lambda run: one_run(run, workdir, first, most, args.max_seconds), runs))
    wall = time.monotonic() - started
    sim_leaks, sim_lives = simulated_false_leaks(simulated)

    leaks = [o for o in outcomes if o.run.leak]
    traps = [o for o in outcomes if not o.run.leak]
    print(f"recall: {len(outcomes)} real gunicorn audits (2 workers; {len(leaks)} leaks, "
          f"{len(traps)} traps), first look at {first} requests, up to {most}; {wall:.0f} s")
    print()
    _table(outcomes)
    big = [o for o in leaks if o.run.size >= 600]
    print()
    print(f"leaks of 600 B and more per leaking request: fixed "
          f"{sum(o.fixed == 'leak' for o in big)}/{len(big)}, adaptive "
          f"{sum(o.adaptive == 'leak' for o in big)}/{len(big)}; top route suspect is the "
          f"leaking route in {sum(o.named for o in leaks if o.adaptive == 'leak')} of "
          f"{sum(o.adaptive == 'leak' for o in leaks)} leaks found")
    print(f"traps called 'leak': fixed {sum(o.fixed == 'leak' for o in traps)}/{len(traps)}, "
          f"adaptive {sum(o.adaptive == 'leak' for o in traps)}/{len(traps)}")
    print(f"requests the adaptive audits sent (median): leaks "
          f"{statistics.median(o.requests for o in leaks):g}, traps "
          f"{statistics.median(o.requests for o in traps):g}")
    print(f"plateau test on {sim_lives} simulated no-leak worker lives (caches that fill, "
          f"random-key caches, long warm-ups, trickles that stop, clean): {sim_leaks} called "
          f"'leak'")
    undecided = [o for o in outcomes if o.adaptive == "inconclusive"]
    for outcome in undecided:
        print(f"still inconclusive: {outcome.run.label}: {outcome.stopped_because}")
    n, t = len(leaks), len(traps)
    print(f"recall_fixed={sum(o.fixed == 'leak' for o in leaks)}/{n} "
          f"recall_adaptive={sum(o.adaptive == 'leak' for o in leaks)}/{n} "
          f"false_leaks={sum(o.adaptive == 'leak' for o in traps)}/{t} "
          f"median_requests_adaptive={statistics.median(o.requests for o in outcomes):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
