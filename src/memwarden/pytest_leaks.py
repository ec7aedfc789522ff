"""What a leak is, and the check no_leaks runs: a snapshot before the test,
another after (polled until it settles), and the difference named."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from memwarden.pytest_markers import marker_options, number, signed
from memwarden.pytest_snapshot import (
    DEFAULT_KINDS,
    _alive,
    _native_thread_name,
    _pid_command,
    _Snapshot,
    _snapshot,
    _task_name,
    _tracked_sets,
)
from memwarden.see import census as _census
from memwarden.system import probe as _probe

__all__ = ["Leak", "LeakCheck"]

# "thread:NAME", "fd:TARGET", "child:CMDLINE": ignore items whose name starts so.
_PREFIX_KINDS = {"thread:": "threads", "fd:": "fds", "child:": "children"}
_NO_LEAKS_OPTIONS = frozenset({"settle", "ignore", "kinds"})
_MAX_NAMES = 8
_NAME_WIDTH = 80
_POLL_FIRST_S = 0.01
_POLL_MAX_S = 0.1


# -- what a leak is -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leak:
    """One leaked kind: its count before and after the test, and what is new.

    ``leaked`` is how much of it counts as leaked, when that differs from the
    count's growth: new threads when an old one ended, or growth less what an
    ignore prefix matched.
    """

    kind: str
    before: int | float
    after: int | float
    names: tuple[str, ...] = ()
    leaked: int | float | None = None

    @property
    def amount(self) -> int | float:
        return self.after - self.before if self.leaked is None else self.leaked

    def line(self) -> str:
        """``fds: 12 -> 15 (+3): pipe:[123], anon_inode:[eventpoll], ...``"""
        text = (f"{self.kind}: {number(self.before)} -> {number(self.after)} "
                f"({signed(self.after - self.before)})")
        if self.names:
            shown = [_short(name) for name in self.names[:_MAX_NAMES]]
            more = len(self.names) - len(shown)
            if more > 0:
                shown.append(f"... and {more} more")
            text += ": " + ", ".join(shown)
        return text


def _short(text: str) -> str:
    return text if len(text) <= _NAME_WIDTH else text[: _NAME_WIDTH - 3] + "..."


# -- no_leaks ----------------------------------------------------------------------------


class LeakCheck:
    """The no_leaks check for one test: its options, baseline and verdict.

    The ``no_leaks`` fixture returns it; a test may widen ``ignore`` before it
    ends, e.g. ``no_leaks.ignore.add("thread:pool-")``.
    """

    __slots__ = ("_baseline", "_last", "ignore", "kinds", "settle")

    def __init__(self, settle: float = 2.0, ignore: Iterable[str] | str = (),
                 kinds: Iterable[str] | str | None = None) -> None:
        if isinstance(settle, bool) or not isinstance(settle, int | float) or settle < 0:
            raise ValueError(f"settle must be a number of seconds >= 0, not {settle!r}")
        self.settle = float(settle)
        self.ignore: set[str] = _names("ignore", ignore)
        self.kinds: set[str] | None = None if kinds is None else _names("kinds", kinds)
        self._baseline: _Snapshot | None = None
        self._last: _Snapshot | None = None

    @classmethod
    def from_marker(cls, marker: pytest.Mark | None) -> LeakCheck:
        if marker is None:
            return cls()
        return cls(**marker_options(marker, _NO_LEAKS_OPTIONS,
                                    "no_leaks(settle=2.0, ignore=(), kinds=None)"))

    def _checked_kinds(self) -> list[str]:
        if self.kinds is not None:
            chosen = sorted(self.kinds)
        else:
            chosen = list(DEFAULT_KINDS) + sorted(_tracked_sets())
            if self._baseline is not None:
                chosen += sorted(set(self._baseline.objects) - set(chosen))
        return [kind for kind in chosen if kind not in self.ignore]

    def _prefixes(self, kind: str) -> tuple[str, ...]:
        return tuple(entry[len(tag):] for entry in self.ignore
                     for tag, target in _PREFIX_KINDS.items()
                     if target == kind and entry.startswith(tag))

    def start(self) -> None:
        """Take the baseline. Call before the code under test runs."""
        _census.enable_loop_tracking()
        # The probe keeps a statm descriptor open once asked for RSS: open it now,
        # or the first RSS reading inside the test looks like a leaked fd.
        _probe.current().rss_bytes()
        gc.collect()
        self._baseline = _snapshot(self._filter())

    def _filter(self) -> frozenset[str] | None:
        return None if self.kinds is None else frozenset(self.kinds)

    def leaks(self) -> list[Leak]:
        """What is left now compared with the baseline, without waiting."""
        before = self._baseline
        if before is None:
            raise RuntimeError("LeakCheck.leaks() before start()")
        after = self._last = _snapshot(self._filter())
        found: list[Leak] = []
        for kind in self._checked_kinds():
            leak = self._compare(kind, before, after)
            if leak is not None:
                found.append(leak)
        return found

    def wait(self) -> list[Leak]:
        """Collect garbage and poll until nothing has leaked or ``settle`` has passed."""
        deadline = time.monotonic() + self.settle
        delay = _POLL_FIRST_S
        while True:
            gc.collect()
            found = self.leaks()
            remaining = deadline - time.monotonic()
            if not found or remaining <= 0:
                return found
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX_S)

    def unknown_kinds(self) -> list[str]:
        """Kinds named in ``kinds`` that no census knows: most likely a typo."""
        if self.kinds is None:
            return []
        known = set(DEFAULT_KINDS) | set(_tracked_sets())
        for snap in (self._baseline, self._last):
            if snap is not None:
                known |= set(snap.objects) | set(snap.gauges)
        return sorted(self.kinds - known)

    def message(self, leaks: Iterable[Leak]) -> str:
        leaks = list(leaks)
        # The first line is what pytest's short summary shows: make it say what leaked.
        summary = ", ".join(f"{leak.kind} {signed(leak.amount)}" for leak in leaks)
        lines = [f"memwarden no_leaks: leaked {summary} "
                 f"(still there after a {self.settle:g} s settle)"]
        lines += [f"  {leak.line()}" for leak in leaks]
        return "\n".join(lines)

    # -- per kind -----------------------------------------------------------------------

    def _compare(self, kind: str, before: _Snapshot, after: _Snapshot) -> Leak | None:
        if kind == "threads":
            return self._threads(before, after)
        if kind == "fds":
            if before.fds is None or after.fds is None:
                return None
            new = sorted(fd for fd, target in after.fds.items()
                         if before.fds.get(fd) != target)
            return self._counted(kind, len(before.fds), len(after.fds),
                                 [after.fds[fd] for fd in new])
        if kind == "children":
            if before.children is None or after.children is None:
                return None
            old = set(before.children)
            commands = {pid: _pid_command(pid) for pid in after.children if pid not in old}
            return self._counted(kind, len(before.children), len(after.children),
                                 list(commands.values()),
                                 [f"pid {pid} ({command})" for pid, command in commands.items()])
        if kind == "asyncio.loops":
            new_loops = [repr(loop) for loop in after.loops if loop not in before.loops]
            return self._counted(kind, before.loop_count, after.loop_count, new_loops)
        if kind == "asyncio.tasks":
            new_tasks = [_task_name(task) for task in after.tasks if task not in before.tasks]
            return self._counted(kind, before.task_count, after.task_count, new_tasks)
        if kind in after.objects or kind in before.objects:
            old_objects = _alive(before.objects.get(kind, {}))
            now = _alive(after.objects.get(kind, {}))
            new_objects = [repr(obj) for key, obj in now.items()
                           if old_objects.get(key) is not obj]
            return self._counted(kind, len(old_objects), len(now), new_objects)
        if kind in after.gauges and kind in before.gauges:
            return self._counted(kind, before.gauges[kind], after.gauges[kind], [])
        return None

    def _counted(self, kind: str, before: int | float, after: int | float,
                 new: list[str], shown: list[str] | None = None) -> Leak | None:
        """Count rule: a kind leaks when there is more of it than before.

        New items an ignore prefix matches (on ``new``; ``shown`` is how they
        are named, when that differs) are taken off the growth first.
        """
        prefixes = self._prefixes(kind)
        names = new if shown is None else shown
        kept = [name for key, name in zip(new, names, strict=True)
                if not _matches(key, prefixes)]
        growth = (after - before) - (len(new) - len(kept))
        if growth <= 0:
            return None
        return Leak(kind, before, after, tuple(kept), growth)

    def _threads(self, before: _Snapshot, after: _Snapshot) -> Leak | None:
        """Identity rule, as goleak: any thread alive now that was not before."""
        prefixes = self._prefixes("threads")
        names: list[str] = []
        owned: set[int] = set()
        for thread in threading.enumerate():
            if thread.native_id is not None:
                owned.add(thread.native_id)
            if thread in before.threads or not thread.is_alive():
                continue
            if not _matches(thread.name, prefixes):
                names.append(thread.name + (" (daemon)" if thread.daemon else ""))
        if before.tids is not None and after.tids is not None:
            # Threads started by C code (no threading.Thread object) show only in /proc.
            for tid in sorted(after.tids - before.tids - owned):
                name = _native_thread_name(tid)
                if name != "?" and not _matches(name, prefixes):
                    names.append(f"native thread {tid} ({name})")
        if not names:
            return None
        return Leak("threads", before.thread_count, after.thread_count, tuple(names),
                    len(names))


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and name.startswith(prefixes)


def _names(option: str, value: Iterable[str] | str) -> set[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{option} must be a string or strings, not {value!r}")
    return set(items)
