"""Process memory probes that never raise.

Every reader returns ``None`` when its source is unavailable (no /proc, a
permission error, a kernel without the file) and logs that once per process,
so a request never fails because a probe did. The /proc and /sys roots are
parameters so tests can point a probe at a recorded tree.

The per-request reading is RSS from ``statm``, read with ``pread`` on a
descriptor kept open: about 1 us against 10 us for open+read. The descriptor
must be opened in the process it describes: ``/proc/self/statm`` opened in the
gunicorn master keeps reading the master after fork. So it is opened lazily
and reopened whenever ``os.getpid()`` changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

from memwarden.system import proctree
from memwarden.system.cgroup import CgroupMemory, from_proc_cgroup

__all__ = [
    "CgroupMemory",
    "Descendants",
    "Probe",
    "SmapsRollup",
    "allocated_blocks",
    "configure",
    "configured_proc_root",
    "current",
]

_log = logging.getLogger("memwarden.probe")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class SmapsRollup:
    rss_bytes: int
    pss_bytes: int
    uss_bytes: int
    swap_bytes: int


@dataclass(frozen=True, slots=True)
class Descendants:
    pids: tuple[int, ...]
    pss_bytes: int | None
    rss_bytes: int | None

    @property
    def count(self) -> int:
        return len(self.pids)


# Forks seen by this process's lineage: a descriptor opened before the last
# fork reads the parent. Counting forks (rather than comparing os.getpid(),
# a system call on current glibc) keeps the per-request read to one syscall.
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


def allocated_blocks() -> int:
    """``sys.getallocatedblocks()``: ~0.7 us and free of allocator noise."""
    return sys.getallocatedblocks()


class Probe:
    """Memory probes for one process (this one by default)."""

    __slots__ = ("_degraded", "_fd", "_fd_forks", "_fd_owner", "_pid", "_statm", "proc_root",
                 "sys_root")

    def __init__(self, proc_root: str = "/proc", sys_root: str = "/sys",
                 pid: int | None = None) -> None:
        self.proc_root = proc_root
        self.sys_root = sys_root
        self._pid = pid
        self._fd = -1
        self._fd_forks = -1  # _forks when it was opened
        self._fd_owner = -1  # the process that opened it
        self._degraded: set[str] = set()
        # The last statm text read and the RSS in it: the same text again (RSS
        # mostly stands still from one request to the next) is not parsed again.
        self._statm: tuple[bytes, int] = (b"", 0)

    # -- helpers -----------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._pid if self._pid is not None else os.getpid()

    def _degrade(self, what: str, exc: BaseException) -> None:
        # Once per probe and process: a forked worker inherits the parent's set,
        # so the key includes the pid.
        pid = os.getpid()
        if f"{pid}:root" in self._degraded:
            return
        if not os.path.isdir(f"{self.proc_root}/{self.pid}"):
            # The whole tree is missing (no /proc, or the pid is gone): one
            # warning says it all, rather than one per probe kind.
            self._degraded.add(f"{pid}:root")
            _log.warning("memwarden cannot read %s/%s (%s); memory fields are omitted",
                         self.proc_root, self.pid, exc.__class__.__name__)
            return
        key = f"{pid}:{what}"
        if key not in self._degraded:
            self._degraded.add(key)
            _log.warning("memwarden probe %s unavailable (%s); its fields are omitted",
                         what, exc.__class__.__name__)

    def _read(self, what: str, path: str) -> str | None:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                return fh.read()
        except OSError as exc:
            self._degrade(what, exc)
            return None

    # -- per-request -------------------------------------------------------------

    def rss_bytes(self) -> int | None:
        """Resident set size now, from statm via pread on a kept descriptor."""
        fd = self._fd
        if fd < 0 or self._fd_forks != _forks:
            fd = self._reopen_statm(self.pid)
            if fd < 0:
                return None
        try:
            data = os.pread(fd, 128, 0)
            last = self._statm
            if data == last[0]:
                return last[1]
            rss = int(data.split(None, 2)[1]) * _PAGE_SIZE
            self._statm = (data, rss)
            return rss
        except (OSError, ValueError, IndexError) as exc:
            self._degrade("statm", exc)
            return None

    def _reopen_statm(self, pid: int) -> int:
        old = self._fd
        # Only close a descriptor this process opened: after fork the inherited
        # one is a copy, closing it here is harmless, but it reads the parent.
        if old >= 0:
            with contextlib.suppress(OSError):
                os.close(old)
        self._fd = -1
        self._fd_forks = _forks
        self._fd_owner = os.getpid()
        try:
            self._fd = os.open(f"{self.proc_root}/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._degrade("statm", exc)
        return self._fd

    def close(self) -> None:
        # Compare with the opener, not the pid read: a probe of another pid
        # (Probe(pid=...)) would otherwise never close its descriptor.
        if self._fd >= 0 and self._fd_owner == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1

    # -- sampled -----------------------------------------------------------------

    def _status_field(self, name: str, pid: int | None = None) -> int | None:
        text = self._read("status", f"{self.proc_root}/{pid or self.pid}/status")
        if text is None:
            return None
        for line in text.splitlines():
            if line.startswith(name):
                try:
                    parts = line.split()
                    value = int(parts[1])
                    return value * 1024 if len(parts) > 2 and parts[2] == "kB" else value
                except (ValueError, IndexError) as exc:
                    self._degrade("status", exc)
                    return None
        return None

    def peak_rss_bytes(self) -> int | None:
        return self._status_field("VmHWM:")

    def threads(self) -> int | None:
        """OS threads (native ones included, which ``threading`` cannot see)."""
        return self._status_field("Threads:")

    def open_fds(self) -> int | None:
        try:
            return len(os.listdir(f"{self.proc_root}/{self.pid}/fd"))
        except OSError as exc:
            self._degrade("fd", exc)
            return None

    def smaps_rollup(self, pid: int | None = None) -> SmapsRollup | None:
        """PSS/USS: ~9 us per resident MiB, so sample it, never per request."""
        target = pid if pid is not None else self.pid
        path = f"{self.proc_root}/{target}/smaps_rollup"
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            if pid is None:
                self._degrade("smaps_rollup", exc)
            return None  # a descendant that just exited is not a degraded probe
        fields: dict[str, int] = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Swap"):
                try:
                    fields[key] = int(rest.split()[0]) * 1024
                except (ValueError, IndexError):
                    continue
        if "Rss" not in fields or "Pss" not in fields:
            return None
        return SmapsRollup(
            rss_bytes=fields["Rss"],
            pss_bytes=fields["Pss"],
            uss_bytes=fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            swap_bytes=fields.get("Swap", 0),
        )

    def descendants(self) -> tuple[int, ...] | None:
        """All descendant pids (children, grandchildren...), breadth first."""
        root = self.pid
        if not os.path.isdir(f"{self.proc_root}/{root}"):
            self._degrade("task", FileNotFoundError(f"{self.proc_root}/{root}"))
            return None
        found = proctree.descendants([root], self.proc_root, self._degrade)
        return None if found is None else tuple(found)

    def descendants_memory(self) -> Descendants | None:
        pids = self.descendants()
        if pids is None:
            return None
        pss = rss = 0
        seen_any = False
        for pid in pids:
            rollup = self.smaps_rollup(pid)
            if rollup is not None:
                seen_any = True
                pss += rollup.pss_bytes
                rss += rollup.rss_bytes
        if pids and not seen_any:
            return Descendants(pids, None, None)
        return Descendants(pids, pss, rss)

    # -- cgroup ------------------------------------------------------------------

    def cgroup_memory(self) -> CgroupMemory | None:
        """The memory cgroup this process sits in, v2 or v1 (hybrid hosts too)."""
        text = self._read("cgroup", f"{self.proc_root}/{self.pid}/cgroup")
        return None if text is None else from_proc_cgroup(text, self.sys_root)


_current: Probe | None = None
_roots = ("/proc", "/sys")


def configure(proc_root: str = "/proc", sys_root: str = "/sys") -> None:
    """Set the roots the process-wide probe reads (e.g. a host /proc mounted elsewhere)."""
    global _current, _roots
    if (proc_root, sys_root) != _roots:
        _roots = (proc_root, sys_root)
        if _current is not None:
            _current.close()
        _current = None


def configured_proc_root() -> str:
    """The /proc root set by :func:`configure` (``/proc`` until then)."""
    return _roots[0]


def current() -> Probe:
    """The probe for this process, created on first use (after fork in a worker)."""
    global _current
    if _current is None:
        _current = Probe(*_roots)
    return _current
