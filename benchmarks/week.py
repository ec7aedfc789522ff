"""A compressed week of production traffic against the agent service as found.

Each "day" is the production pattern squeezed: mostly idle, with a few bursts
of 1-10 concurrent users (new users arriving, earlier ones gone: each burst is
its own memwarden.soak run, so its users and cookie jars are new), separated
by idle gaps of a few seconds instead of hours. The same seeded week is
replayed against the reference service as found (all leaks, 2 sync workers,
real gunicorn, Chromium and the MCP server on 127.0.0.1) twice:

- ``baseline``: the plan the team had before memwarden: gunicorn's
  ``max_requests`` 1000 with jitter 100 (``AGENT_SERVICE_LEAKS`` without
  ``norecycle``, see examples/agent_service/README.md), nothing else;
- ``memwarden``: every leak left in, memwarden's recycling, shedding and
  orphan reaping on, with soft, idle and hard limits under the cap.

Both are judged against the same explicit per-worker footprint cap (a
worker's RSS plus its descendants' PSS: Chromium and the Playwright driver),
read from the request lines' census and from /proc every 0.25 s. The whole
run is bounded to 15 minutes; a week cut short says so.

Prints per run: peak footprint against the cap, recycles by reason, shed
requests, failed accepted requests, orphan processes, and the day the cap was
first crossed. Last line:
``week_days_survived=D peak_footprint_ratio=R failed_requests=F orphans=O baseline_days_survived=B``
(D, R, F, O of the memwarden run; days survived: whole days before the first
day on which the cap was crossed, 7 when it never was).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from memwarden.find.soak import Route, SoakConfig, run_soak  # noqa: E402
from memwarden.footprint import measure  # noqa: E402
from tests.examples.agent_service_harness import MB, Service  # noqa: E402

DAYS = 7
BOUND_SECONDS = 15 * 60  # the whole benchmark, both runs
CAP = 900 * MB  # per worker, for both runs
SOFT = CAP - 200 * MB  # one leaked browser context (~64-80 MB) plus Chromium's swings
IDLE = SOFT - 100 * MB
HARD = CAP - 32 * MB  # the master's SIGTERM, still under the cap
SHED_HIGH = CAP - 80 * MB  # only reached when a worker cannot recycle yet

# The agent's traffic: mostly chat (MCP tools, sessions), a modest share of
# browsing (each as-found browse leaks a Chromium context, ~64 MB), the error
# path (which leaks an event loop; its 502 is expected, marked by its id).
EXPECTED_FAIL = "expected-fail-"
ROUTES = (
    Route("POST", "/chat", weight=6, json={"message": "add {rand} 3; weather paris"},
          has_json=True),
    Route("POST", "/chat", weight=3, json={"message": "weather oslo; history"}, has_json=True),
    Route("POST", "/chat", weight=1, json={"message": "fail on purpose"}, has_json=True,
          headers=(("X-Request-ID", EXPECTED_FAIL + "{seq}"),)),
    Route("POST", "/browse", weight=1, json={"page": "notes"}, has_json=True),
    Route("GET", "/tools", weight=1),
)

BASELINE: dict[str, str] = {"MEMWARDEN_RECYCLE": "off", "MEMWARDEN_ORPHANS": "off",
                            "MEMWARDEN_SHED": "off", "AGENT_SERVICE_MAX_REQUESTS": "1000",
                            "AGENT_SERVICE_MAX_REQUESTS_JITTER": "100"}
HARDENED: dict[str, str] = {
    "MEMWARDEN_RECYCLE": "on", "MEMWARDEN_ORPHANS": "on", "MEMWARDEN_SHED": "on",
    "MEMWARDEN_FOOTPRINT": "rss", "MEMWARDEN_FOOTPRINT_DESCENDANTS": "1",
    "MEMWARDEN_FOOTPRINT_EVERY": "1",
    "MEMWARDEN_SOFT_LIMIT": f"{SOFT}B", "MEMWARDEN_IDLE_LIMIT": f"{IDLE}B",
    "MEMWARDEN_IDLE_SECONDS": "2", "MEMWARDEN_HARD_LIMIT": f"{HARD}B",
    "MEMWARDEN_SHED_HIGH": f"{SHED_HIGH}B", "MEMWARDEN_SHED_LOW": f"{SOFT}B",
    "MEMWARDEN_SHED_RETRY_AFTER": "1", "MEMWARDEN_MAX_CONCURRENT_RECYCLES": "1",
}
# (name, AGENT_SERVICE_LEAKS, environment)
RUNS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("baseline (gunicorn max_requests 1000+100)", "mcp,browser,loop,context", BASELINE),
    ("memwarden (recycle + shed + orphans)", "all", HARDENED),
)


class Sampler(threading.Thread):
    """Every worker's footprint every 0.25 s, from outside, by day; remembers
    the service's processes so that orphans left mid-run are found at the end."""

    def __init__(self, service: Service) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.day = 0
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.wait(0.25):
            n += 1
            with contextlib.suppress(Exception):
                for pid in self.service.worker_pids():
                    fp = measure(pid, "rss", True)
                    if fp is not None:
                        day = self.day
                        self.peaks[day] = max(self.peaks.get(day, 0), fp.total_bytes)
            if n % 4 == 0:
                with contextlib.suppress(Exception):
                    self.service.remember_processes()


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def _day_of(t: float, starts: list[float]) -> int:
    day = 0
    for i, start in enumerate(starts):
        if t >= start:
            day = i
    return day


