"""Rolling recycles: at most N workers recycling at once, across processes.

A recycle takes a worker away from its decision until its replacement has
booted (imported the app), so that is what a slot covers. Slots are files
locked with ``flock``, whose locks belong to an open file description and
vanish when the last descriptor on it closes, so a worker that dies, even by
SIGKILL, never leaves a slot taken.

The hand-over to the replacement must leave no gap, or a second worker at a
request boundary could start recycling in the instant between. So in
``pre_fork`` the master opens, for the worker about to fork, one description
per slot and keeps a copy. A worker that recycles locks a slot on its own
description and writes its pid there. When it exits the lock outlives it
through the master's copy; the master (``child_exit``) sees its pid in the
slot and passes that description to the next worker it forks, which unlocks
it once booted (``post_worker_init``). Descriptions are close-on-exec, so a
browser started by a worker never holds a slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile

from memwarden.hold import perform as actions

__all__ = ["RecycleSlots"]

_log = logging.getLogger("memwarden.recycle")
_forking: list[RecycleSlots] = []  # the master's instance, for the at-fork hook


def _after_fork_in_parent() -> None:
    for slots in _forking:
        slots._forked()


_hook_registered = False


class RecycleSlots:
    """``count`` recycle slots in ``directory``."""

    def __init__(self, directory: str, count: int) -> None:
        self.directory = directory
        self.count = count
        self._master_pid = os.getpid()
        self._fds: dict[int, list[int]] = {}  # worker key (age) -> its descriptions
        self._pids: dict[int, int] = {}  # worker key -> pid, when known
        # (description, pid of the exited worker that still holds it locked)
        self._handover: list[tuple[int, int]] = []
        self._handing: tuple[int, int] | None = None  # passed to the worker being forked
        self._own: list[int] = []  # in a worker: its descriptions
        self._booting: tuple[int, int] | None = None  # in a worker: kept until booted
        self._held: int | None = None  # in a worker: the slot it holds

    @classmethod
    def create(cls, count: int) -> RecycleSlots:
        """In the master, before the workers fork."""
        global _hook_registered
        directory = tempfile.mkdtemp(prefix="memwarden-slots-")
        for i in range(count):
            with open(os.path.join(directory, f"slot-{i}"), "wb"):
                pass
        slots = cls(directory, count)
        _forking.append(slots)
        if not _hook_registered:
            os.register_at_fork(after_in_parent=_after_fork_in_parent)
            _hook_registered = True
        return slots

    def _path(self, i: int) -> str:
        return os.path.join(self.directory, f"slot-{i}")

    def _open_all(self) -> list[int]:
        return [os.open(self._path(i), os.O_RDWR | os.O_CLOEXEC) for i in range(self.count)]

    # -- master ------------------------------------------------------------------

    def prepare(self, key: int) -> None:
        """``pre_fork``: descriptions for the worker about to fork, and its hand-over."""
        if self._handing is not None:  # the previous fork did not happen
            self._handover.insert(0, self._handing)
            self._handing = None
        self._fds[key] = self._open_all()
        if self._handover:
            self._handing = self._handover.pop(0)

    def _forked(self) -> None:
        # The child holds its copy of the hand-over now: drop the master's.
        if os.getpid() == self._master_pid and self._handing is not None:
            with contextlib.suppress(OSError):
                os.close(self._handing[0])
            self._handing = None

    def seen(self, key: int, pid: int) -> None:
        self._pids[key] = pid

    def worker_exited(self, key: int, pid: int) -> int | None:
        """``child_exit``: keep the slot the worker held, for its replacement."""
        handed: int | None = None
        self._pids.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(self._marker(pid))
        for i, fd in enumerate(self._fds.pop(key, [])):
            try:
                holder = os.pread(fd, 32, 0).strip()
            except OSError:
                holder = b""
            if holder == str(pid).encode() and handed is None:
                self._handover.append((fd, pid))
                handed = i
            else:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return handed

    def forget_missing(self, live: set[int]) -> None:
        """Close descriptions of workers gone without a ``child_exit`` (rare)."""
        for key in [k for k in self._fds if k not in live]:
            self.worker_exited(key, self._pids.get(key, -1))

    def close(self) -> None:
        """``on_exit``: release everything and remove the directory."""
        for fds in self._fds.values():
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for fd, _ in self._handover:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._handover.clear()
        if self in _forking:
            _forking.remove(self)
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- worker ------------------------------------------------------------------

    def adopt(self, key: int) -> None:
        """``post_fork``, in the worker: keep its own descriptions, close the others'."""
        own = self._fds.get(key, [])
        keep = set(own)
        if self._handing is not None:
            keep.add(self._handing[0])
        handover = [fd for fd, _ in self._handover]
        for fd in [fd for fds in self._fds.values() for fd in fds] + handover:
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._own = own
        self._booting = self._handing
        self._handing = None
        self._fds = {}
        self._pids = {}
        self._handover = []
        if self in _forking:
            _forking.remove(self)

    def booted(self) -> None:
        """``post_worker_init``: the recycle this worker replaces is over."""
        booting, self._booting = self._booting, None
        if booting is None:
            return
        fd, replaced = booting
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        actions.emit(_log, "recycle_done", {"pid": os.getpid(), "replaces": replaced})

    def acquire(self) -> int | None:
        """Take a free slot for this worker until it exits; None if all are taken.

        With no slots (``count`` 0: no limit) every worker gets -1.
        """
        if self._held is not None:
            return self._held
        if self.count == 0:
            self._held = -1
            return -1
        if not self._own:
            try:  # pre_fork did not run (a custom config): exclusive until exit, no hand-over
                self._own = self._open_all()
            except OSError:
                _log.warning("memwarden cannot open recycle slots in %s", self.directory)
                return None
        for i, fd in enumerate(self._own):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            except OSError:
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            except OSError:
                pass
            self._held = i
            return i
        return None

    @property
    def held(self) -> int | None:
        return self._held

    # -- both --------------------------------------------------------------------

    def _marker(self, pid: int) -> str:
        return os.path.join(self.directory, f"stopping-{pid}")

    def announce(self) -> None:
        """In a worker about to stop: tell the master, whose hard limit then
        does not stop it a second time."""
        with contextlib.suppress(OSError), open(self._marker(os.getpid()), "wb"):
            pass

    def stopping(self, pid: int) -> bool:
        return os.path.exists(self._marker(pid))
