"""No orphans: a worker's descendant processes never outlive it.

Two paths, because a worker can die two ways:

- It exits (a recycle, SIGTERM, SIGQUIT, the timeout's SIGABRT): in
  ``worker_exit`` it terminates every descendant itself, all at once so that
  none is reparented half-way, SIGTERM then SIGKILL after a grace period.
  :func:`terminate_descendants`.
- It is killed (SIGKILL, the OOM killer) and runs no code. Its children are
  then reparented to the nearest *child subreaper* ancestor, which the master
  becomes at start (``PR_SET_CHILD_SUBREAPER``; Linux only). gunicorn's
  reaper already calls ``waitpid(-1)`` and reaps whatever the master adopts.
  :class:`OrphanReaper` then tells the adopted from the master's own children.

Telling them apart: the master's own children (a server launched from
``on_starting``) are there at ``when_ready``, before any worker forks, and are
never touched. On each master tick the reaper records the descendants of each
worker by (pid, start time). When a worker dies, a child of the master is its
orphan if it was recorded as that worker's descendant, or if it started after
the worker did (known from a tick, or from ``pre_fork`` for a worker killed
before any tick saw it) and was not yet the master's child at the tick
before: a process the master starts itself is its child from birth. The one process
this can mistake is one the master starts itself (not in ``on_starting``) in
the same second a worker is killed.

Processes are identified by (pid, start time) when first seen, and signalled
through :mod:`memwarden.system.safe_kill`, so a reused pid is never signalled, nor a
pid read from a /proc of another pid namespace. Descendants come from
:mod:`memwarden.system.proctree`, which works without the kernel's children files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping

from memwarden import events
from memwarden.hold import perform as actions
from memwarden.system import proctree
from memwarden.system.safe_kill import ProcessRef, process_ref, send_signal

__all__ = [
    "OrphanReaper",
    "Proc",
    "children",
    "find_orphans",
    "proc",
    "set_child_subreaper",
    "subtree",
    "terminate_descendants",
]

_log = logging.getLogger("memwarden.orphans")
_PR_SET_CHILD_SUBREAPER = 36


# A process identity that survives pid reuse: (pid, start time).
Proc = ProcessRef


def proc(pid: int, proc_root: str = "/proc") -> Proc | None:
    return process_ref(pid, proc_root)


def alive(p: Proc, proc_root: str = "/proc") -> bool:
    """Running (not a zombie) and still the same process."""
    found = proctree.read_stat(p.pid, proc_root)
    return (found is not None and found.start_ticks == p.start_ticks
            and found.state not in ("Z", "X"))


def children(pid: int, proc_root: str = "/proc") -> list[int]:
    """Direct children of ``pid``."""
    return proctree.children(pid, proc_root)


def _with_descendants(procs: Iterable[Proc], proc_root: str) -> list[Proc]:
    """``procs`` and all their descendants, parents first."""
    found = list(dict.fromkeys(procs))
    for pid in proctree.descendants([p.pid for p in found], proc_root) or ():
        p = proc(pid, proc_root)
        if p is not None:
            found.append(p)
    return found


def subtree(roots: Iterable[int], proc_root: str = "/proc") -> list[Proc]:
    """``roots`` and all their descendants, parents first."""
    return _with_descendants([p for pid in roots if (p := proc(pid, proc_root)) is not None],
                             proc_root)


def _uptime_ticks(proc_root: str) -> int | None:
    """Now, in the unit of a process's start time (clock ticks since boot), rounded down."""
    try:
        with open(f"{proc_root}/uptime", "rb") as fh:
            seconds = float(fh.read().split()[0])
        return max(0, int(seconds * os.sysconf("SC_CLK_TCK")) - 1)
    except (OSError, ValueError, IndexError):
        return None


