"""Worker slots: the small number that names a worker's series instead of its pid.

A pid label makes a new series at every recycle: a server that recycles all
day leaves Prometheus thousands of short series per worker. A slot is reused:
a new worker takes the lowest slot no live worker holds, so a server of N
workers keeps slots 0 to N-1 across any number of recycles.

A slot is a file in the multiprocess directory, held by an exclusive
``flock`` for the life of the worker and naming its pid. The lock belongs to
the worker's open file description, so it goes with the process however it
dies (SIGKILL included); close-on-exec keeps it out of programs the worker
starts. The bound: there are never more slots than workers alive at once,
plus any child a worker forks without exec (it shares the lock until it
exits). gunicorn starts a replacement only after a worker has exited, so
recycles keep 0 to N-1; a HUP reload runs the new workers beside the old
for a moment, so after one the slots may be any of 0 to 2N-1.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os

__all__ = ["PREFIX", "claim", "held_slot", "pids_by_slot", "release"]

_log = logging.getLogger("memwarden.exporters.prometheus")

PREFIX = ".memwarden-slot-"
# Far above any worker count; reached only if slots cannot be taken at all.
_MAX_SLOTS = 4096

# In a worker: (slot, its descriptor, the pid that took it).
_held: list[tuple[int, int, int]] = []


def _path(directory: str, slot: int) -> str:
    return os.path.join(directory, f"{PREFIX}{slot}")


def claim(directory: str) -> int | None:
    """Take the lowest free slot for this process (once per process); None if none
    could be taken (the directory is not writable)."""
    me = os.getpid()
    if _held and _held[0][2] == me:
        return _held[0][0]
    # Inherited over fork from a process that held one: that slot is not ours.
    _held.clear()
    for slot in range(_MAX_SLOTS):
        try:
            fd = os.open(_path(directory, slot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            _log.warning("memwarden could not take a worker slot in %s (%s): this worker's "
                         "series are labelled by pid", directory, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        # The pid is written after the lock is held, so a reader that finds a
        # live pid in a slot file knows that pid holds it.
        data = str(me).encode()
        os.pwrite(fd, data.ljust(16), 0)
        _held.append((slot, fd, me))
        return slot
    return None


def held_slot() -> int | None:
    """This process's slot, if it took one."""
    if _held and _held[0][2] == os.getpid():
        return _held[0][0]
    return None


def release() -> None:
    """Give the slot back before the process ends (tests; exit does it anyway)."""
    if _held and _held[0][2] == os.getpid():
        with contextlib.suppress(OSError):
            os.close(_held[0][1])
    _held.clear()


def pids_by_slot(directory: str) -> dict[int, int]:
    """pid -> slot as written in the slot files. A dead worker's file keeps its pid
    until the slot is taken again; should that pid be reused by a worker holding
    another slot, the newer write wins (the live holder wrote last)."""
    found: dict[int, tuple[int, int]] = {}  # pid -> (mtime_ns, slot)
    for path in glob.glob(os.path.join(directory, PREFIX + "*")):
        raw = os.path.basename(path)[len(PREFIX):]
        if not raw.isdigit():
            continue
        try:
            with open(path, "rb") as fh:
                text = fh.read(32).strip()
                mtime = os.fstat(fh.fileno()).st_mtime_ns
        except OSError:
            continue
        if text.isdigit():
            pid = int(text)
            seen = found.get(pid)
            if seen is None or seen[0] < mtime:
                found[pid] = (mtime, int(raw))
    return {pid: slot for pid, (_, slot) in found.items()}
