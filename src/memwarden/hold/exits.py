"""How a worker died: exit code or signal, and whether the OOM killer did it.

gunicorn 27 reads the wait status in ``Arbiter.reap_workers`` and passes
only the worker to ``child_exit``. So in the master ``os.waitpid`` is wrapped
(:func:`install`) to keep the status of each process it reaps until
``child_exit`` takes it; the wrapper is transparent and records nothing in
any other process (the workers inherit it over fork).

The OOM killer leaves a trace in the cgroup's ``oom_kill`` counter
(``memory.events`` in v2, ``memory.oom_control`` in v1), not in the status:
a SIGKILL is a SIGKILL. :class:`OomTracker` follows the counter and lets a
SIGKILLed worker claim an increase seen around its death.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ExitStatus", "OomTracker", "install", "pop_status", "uninstall"]

_MAX_KEPT = 1024
_statuses: OrderedDict[int, int] = OrderedDict()
_lock = threading.Lock()
_recording_pid = -1
_original_waitpid: Callable[[int, int], tuple[int, int]] | None = None


def install() -> None:
    """In the master: keep the wait status of every process it reaps."""
    global _recording_pid, _original_waitpid
    _recording_pid = os.getpid()
    if _original_waitpid is not None:
        return
    original = os.waitpid

    def recording_waitpid(pid: int, options: int) -> tuple[int, int]:
        wpid, status = original(pid, options)
        if wpid > 0 and os.getpid() == _recording_pid:
            with _lock:
                _statuses[wpid] = status
                while len(_statuses) > _MAX_KEPT:
                    _statuses.popitem(last=False)
        return wpid, status

    _original_waitpid = original
    os.waitpid = recording_waitpid


def uninstall() -> None:
    global _original_waitpid, _recording_pid
    if _original_waitpid is not None:
        os.waitpid = _original_waitpid
        _original_waitpid = None
    _recording_pid = -1
    with _lock:
        _statuses.clear()


def pop_status(pid: int) -> int | None:
    with _lock:
        return _statuses.pop(pid, None)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    exit_code: int | None = None
    signal: int | None = None
    core_dumped: bool = False

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status), core_dumped=os.WCOREDUMP(status))
        if os.WIFEXITED(status):
            return cls(exit_code=os.WEXITSTATUS(status))
        return cls()

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"


class OomTracker:
    """Increases of the cgroup's oom_kill counter, claimable for a short while.

    The counter rises when the kernel picks its victim; the master hears of
    the death a little later. An increase seen by a tick in between stays
    claimable for ``window`` seconds; one nobody claims (the OOM killer took a
    browser, not a worker) is reported by :meth:`unclaimed`.
    """

    def __init__(self, read: Callable[[], int | None], window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._window = window
        self._clock = clock
        self._last = read()
        self._pending: list[float] = []  # one entry per kill: when it was seen

    def poll(self) -> None:
        value = self._read()
        if value is None:
            return
        if self._last is not None and value > self._last:
            now = self._clock()
            self._pending.extend([now] * (value - self._last))
        self._last = value

    def claim(self) -> bool:
        """For a worker that died by SIGKILL: was it the OOM killer?"""
        self.poll()
        if self._pending:
            self._pending.pop(0)
            return True
        return False

    def unclaimed(self) -> int:
        """Kills older than the window that no worker claimed (and forget them)."""
        self.poll()
        cutoff = self._clock() - self._window
        old = [t for t in self._pending if t < cutoff]
        self._pending = [t for t in self._pending if t >= cutoff]
        return len(old)
