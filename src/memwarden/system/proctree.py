"""The process tree under /proc: stat lines, children, descendants.

One walker serves everything that needs a process's descendants (the
footprint, the master's hard limit, orphan reaping, the probe). It reads
``/proc/PID/task/TID/children`` where the kernel has it, and otherwise (a
kernel built without CONFIG_PROC_CHILDREN) maps each process to its parent
from ``/proc/*/stat``, once per walk. A helper Chromium spawns is then found
either way.

Nothing here raises on a process that exits mid-walk: it simply has no
children. Reads that fail for another reason (no /proc, a permission error)
are reported through ``on_error`` so a caller can log them its own way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Stat", "children", "descendants", "parse_stat", "read_stat", "subtree_pids"]

OnError = Callable[[str, OSError], None]


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/PID/stat that identify a process and its parent."""

    state: str
    ppid: int
    start_ticks: int  # field 22: clock ticks after boot; with the pid, an identity


def parse_stat(raw: bytes) -> Stat | None:
    """Parse a /proc/PID/stat line; None when it is malformed."""
    try:
        # The command name (field 2) may hold spaces and parentheses, ")" too:
        # the fields after it start after the last ')'.
        rest = raw[raw.rindex(b")") + 2:].split()
        return Stat(rest[0].decode("ascii"), int(rest[1]), int(rest[19]))
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def read_stat(pid: int, proc_root: str = "/proc") -> Stat | None:
    """The stat of ``pid`` under ``proc_root``; None when it is gone or unreadable."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return parse_stat(raw)


def _from_children_files(pid: int, proc_root: str, on_error: OnError | None
                         ) -> list[int] | None:
    """Children of ``pid`` from its threads' children files; None: use the stat scan."""
    task_dir = f"{proc_root}/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except FileNotFoundError:
        return []  # the process exited between reads
    except OSError as exc:
        if on_error is not None:
            on_error("task", exc)
        return None
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/children", "rb") as fh:
                kids.extend(int(x) for x in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"{task_dir}/{tid}"):
                continue  # the thread exited
            return None  # no CONFIG_PROC_CHILDREN
        except (OSError, ValueError):
            continue
    return kids


def _parents(proc_root: str, on_error: OnError | None) -> dict[int, list[int]] | None:
    """Every process's children, from one pass over /proc/*/stat."""
    try:
        entries = os.listdir(proc_root)
    except OSError as exc:
        if on_error is not None:
            on_error("proc", exc)
        return None
    parents: dict[int, list[int]] = {}
    for name in entries:
        if name.isdigit():
            stat = read_stat(int(name), proc_root)
            if stat is not None:
                parents.setdefault(stat.ppid, []).append(int(name))
    for kids in parents.values():
        kids.sort()  # listdir order is arbitrary; a stable order reads better
    return parents


class _Walk:
    """Children files while they work; the stat scan, once, as soon as they do not."""

    def __init__(self, proc_root: str, on_error: OnError | None) -> None:
        self.proc_root = proc_root
        self.on_error = on_error
        self.files = True
        self.parents: dict[int, list[int]] | None = None
        self.failed = False

    def children(self, pid: int) -> list[int]:
        if self.files:
            kids = _from_children_files(pid, self.proc_root, self.on_error)
            if kids is not None:
                return kids
            self.files = False
        if self.parents is None:
            self.parents = _parents(self.proc_root, self.on_error)
            if self.parents is None:
                self.failed = True
                self.parents = {}
        return self.parents.get(pid, [])


def children(pid: int, proc_root: str = "/proc") -> list[int]:
    """Direct children of ``pid``; none when it is gone or /proc cannot be read."""
    return _Walk(proc_root, None).children(pid)


def descendants(roots: Iterable[int], proc_root: str = "/proc",
                on_error: OnError | None = None) -> list[int] | None:
    """Every descendant of ``roots`` (not the roots), breadth first, each once.

    None only when neither the children files nor the stat files could be
    read; a root that is gone simply has none.
    """
    walk = _Walk(proc_root, on_error)
    frontier = list(dict.fromkeys(roots))
    seen = set(frontier)
    found: list[int] = []
    while frontier:
        nxt: list[int] = []
        for pid in frontier:
            for kid in walk.children(pid):
                # A pid reused while we walk could make a cycle; each pid once.
                if kid not in seen:
                    seen.add(kid)
                    nxt.append(kid)
        if walk.failed:
            return None
        found.extend(nxt)
        frontier = nxt
    return found


def subtree_pids(pid: int, proc_root: str = "/proc") -> tuple[int, ...]:
    """The descendants of ``pid`` (not itself), quietly: none if it is gone."""
    return tuple(descendants([pid], proc_root) or ())