def set_child_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux >= 3.4)."""
    try:
        # Imported here, only when orphans are handled: the master's imports are
        # every worker's (by fork), and ctypes is a quarter of a MiB there.
        import ctypes

        # The process's own symbols: find_library would run ldconfig in a subprocess.
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _signal(p: Proc, sig: int, proc_root: str) -> bool:
    # alive() spares a zombie the signal; send_signal() is what makes it safe.
    return alive(p, proc_root) and send_signal(p, sig, proc_root)


def _reap_own(procs: Iterable[Proc], proc_root: str) -> None:
    # Our own zombies stay until we wait for them: reap those we are waiting on.
    me = os.getpid()
    for p in procs:
        found = proctree.read_stat(p.pid, proc_root)
        if (found is not None and found.ppid == me and found.start_ticks == p.start_ticks
                and found.state in ("Z", "X")):
            with contextlib.suppress(OSError):
                os.waitpid(p.pid, os.WNOHANG)


def terminate(procs: list[Proc], grace: float, proc_root: str = "/proc",
              sleep: Callable[[float], None] = time.sleep) -> tuple[int, int]:
    """SIGTERM all, wait up to ``grace`` s, SIGKILL the rest: (signalled, killed)."""
    termed = [p for p in procs if _signal(p, signal.SIGTERM, proc_root)]
    deadline = time.monotonic() + grace
    left = termed
    while left and time.monotonic() < deadline:
        sleep(0.02)
        _reap_own(left, proc_root)
        left = [p for p in left if alive(p, proc_root)]
    killed = [p for p in procs if _signal(p, signal.SIGKILL, proc_root)]
    if killed:
        end = time.monotonic() + 1.0
        while killed and time.monotonic() < end:
            _reap_own(killed, proc_root)
            if not any(alive(p, proc_root) for p in killed):
                break
            sleep(0.01)
    return len(termed), len(killed)


def terminate_descendants(grace: float, mode: str = actions.ON,
                          proc_root: str = "/proc") -> None:
    """In a worker that is exiting: end every descendant. Never raises."""
    try:
        me = os.getpid()
        procs = [p for p in subtree(children(me, proc_root), proc_root)]
        if not procs:
            return
        fields = {"pid": me, "descendants": len(procs), "pids": [p.pid for p in procs][:50],
                  "grace_seconds": grace}

        def end_them() -> None:
            termed, killed = terminate(procs, grace, proc_root)
            actions.emit(_log, "descendants_terminated",
                         {"pid": me, "terminated": termed, "killed": killed})

        _reaped(actions.perform(mode, _log, "terminate_descendants", fields, end_them),
                mode, len(procs))
    except Exception:
        _log.exception("memwarden could not terminate the worker's descendants")


def _reaped(done: bool, mode: str, count: int) -> None:
    """Publish what :func:`memwarden.hold.perform.perform` did with ``count`` processes:
    ended them (on) or logged that it would have (dry-run); off publishes nothing."""
    if done or mode == actions.DRY_RUN:
        events.publish(events.OrphansReaped(count, dry_run=not done))


def find_orphans(master_children: Mapping[int, Proc], known: set[int],
                 baseline: set[Proc], previous_children: set[Proc],
                 recorded: Mapping[Proc, int], dead_worker: int | None,
                 dead_worker_start: int | None) -> list[Proc]:
    """Which children of the master are orphans. Pure.

    ``known``: pids gunicorn manages (workers, the dirty arbiter, a re-exec'd
    master). ``baseline``: the master's children before any worker forked.
    ``previous_children``: its children at the last tick. ``recorded``: each
    worker descendant seen, with its worker's pid. ``dead_worker``: the worker
    that just died, if any: only then are unrecorded newcomers considered.
    """
    found: list[Proc] = []
    for pid, p in master_children.items():
        if pid in known or p in baseline:
            continue
        owner = recorded.get(p)
        if owner is not None and owner not in known:
            found.append(p)  # a descendant of a worker that is gone
        elif (owner is None and dead_worker is not None and dead_worker_start is not None
              and p.start_ticks >= dead_worker_start and p not in previous_children):
            found.append(p)  # born under the dead worker since the last tick
    return found


class OrphanReaper:
    """The master's side: adopt, record, and end the orphans of killed workers."""

    _MAX_RECORDS = 8192

    def __init__(self, grace: float, mode: str = actions.ON, proc_root: str = "/proc",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.mode = mode
        self.proc_root = proc_root
        self._clock = clock
        self._pid = os.getpid()
        self.subreaper = False
        self._baseline: set[Proc] = set()
        self._previous: set[Proc] = set()
        self._recorded: dict[Proc, int] = {}  # a worker's descendant -> the worker's pid
        self._starts: dict[int, int] = {}  # worker pid -> its start time
        self._forks: dict[int, int] = {}  # worker key (age) -> clock ticks at pre_fork
        self._pending: dict[Proc, float] = {}  # sent SIGTERM -> when SIGKILL is due

    def start(self) -> None:
        """``when_ready``: become a subreaper; remember the master's own children."""
        self._pid = os.getpid()
        if self.mode != actions.OFF:
            self.subreaper = set_child_subreaper()
            if not self.subreaper:
                _log.warning("memwarden could not make the master a child subreaper: "
                             "descendants of a killed worker may outlive it")
        self._baseline = set(self._children().values())
        self._previous = set(self._baseline)

    def _children(self) -> dict[int, Proc]:
        out: dict[int, Proc] = {}
        for pid in children(self._pid, self.proc_root):
            p = proc(pid, self.proc_root)
            if p is not None:
                out[pid] = p
        return out

    def forking(self, key: int) -> None:
        """``pre_fork``: the worker about to fork starts no earlier than now, which
        matters for one killed before any tick saw it."""
        now = _uptime_ticks(self.proc_root)
        if now is not None:
            self._forks[key] = now

    def record(self, worker_pid: int, descendant_pids: Iterable[int]) -> None:
        """Each tick, for each worker: its start time and its descendants now."""
        if worker_pid not in self._starts:
            me = proc(worker_pid, self.proc_root)
            if me is not None:
                self._starts[worker_pid] = me.start_ticks
        for pid in descendant_pids:
            p = proc(pid, self.proc_root)
            if p is not None and p not in self._recorded:
                self._recorded[p] = worker_pid

    def tick(self, known: set[int]) -> None:
        """Each master tick: finish pending kills, end stragglers, note the children."""
        now = self._clock()
        for p, due in list(self._pending.items()):
            if not alive(p, self.proc_root):
                del self._pending[p]
            elif now >= due:
                del self._pending[p]
                if _signal(p, signal.SIGKILL, self.proc_root):
                    actions.emit(_log, "orphan_killed", {"pid": self._pid, "orphan": p.pid,
                                                         "signal": "SIGKILL"})
        children_now = self._children()
        self._sweep(children_now, known, None)
        self._previous = set(children_now.values())
        if len(self._recorded) > self._MAX_RECORDS:  # a worker that spawns without end
            self._recorded = {p: w for p, w in self._recorded.items()
                              if alive(p, self.proc_root)}

    def worker_exited(self, worker_pid: int, known: set[int], key: int | None = None) -> None:
        """``child_exit``: end the orphans the worker left."""
        forked = self._forks.pop(key, None) if key is not None else None
        if worker_pid not in self._starts and forked is not None:
            self._starts[worker_pid] = forked
        children_now = self._children()
        self._sweep(children_now, known, worker_pid)
        self._previous = set(children_now.values())
        self._starts.pop(worker_pid, None)
        # Its records stay while the processes live: one may be adopted later
        # (when its own parent exits) and is then ended by a tick.
        for p in [p for p, w in self._recorded.items() if w == worker_pid]:
            if not alive(p, self.proc_root):
                del self._recorded[p]

    def _sweep(self, children_now: dict[int, Proc], known: set[int],
               dead_worker: int | None) -> None:
        orphans = find_orphans(children_now, known, self._baseline, self._previous,
                               self._recorded, dead_worker,
                               self._starts.get(dead_worker) if dead_worker else None)
        orphans = [p for p in orphans if p not in self._pending]
        if not orphans:
            return
        # The orphans as identified at this tick, not their pids read again.
        procs = [p for p in _with_descendants(orphans, self.proc_root)
                 if p not in self._pending]
        owners = sorted({self._recorded.get(o, dead_worker or 0) for o in orphans})
        fields = {"pid": self._pid, "worker_pids": owners, "orphans": len(procs),
                  "pids": [p.pid for p in procs][:50], "grace_seconds": self.grace}

        def end_them() -> None:
            due = self._clock() + self.grace
            for p in procs:
                if _signal(p, signal.SIGTERM, self.proc_root):
                    self._pending[p] = due

        done = actions.perform(self.mode, _log, "terminate_orphans", fields, end_them)
        _reaped(done, self.mode, len(procs))
        if not done:
            # dry-run: treat them as the master's own from now on, so that the
            # line is not repeated on every tick
            for p in procs:
                self._recorded.pop(p, None)
                self._baseline.add(p)

    def shutdown(self) -> None:
        """``on_exit``: no tick will come again, so finish the pending kills now."""
        deadline = self._clock() + self.grace
        while self._pending and self._clock() < deadline:
            self._pending = {p: d for p, d in self._pending.items()
                             if alive(p, self.proc_root)}
            time.sleep(0.05)
        for p in self._pending:
            _signal(p, signal.SIGKILL, self.proc_root)
        self._pending.clear()