def one_week(name: str, leaks: str, env: dict[str, str], seed: int, budget: float,
             bursts_per_day: tuple[int, int], burst_requests: tuple[int, int],
             gap_seconds: tuple[float, float]) -> dict[str, Any]:
    rng = random.Random(seed)  # the same week for both runs
    deadline = time.monotonic() + budget
    starts: list[float] = []
    failed = shed = requests = expected_fail = 0
    cut_short = False
    with tempfile.TemporaryDirectory(prefix="memwarden-week-") as tmp:
        service = Service(Path(tmp), leaks, workers=None, census_every=1, env=env)
        sampler = Sampler(service)
        sampler.start()
        url = f"http://127.0.0.1:{service.port}"
        try:
            for day in range(DAYS):
                if time.monotonic() >= deadline:
                    cut_short = True
                    break
                sampler.day = day
                starts.append(time.time())
                for burst in range(rng.randint(*bursts_per_day)):
                    left = deadline - time.monotonic()
                    if left <= 1:
                        break
                    records: list[dict[str, Any]] = []
                    summary = run_soak(SoakConfig(
                        url=url, routes=ROUTES, requests=rng.randint(*burst_requests),
                        seconds=min(left, 120.0), seed=seed * 1000 + day * 10 + burst,
                        new_users=0.3, burst_users=(1, 10), visit_requests=(1, 3),
                        idle_seconds=(0.0, 0.5), max_retries=5, max_retry_after=2.0,
                        request_id_prefix=f"d{day}b{burst}"), on_record=records.append)
                    requests += summary.requests
                    shed += summary.shed
                    for r in records:
                        if str(r.get("request_id", "")).startswith(EXPECTED_FAIL) \
                                and r.get("status") == 502:
                            expected_fail += 1
                        elif r.get("error") is not None or (r.get("status") or 0) >= 500:
                            failed += 1
                    time.sleep(max(0.0, min(rng.uniform(*gap_seconds),
                                            deadline - time.monotonic())))
            else:
                sampler.day = DAYS
            time.sleep(0.5)
            service.remember_processes()
        finally:
            sampler.done.set()
            sampler.join()
            orphans = service.stop()
        lines = service.lines()
    peaks = dict(sampler.peaks)
    peaks.pop(DAYS, None)
    for x in lines:
        if x.get("message") != "request" or "census" not in x or "rss_bytes" not in x:
            continue
        t = _epoch(str(x.get("timestamp", "")))
        if t is None or not starts:
            continue
        day = _day_of(t, starts)
        fp = int(x["rss_bytes"]) + int(x["census"].get("children_pss_bytes", 0))
        peaks[day] = max(peaks.get(day, 0), fp)
    days_run = len(starts)
    crossed = next((d for d in range(days_run) if peaks.get(d, 0) > CAP), None)
    survived = crossed if crossed is not None else days_run
    reasons: dict[str, int] = {}
    for x in lines:
        reason = None
        if x.get("logger") == "memwarden.recycle" and x.get("message") == "recycle":
            reason = str(x.get("reason", "?"))
        elif "Autorestarting worker" in str(x.get("message", "")):
            reason = "gunicorn_max_requests"
        elif x.get("message") == "worker_killed":
            reason = f"killed_by_{x.get('killed_by', '?')}"
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"name": name, "days_run": days_run, "cut_short": cut_short, "peaks": peaks,
            "peak": max(peaks.values(), default=0), "crossed": crossed, "survived": survived,
            "reasons": reasons, "shed": shed, "failed": failed, "requests": requests,
            "expected_fail": expected_fail, "orphans": len(orphans),
            "orphan_list": orphans[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bursts", type=int, nargs=2, default=(2, 4), metavar=("MIN", "MAX"),
                        help="bursts per day")
    parser.add_argument("--burst-requests", type=int, nargs=2, default=(15, 35),
                        metavar=("MIN", "MAX"), help="requests per burst")
    parser.add_argument("--gap", type=float, nargs=2, default=(2.0, 5.0),
                        metavar=("MIN", "MAX"), help="idle seconds between bursts")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"cap={CAP // MB} MiB per worker; memwarden: soft {SOFT // MB} MiB, idle "
          f"{IDLE // MB} MiB, hard {HARD // MB} MiB, shed from {SHED_HIGH // MB} MiB; "
          f"{DAYS} days, seed {args.seed}, bounded to {BOUND_SECONDS // 60} minutes",
          flush=True)
    results = []
    for i, (name, leaks, env) in enumerate(RUNS):
        budget = (BOUND_SECONDS - 60 - (time.monotonic() - started)) / (len(RUNS) - i)
        results.append(one_week(name, leaks, env, args.seed, budget, tuple(args.bursts),
                                tuple(args.burst_requests), tuple(args.gap)))
        r = results[-1]
        days = " ".join(f"d{d + 1}={r['peaks'].get(d, 0) / MB:.0f}" for d in range(r["days_run"]))
        crossed = f"day {r['crossed'] + 1}" if r["crossed"] is not None else "never"
        short = " (cut short by the bound)" if r["cut_short"] else ""
        print(f"{r['name']}: {r['days_run']} days{short}, "
              f"requests={r['requests']}, peak_footprint={r['peak'] / MB:.0f} MiB "
              f"({r['peak'] / CAP:.2f} x cap), cap crossed: {crossed}, "
              f"days_survived={r['survived']}, recycles={sum(r['reasons'].values())} "
              f"{r['reasons'] or ''}, shed_requests={r['shed']}, "
              f"failed_requests={r['failed']} (+{r['expected_fail']} expected 502s), "
              f"orphans={r['orphans']}", flush=True)
        print(f"  daily peak MiB: {days}", flush=True)
        for orphan in r["orphan_list"]:
            print(f"  orphan: {orphan}", flush=True)
    base, held = results
    print(f"total {time.monotonic() - started:.0f} s")
    print(f"week_days_survived={held['survived']} peak_footprint_ratio={held['peak'] / CAP:.2f} "
          f"failed_requests={held['failed']} orphans={held['orphans']} "
          f"baseline_days_survived={base['survived']}")


if __name__ == "__main__":
    main()
