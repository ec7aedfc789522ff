"""Signals that reach the process meant, or none at all.

A pid alone names whichever process holds it now: once the process it was
read from has exited and been reaped, the kernel may hand the number to an
unrelated one. So a process is referred to by its pid and its start time
(field 22 of /proc/PID/stat), taken when it is first seen, and a signal goes
out only after that start time has been read again and found equal.

Where the kernel and Python have pidfds (Linux 5.3, Python 3.9), the pid is
first pinned with ``pidfd_open``, the start time checked, and the signal sent
through the pidfd: the process the start time was read from is then the one
signalled, with no window in between. Without pidfds the check and
``kill(2)`` are two steps; the window is the time between two system calls,
and only a pid recycled through the whole pid space in that time slips in.

Pids read under a /proc mounted from another pid namespace (``proc_root``
pointing at a host's or a sibling container's /proc) are not ours to signal:
the same number names another process here. When ``PROC_ROOT/self`` does not
resolve to this process's pid, every signal is refused, with one warning.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from dataclasses import dataclass

from memwarden.system import probe, proctree

__all__ = ["ProcessRef", "process_ref", "send_signal"]

_log = logging.getLogger("memwarden.safe_kill")

# (proc root, our pid) -> whether that root is our pid namespace. Keyed by pid
# too: a forked child has its own answer.
_namespace_ok: dict[tuple[str, int], bool] = {}
_warned: set[str] = set()
# Cleared when the kernel refuses pidfd_open as unsupported (or a seccomp
# filter forbids it): the start-time check alone remains.
_pidfd = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
_NO_PIDFD = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES})


@dataclass(frozen=True)
class ProcessRef:
    """A process, as opposed to a pid: the pair survives pid reuse."""

    pid: int
    start_ticks: int  # field 22 of /proc/PID/stat


def _root(proc_root: str | None) -> str:
    return proc_root if proc_root is not None else probe.configured_proc_root()


def process_ref(pid: int, proc_root: str | None = None) -> ProcessRef | None:
    """The process holding ``pid`` now; None when the pid is gone or unreadable."""
    if pid <= 0:
        return None
    stat = proctree.read_stat(pid, _root(proc_root))
    return None if stat is None else ProcessRef(pid, stat.start_ticks)


def _own_namespace(root: str) -> bool:
    me = os.getpid()
    key = (root, me)
    ok = _namespace_ok.get(key)
    if ok is None:
        try:
            ok = os.readlink(f"{root}/self") == str(me)
        except OSError:
            ok = False
        _namespace_ok[key] = ok
    if not ok and root not in _warned:
        _warned.add(root)
        _log.warning("memwarden will not signal processes found under %s: its %s/self "
                     "is not this process, so its pids belong to another pid namespace",
                     root, root)
    return ok


def _same(ref: ProcessRef, root: str) -> bool:
    stat = proctree.read_stat(ref.pid, root)
    return stat is not None and stat.start_ticks == ref.start_ticks


def _send_pidfd(ref: ProcessRef, sig: int, root: str) -> bool | None:
    """Through a pidfd; None when pidfds turn out to be unavailable here."""
    global _pidfd
    try:
        fd = os.pidfd_open(ref.pid)
    except OSError as exc:
        if exc.errno in _NO_PIDFD:
            _pidfd = False
            return None
        return False  # ESRCH: gone; EINVAL: a thread id, not a process
    try:
        # Checked after pinning: the pidfd holds whichever process had the pid
        # at open, and if the start time still matches, that is ours.
        if not _same(ref, root):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            _pidfd = False
            return None
        return False
    finally:
        os.close(fd)


def send_signal(ref: ProcessRef, sig: int, proc_root: str | None = None) -> bool:
    """Send ``sig`` to that very process. Never raises.

    True only when delivered to it; False when it is gone, its pid now names
    another process (the start time differs), or signalling is refused because
    ``proc_root`` shows another pid namespace (logged once).
    """
    try:
        root = _root(proc_root)
        if ref.pid <= 0 or not _own_namespace(root):
            return False
        if _pidfd:
            sent = _send_pidfd(ref, sig, root)
            if sent is not None:
                return sent
        if not _same(ref, root):
            return False
        os.kill(ref.pid, sig)
        return True
    except Exception:
        return False
