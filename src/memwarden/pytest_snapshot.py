"""What exists in this process now, by kind, for the no_leaks check: threads,
fds, child processes, open event loops, pending tasks and the census's
tracked objects, each with a name a failure message can show."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# limit_growth lives in its own module; its hook is registered from here.
from memwarden.pytest_growth import _grew_every_run as _grew_every_run
from memwarden.pytest_growth import pytest_pyfunc_call as pytest_pyfunc_call
from memwarden.see import census as _census
from memwarden.system import probe as _probe

__all__ = ["DEFAULT_KINDS"]

# Kinds no_leaks checks by default, besides every kind registered with track().
# blocks, children_pss_bytes and asyncio.loops_alive are sizes, not resources
# a test owns: they move for reasons a test does not control.
DEFAULT_KINDS = ("threads", "fds", "children", "asyncio.loops", "asyncio.tasks")

#
# census() gives counts; naming what leaked needs the live sets behind them. census
# keeps those private (_tracked, _loops), so this section is the only place that
# reaches in.


def _proc_self() -> str:
    return f"/proc/{os.getpid()}"


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def _fd_targets() -> dict[int, str] | None:
    """Open fds and what they point to; None without /proc."""
    base = f"{_proc_self()}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    targets: dict[int, str] = {}
    for name in names:
        try:
            targets[int(name)] = os.readlink(f"{base}/{name}")
        except (OSError, ValueError):
            continue  # the descriptor listdir itself used, closed by now
    return targets


def _native_tids() -> frozenset[int] | None:
    try:
        return frozenset(int(tid) for tid in os.listdir(f"{_proc_self()}/task"))
    except (OSError, ValueError):
        return None


def _native_thread_name(tid: int) -> str:
    comm = _read_text(f"{_proc_self()}/task/{tid}/comm")
    return comm.strip() if comm else "?"


def _pid_command(pid: int) -> str:
    """The command line, or ``[comm]`` (plus `` zombie``) when it has none."""
    raw = _read_text(f"/proc/{pid}/cmdline")
    cmdline = raw.replace("\0", " ").strip() if raw else ""
    if cmdline:
        return cmdline
    stat = _read_text(f"/proc/{pid}/stat") or ""
    # The command name may contain spaces and parentheses: the state follows the last ')'.
    comm = stat[stat.find("(") + 1: stat.rfind(")")] if ")" in stat else "?"
    state = stat[stat.rfind(")") + 2: stat.rfind(")") + 3] if ")" in stat else ""
    return f"[{comm}]{' zombie' if state == 'Z' else ''}"


def _open_loops() -> list[asyncio.AbstractEventLoop]:
    return _census.open_loops()


def _pending_tasks(loops: Iterable[asyncio.AbstractEventLoop]) -> list[asyncio.Task[Any]]:
    tasks: list[asyncio.Task[Any]] = []
    for loop in loops:
        for _ in range(3):
            try:
                tasks.extend(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                continue  # another thread's loop changed its task set mid-copy
    return tasks


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    qualname = getattr(coro, "__qualname__", type(coro).__name__)
    return f"{task.get_name()} ({qualname})"


def _tracked_sets() -> dict[str, dict[int, weakref.ref[Any]]]:
    """Tracked objects by kind, as id -> weak reference (works for unhashable ones)."""
    return {kind: {id(obj): weakref.ref(obj) for obj in _census.tracked_objects(kind)}
            for kind in _census.tracked_kinds()}


def _alive(refs: dict[int, weakref.ref[Any]]) -> dict[int, Any]:
    found = {}
    for key, ref in refs.items():
        obj = ref()
        if obj is not None:
            found[key] = obj
    return found


def _is_gauge(kind: str) -> bool:
    return kind not in DEFAULT_KINDS and kind not in _census.tracked_kinds()


@dataclass(slots=True)
class _Snapshot:
    threads: weakref.WeakSet[threading.Thread]
    thread_count: int
    tids: frozenset[int] | None
    fds: dict[int, str] | None
    children: tuple[int, ...] | None
    loops: weakref.WeakSet[asyncio.AbstractEventLoop]
    loop_count: int
    tasks: weakref.WeakSet[asyncio.Task[Any]]
    task_count: int
    objects: dict[str, dict[int, weakref.ref[Any]]]
    gauges: dict[str, int | float]


def _snapshot(kinds: frozenset[str] | None) -> _Snapshot:
    """What exists now. ``kinds`` None: everything no_leaks can check."""

    def wanted(kind: str) -> bool:
        return kinds is None or kind in kinds

    threads = threading.enumerate()
    tids = _native_tids()
    loops = _open_loops() if wanted("asyncio.loops") or wanted("asyncio.tasks") else []
    tasks = _pending_tasks(loops) if wanted("asyncio.tasks") else []
    objects = {kind: live for kind, live in _tracked_sets().items() if wanted(kind)}
    gauges: dict[str, int | float] = {}
    if kinds is not None and any(_is_gauge(kind) for kind in kinds):
        gauges = _census.census(descendants="children_pss_bytes" in kinds)
    return _Snapshot(
        threads=weakref.WeakSet(threads),
        thread_count=len(tids) if tids is not None else len(threads),
        tids=tids,
        fds=_fd_targets() if wanted("fds") else None,
        children=_probe.current().descendants() if wanted("children") else None,
        loops=weakref.WeakSet(loops),
        loop_count=len(loops),
        tasks=weakref.WeakSet(tasks),
        task_count=len(tasks),
        objects=objects,
        gauges=gauges,
    )
