"""The master's side of Hold: the hard limit, orphans, and how workers died.

gunicorn has no periodic master hook, but its main loop calls
``Arbiter.murder_workers()`` (the heartbeat timeout check) on every turn:
after each signal and at least once a second (``wait_for_signals(timeout=1.0)``
in gunicorn 27). :meth:`Watchdog.start` wraps that bound method on the
arbiter instance, so the watchdog's tick runs in the master's main thread,
next to gunicorn's own timeout enforcement. No thread runs beside the loop
that forks the workers (a thread caught holding a lock at fork time
deadlocks the child), and no extra process shows among the master's children.

Each worker is identified by its pid and start time when first seen
(:mod:`memwarden.system.safe_kill`), and signalled only if the pid still names that
process: a worker pid gunicorn still lists after the process is gone (or a
/proc of another pid namespace) never turns the hard limit on a stranger.

Each tick (at most every ``TICK_SECONDS``), for each worker:

- its footprint, own RSS or PSS plus descendants' PSS (:mod:`memwarden.footprint`);
  at the hard limit: SIGTERM (gunicorn's graceful worker stop), and SIGKILL if
  it is still there after the grace period (:class:`memwarden.hold.policy.HardLimitEscalator`);
- its descendants, recorded for :class:`memwarden.hold.orphans.OrphanReaper`;

and then the cgroup's OOM-kill counter and the orphans' pending kills.
``child_exit`` logs a worker that died by a signal (``worker_killed``: the
signal, whether the OOM killer did it, who sent it) and the request it was
serving if it died in one (``death_in_flight``, :mod:`memwarden.hold.inflight`),
ends its orphans and passes its recycle slot on.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from memwarden import events
from memwarden.footprint import Footprint, measure
from memwarden.hold import exits
from memwarden.hold import perform as actions
from memwarden.hold.inflight import InflightWatch
from memwarden.hold.orphans import OrphanReaper
from memwarden.hold.policy import (
    HARD_LIMIT,
    Escalation,
    HardLimitEscalator,
    protection_state,
    worker_share,
)
from memwarden.hold.slots import RecycleSlots
from memwarden.settings import Settings
from memwarden.system import probe as _probe
from memwarden.system.proctree import subtree_pids
from memwarden.system.safe_kill import ProcessRef, process_ref, send_signal

__all__ = ["TICK_SECONDS", "Watchdog"]

_log = logging.getLogger("memwarden.recycle")
TICK_SECONDS = 0.5


class Watchdog:
    """Everything Hold does in the gunicorn master. Create it in ``when_ready``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.settings = settings
        self._clock = clock
        self._probe = _probe.Probe(settings.proc_root, settings.sys_root)
        self.server: Any = None
        self.cgroup_limit: int | None = None
        self.slots: RecycleSlots | None = None
        self.orphans: OrphanReaper | None = None
        self.escalator = HardLimitEscalator(settings.grace_seconds or 30.0)
        self._oom: exits.OomTracker | None = None
        self.inflight = InflightWatch(settings.proc_root, settings.sys_root)
        self._last_tick = -1.0
        self._footprints: dict[int, Footprint] = {}
        # Each worker as first seen: what the hard limit signals, and what tells a
        # worker from whatever holds its pid later.
        self._refs: dict[int, ProcessRef] = {}
        self._stale: set[int] = set()  # pids warned about, so once each
        self._tick_failed = False
        self._pid = os.getpid()
        self._proc_ok = True

    # -- lifecycle -------------------------------------------------------------------

    def start(self, server: Any) -> None:
        """``when_ready``: before the first worker forks."""
        s = self.settings
        self.server = server
        self._pid = os.getpid()
        # Checked once: without /proc the hard limit and orphan reaping cannot
        # work, and one line saying so beats a warning per tick.
        self._proc_ok = os.path.isdir(f"{s.proc_root}/{self._pid}")
        if not self._proc_ok:
            _log.warning("memwarden cannot read %s/%s: the master's hard limit, kill "
                         "detection and orphan reaping are off", s.proc_root, self._pid)
        cgroup = self._probe.cgroup_memory() if self._proc_ok else None
        self.cgroup_limit = cgroup.limit_bytes if cgroup is not None else None
        grace = s.grace_seconds
        if grace is None:
            grace = float(getattr(getattr(server, "cfg", None), "graceful_timeout", 30.0))
        self.escalator = HardLimitEscalator(grace)
        exits.install()
        if self._proc_ok:
            self._oom = exits.OomTracker(self._oom_kills, clock=self._clock)
        if s.orphans != actions.OFF and self._proc_ok:
            self.orphans = OrphanReaper(s.orphan_grace_seconds, s.orphans, s.proc_root,
                                        clock=self._clock)
            self.orphans.start()
        if s.recycle != actions.OFF:
            self.slots = RecycleSlots.create(s.max_concurrent_recycles)
        original = getattr(server, "murder_workers", None)
        if callable(original):
            def murder_workers() -> None:
                original()
                self.tick()

            server.murder_workers = murder_workers
        else:
            _log.warning("memwarden found no Arbiter.murder_workers in this gunicorn: "
                         "the master's hard limit and orphan sweeps will not run")
        workers = self._workers_count()
        state, warnings = protection_state(s, self.cgroup_limit, workers)
        for warning in warnings:
            _log.warning(warning)
        actions.emit(_log, "hold", {**state,
            "pid": self._pid, "workers": workers, "cgroup_limit_bytes": self.cgroup_limit,
            "worker_share_bytes": worker_share(self.cgroup_limit, workers),
            "hard_limit_bytes": self.hard_limit(), "grace_seconds": grace,
            "footprint": s.footprint, "footprint_descendants": s.footprint_descendants,
            "recycle": s.recycle, "orphans": s.orphans, "pool_limits": s.pool_limits,
            "subreaper": bool(self.orphans and self.orphans.subreaper)})

    def stop(self) -> None:
        """``on_exit``."""
        if self.orphans is not None:
            self.orphans.shutdown()
        if self.slots is not None:
            self.slots.close()
        self.inflight.close()

    # -- figures --------------------------------------------------------------------

    def _workers_count(self) -> int:
        n = getattr(self.server, "num_workers", None)
        return int(n) if isinstance(n, int) and n > 0 else 1

    def hard_limit(self) -> int | None:
        """Per worker; follows the worker count (TTIN/TTOU change it)."""
        if self.settings.recycle == actions.OFF or self.settings.hard_limit is None:
            return None
        return self.settings.hard_limit.resolve(
            worker_share(self.cgroup_limit, self._workers_count()))

    def _oom_kills(self) -> int | None:
        cgroup = self._probe.cgroup_memory()
        return cgroup.oom_kills if cgroup is not None else None

    def _workers(self) -> dict[int, Any]:
        try:
            return dict(self.server.WORKERS)
        except Exception:
            return {}

    def _known(self, workers: dict[int, Any]) -> set[int]:
        known = set(workers)
        for attr in ("dirty_arbiter_pid", "reexec_pid", "master_pid"):
            pid = getattr(self.server, attr, 0)
            if isinstance(pid, int) and pid > 0:
                known.add(pid)
        return known

    # -- the tick ---------------------------------------------------------------------

    def tick(self) -> None:
        """One pass over the workers. Never raises: it runs in the master's loop."""
        now = self._clock()
        if not self._proc_ok or (self._last_tick >= 0 and now - self._last_tick < TICK_SECONDS):
            return
        self._last_tick = now
        try:
            self._tick(now)
        except Exception:
            if not self._tick_failed:
                self._tick_failed = True
                _log.exception("memwarden master tick failed; it keeps trying")

    def _tick(self, now: float) -> None:
        s = self.settings
        workers = self._workers()
        hard = self.hard_limit()
        watch_memory = hard is not None
        for pid in [p for p in self._refs if p not in workers]:
            del self._refs[pid]  # its child_exit was missed
            self._stale.discard(pid)
        self.inflight.sample(workers)
        for pid, worker in workers.items():
            if self.slots is not None:
                self.slots.seen(getattr(worker, "age", -1), pid)
            if (watch_memory or self.orphans is not None) and not self._same_worker(pid):
                continue
            if watch_memory:
                fp = measure(pid, s.footprint, s.footprint_descendants, s.proc_root,
                             s.sys_root)
                if fp is None:
                    continue
                self._footprints[pid] = fp
                if self.orphans is not None:
                    self.orphans.record(pid, fp.descendant_pids if s.footprint_descendants
                                        else subtree_pids(pid, s.proc_root))
                self._escalate(pid, fp, hard, now)
            elif self.orphans is not None:
                self.orphans.record(pid, subtree_pids(pid, s.proc_root))
        if self._oom is not None:
            unclaimed = self._oom.unclaimed()
            if unclaimed:
                actions.emit(_log, "oom_kill", {
                    "pid": self._pid, "count": unclaimed,
                    "victim": "a process other than a worker (a descendant or the master)"},
                    logging.WARNING)
        if self.orphans is not None:
            self.orphans.tick(self._known(workers))
        if self.slots is not None:
            self.slots.forget_missing({getattr(w, "age", -1) for w in workers.values()})

    def _same_worker(self, pid: int) -> bool:
        """Whether ``pid`` still names the worker first seen there (and note it if new)."""
        ref = self._refs.get(pid)
        now = process_ref(pid, self.settings.proc_root)
        if ref is None:
            if now is None:
                return False  # exited already; child_exit will follow
            self._refs[pid] = now
            return True
        if now == ref:
            return True
        if now is not None and ref.pid not in self._stale:
            self._stale.add(ref.pid)
            _log.warning("memwarden leaves pid %s alone: it no longer names the worker "
                         "first seen there", pid)
        return False

    def _kill(self, pid: int, sig: int) -> None:
        ref = self._refs.get(pid)
        if ref is not None:
            send_signal(ref, sig, self.settings.proc_root)

    def _escalate(self, pid: int, fp: Footprint, hard: int | None, now: float) -> None:
        stopping = self.slots.stopping(pid) if self.slots is not None else False
        step = self.escalator.step(pid, fp.total_bytes, hard, now, stopping)
        if step is Escalation.NONE:
            return
        fields: dict[str, Any] = {"pid": pid, "reason": HARD_LIMIT, **fp.fields(),
                                  "limit_bytes": hard, "source": "master",
                                  "grace_seconds": self.escalator.grace}
        if step is Escalation.TERM:
            fields["signal"] = "SIGTERM"
            if actions.perform(self.settings.recycle, _log, "recycle", fields,
                               lambda: self._kill(pid, signal.SIGTERM), logging.WARNING):
                events.publish(events.Recycle(HARD_LIMIT))
            elif self.settings.recycle == actions.DRY_RUN:
                events.publish(events.Recycle(HARD_LIMIT, dry_run=True))
        else:
            fields["signal"] = "SIGKILL"
            actions.perform(self.settings.recycle, _log, "hard_limit_kill", fields,
                            lambda: self._kill(pid, signal.SIGKILL), logging.WARNING)

    # -- hooks -------------------------------------------------------------------------

    def pre_fork(self, worker: Any) -> None:
        if self.slots is not None:
            self.slots.prepare(getattr(worker, "age", -1))
        if self.orphans is not None:
            self.orphans.forking(getattr(worker, "age", -1))
        self.inflight.pre_fork(worker)

    def child_exit(self, worker: Any) -> None:
        pid = getattr(worker, "pid", None)
        if not isinstance(pid, int):
            return
        raw = exits.pop_status(pid)
        status = exits.ExitStatus.from_wait(raw) if raw is not None else None
        oom = False
        if status is not None and status.signal == signal.SIGKILL and self._oom is not None:
            oom = self._oom.claim()
        if status is not None and status.signal is not None and status.signal != signal.SIGTERM:
            self._log_killed(worker, pid, status, oom)
        self.inflight.died(worker, status, oom)
        workers = self._workers()
        workers.pop(pid, None)
        if self.orphans is not None:
            self.orphans.worker_exited(pid, self._known(workers), getattr(worker, "age", None))
        if self.slots is not None:
            self.slots.worker_exited(getattr(worker, "age", -1), pid)
        self.escalator.forget(pid)
        self._footprints.pop(pid, None)
        self._refs.pop(pid, None)
        self._stale.discard(pid)

    def _log_killed(self, worker: Any, pid: int, status: exits.ExitStatus, oom: bool) -> None:
        if self.escalator.killed(pid) and self.settings.recycle == actions.ON:
            by = "memwarden_hard_limit"
        elif oom:
            by = "oom_killer"
        elif getattr(worker, "aborted", False):
            by = "gunicorn_timeout"
        else:
            by = "unknown"
        fields: dict[str, Any] = {"pid": pid, "signal": status.signal_name, "oom_kill": oom,
                                  "killed_by": by, "master_pid": self._pid}
        if status.core_dumped:
            fields["core_dumped"] = True
        fp = self._footprints.get(pid)
        if fp is not None:
            fields["last_footprint_bytes"] = fp.total_bytes
        actions.emit(_log, "worker_killed", fields, logging.ERROR)
        if oom:
            events.publish(events.OomKill(1))
