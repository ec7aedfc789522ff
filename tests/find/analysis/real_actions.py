"""Protective-action lines written by memwarden's own parts, in this process.

The recycler, the shedder and the worker's descendant reaper run as in a
worker and log through memwarden's ``JsonFormatter``. The lines whose makers
need a gunicorn master or a pool under load (``terminate_orphans``,
``pool_refuse``) go through ``actions.perform``, the call those makers use,
with the fields they pass. Only ``pid`` (and, to order a log, ``timestamp``)
is then set, so that the lines can sit in a synthetic worker's log.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

from memwarden.footprint import Footprint
from memwarden.hold import perform as actions
from memwarden.hold.orphans import terminate_descendants
from memwarden.hold.policy import Limits
from memwarden.hold.shed import Shedder
from memwarden.hold.worker import Recycler
from memwarden.see.logs import JsonFormatter
from memwarden.settings import Settings
from memwarden.sizes import Size

MIB = 1024 * 1024
LOGGERS = ("memwarden.recycle", "memwarden.shed", "memwarden.orphans", "memwarden.pool")
Line = dict[str, Any]


@contextlib.contextmanager
def captured() -> Iterator[list[Line]]:
    """The JSON lines memwarden's loggers write inside the block, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    lines: list[Line] = []
    try:
        yield lines
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        lines.extend(json.loads(text) for text in stream.getvalue().splitlines())


class Sampler:
    """Footprints in turn, one per request; the last one repeats."""

    def __init__(self, *totals: int) -> None:
        self.totals = list(totals)
        self.i = 0

    def now(self, fresh: bool = False) -> Footprint:
        return Footprint(self.totals[min(self.i, len(self.totals) - 1)], "rss", 0, ())

    def observe(self, fields: dict[str, Any]) -> Footprint:
        footprint = self.now()
        self.i += 1
        return footprint


def recycle_lines(mode: str, totals: Sequence[int], limits: Limits, requests: int) -> list[Line]:
    """A worker's recycler over ``requests`` requests with these footprints."""
    with captured() as lines:
        recycler = Recycler(limits, Sampler(*totals), mode=mode,  # type: ignore[arg-type]
                            stop=lambda: None)
        for _ in range(requests):
            recycler.on_request({})
    return lines


def idle_recycle_lines(mode: str, footprint: int, idle_limit: int) -> list[Line]:
    """A worker over its idle limit, recycled (or not) in the first quiet gap."""
    now = [0.0]
    with captured() as lines:
        recycler = Recycler(Limits(idle_bytes=idle_limit, idle_seconds=5.0),
                            Sampler(footprint), mode=mode,  # type: ignore[arg-type]
                            clock=lambda: now[0], stop=lambda: None)
        recycler.on_request({})
        now[0] = 6.0
        recycler.check_idle()
    return lines


def shed_lines(mode: str, refused: int, stop: bool = False, footprint: int = 200 * MIB,
               high: int = 100 * MIB) -> list[Line]:
    """A worker over its shed threshold: ``shedding_started``, ``refused`` sheds and,
    with ``stop``, ``shedding_stopped`` once its footprint is back under the low mark."""
    settings = Settings(shed=mode, shed_high=Size(bytes=high))
    sampler = Sampler(footprint)
    with captured() as lines:
        shedder = Shedder(settings, sampler, workers=1)  # type: ignore[arg-type]
        assert shedder.check()
        for _ in range(refused):
            shedder.refuse("POST", "/chat")
        if stop:
            sampler.totals = [high * 85 // 100]  # under the low mark, 90% of high
            assert not shedder.check()
    return lines


def would_terminate_descendants_lines() -> list[Line]:
    """The exiting-worker reaper in dry-run, over a real child process it leaves alone."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        with captured() as lines:
            terminate_descendants(0.1, mode=actions.DRY_RUN)
        assert child.poll() is None  # dry-run: still running
    finally:
        child.kill()
        child.wait()
    return lines


def terminate_orphans_line(mode: str, orphans: int, master: int = 4000) -> list[Line]:
    """The master's orphan sweep (orphans.py ``_sweep``)."""
    pids = list(range(9000, 9000 + orphans))
    with captured() as lines:
        actions.perform(mode, logging.getLogger("memwarden.orphans"), "terminate_orphans",
                        {"pid": master, "worker_pids": [4121], "orphans": orphans,
                         "pids": pids[:50], "grace_seconds": 5.0}, lambda: None)
    return lines


def pool_refuse_line(mode: str, pool: str = "browser") -> list[Line]:
    """A pool acquire that timed out (pool.py ``Pool._refuse``)."""
    with captured() as lines:
        actions.perform(mode, logging.getLogger("memwarden.pool"), "pool_refuse",
                        {"pool": pool, "size": 4, "max_size": 4, "in_use": 4, "idle": 0,
                         "waiting": 2, "timeout_s": 5.0}, lambda: None)
    return lines


def master_hard_limit_lines(mode: str, worker: int, footprint: int, limit: int) -> list[Line]:
    """The master's hard limit over one worker (watchdog.py ``_escalate``): its SIGTERM
    as a ``recycle``, then, the grace period over, its ``hard_limit_kill``."""
    log = logging.getLogger("memwarden.recycle")
    fields = {"pid": worker, "reason": "hard_limit", "footprint_bytes": footprint,
              "footprint": "rss", "rss_bytes": footprint, "limit_bytes": limit,
              "source": "master", "grace_seconds": 30.0}
    with captured() as lines:
        actions.perform(mode, log, "recycle", {**fields, "signal": "SIGTERM"}, lambda: None,
                        logging.WARNING)
        actions.perform(mode, log, "hard_limit_kill", {**fields, "signal": "SIGKILL"},
                        lambda: None, logging.WARNING)
    return lines


def as_worker(lines: Sequence[Line], pid: int, timestamp: str | None = None,
              requests: int | None = None) -> list[Line]:
    """The lines as worker ``pid`` would have written them (at its request ``requests``)."""
    out = []
    for line in lines:
        moved = {**line, "pid": pid}
        if timestamp is not None:
            moved["timestamp"] = timestamp
        if requests is not None and "requests" in moved:
            moved["requests"] = requests
        out.append(moved)
    return out


def dry_run_decisions(pid: int) -> list[Line]:
    """What one worker of a dry-run logs: recycles for two reasons, sheds, a reaper."""
    # Under the soft limit until the 4th request: max_requests first, then soft_limit.
    recycles = recycle_lines(actions.DRY_RUN, [50 * MIB] * 3 + [200 * MIB],
                             Limits(soft_bytes=100 * MIB, max_requests=2), 6)
    return as_worker(recycles + shed_lines(actions.DRY_RUN, 3)
                     + would_terminate_descendants_lines()
                     + pool_refuse_line(actions.DRY_RUN), pid)
