"""pytest plugin: leak tests in the spirit of Go's goleak and CPython's ``-R``.

``@pytest.mark.no_leaks`` (or the ``no_leaks`` fixture) fails a test that leaves
threads, fds, child processes, asyncio tasks, open event loops or live objects
of a kind registered with :func:`memwarden.see.census.track` behind it.

``@pytest.mark.limit_growth`` runs a sync test body ``warmup + runs`` times
within the same fixtures and fails when a metric grew in *every* measured run,
the rule CPython's refleak hunter uses so that one-off growth (a cache warming
up, an interned string) is not called a leak (:mod:`memwarden.pytest_growth`).

The plugin loads through the ``pytest11`` entry point and costs a marker lookup
per test when neither marker nor fixture is used.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# limit_growth lives in its own module; its hook is registered from here.
from memwarden.pytest_growth import _grew_every_run as _grew_every_run
from memwarden.pytest_growth import _num, _signed
from memwarden.pytest_growth import pytest_pyfunc_call as pytest_pyfunc_call
from memwarden.see import census as _census
from memwarden.system import probe as _probe

__all__ = ["Leak", "LeakCheck"]

# Kinds no_leaks checks by default, besides every kind registered with track().
# blocks, children_pss_bytes and asyncio.loops_alive are sizes, not resources
# a test owns: they move for reasons a test does not control.
_DEFAULT_KINDS = ("threads", "fds", "children", "asyncio.loops", "asyncio.tasks")
# "thread:NAME", "fd:TARGET", "child:CMDLINE": ignore items whose name starts so.
_PREFIX_KINDS = {"thread:": "threads", "fd:": "fds", "child:": "children"}
_NO_LEAKS_OPTIONS = frozenset({"settle", "ignore", "kinds"})
_MAX_NAMES = 8
_NAME_WIDTH = 80
_POLL_FIRST_S = 0.01
_POLL_MAX_S = 0.1

_CALL_PASSED = pytest.StashKey[bool]()


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
        text = (f"{self.kind}: {_num(self.before)} -> {_num(self.after)} "
                f"({_signed(self.after - self.before)})")
        if self.names:
            shown = [_short(name) for name in self.names[:_MAX_NAMES]]
            more = len(self.names) - len(shown)
            if more > 0:
                shown.append(f"... and {more} more")
            text += ": " + ", ".join(shown)
        return text


def _short(text: str) -> str:
    return text if len(text) <= _NAME_WIDTH else text[: _NAME_WIDTH - 3] + "..."


# -- identities: what exists now, by kind ----------------------------------------------
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
    return kind not in _DEFAULT_KINDS and kind not in _census.tracked_kinds()


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
        if marker.args:
            raise ValueError("keyword options only: "
                             "no_leaks(settle=2.0, ignore=(), kinds=None)")
        unknown = sorted(set(marker.kwargs) - _NO_LEAKS_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} "
                             f"(options: {', '.join(sorted(_NO_LEAKS_OPTIONS))})")
        return cls(**marker.kwargs)

    def _checked_kinds(self) -> list[str]:
        if self.kinds is not None:
            chosen = sorted(self.kinds)
        else:
            chosen = list(_DEFAULT_KINDS) + sorted(_tracked_sets())
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
        known = set(_DEFAULT_KINDS) | set(_tracked_sets())
        for snap in (self._baseline, self._last):
            if snap is not None:
                known |= set(snap.objects) | set(snap.gauges)
        return sorted(self.kinds - known)

    def message(self, leaks: Iterable[Leak]) -> str:
        leaks = list(leaks)
        # The first line is what pytest's short summary shows: make it say what leaked.
        summary = ", ".join(f"{leak.kind} {_signed(leak.amount)}" for leak in leaks)
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


@pytest.fixture(autouse=True)
def _memwarden_no_leaks_guard(request: pytest.FixtureRequest) -> Iterator[LeakCheck | None]:
    # Autouse from a plugin, so it is the first function-scoped fixture set up
    # and the last torn down: the baseline includes session/module fixtures,
    # and the check runs after the test's own fixtures have cleaned up.
    marker = request.node.get_closest_marker("no_leaks")
    if marker is None and "no_leaks" not in request.fixturenames:
        yield None
        return
    yield from _guard(request, marker)


def _guard(request: pytest.FixtureRequest, marker: pytest.Mark | None) -> Iterator[LeakCheck]:
    try:
        check = LeakCheck.from_marker(marker)
    except (TypeError, ValueError) as exc:
        error = str(exc)
    else:
        error = ""
    if error:  # failed outside the except block, so pytest shows no chained traceback
        pytest.fail(f"memwarden: bad no_leaks marker: {error}", pytrace=False)
    request.node.stash[_CALL_PASSED] = False
    check.start()
    yield check
    # A failed test already says what is wrong, and its traceback keeps frames
    # (and whatever they hold) alive: a leak report would only add noise.
    if not request.node.stash.get(_CALL_PASSED, False):
        return
    found = check.wait()
    unknown = check.unknown_kinds()
    if unknown:
        pytest.fail(f"memwarden: no_leaks kinds names unknown kind(s) {', '.join(unknown)}: "
                    f"not one of {', '.join(_DEFAULT_KINDS)}, a tracked kind or a gauge",
                    pytrace=False)
    if found:
        pytest.fail(check.message(found), pytrace=False)


@pytest.fixture
def no_leaks(request: pytest.FixtureRequest,
             _memwarden_no_leaks_guard: LeakCheck | None) -> Iterator[LeakCheck]:
    """Fail the test if it leaves threads, fds, children, asyncio tasks or loops,
    or tracked objects behind (as ``@pytest.mark.no_leaks`` with its defaults)."""
    if _memwarden_no_leaks_guard is not None:
        yield _memwarden_no_leaks_guard
    else:
        # Requested late through request.getfixturevalue(): check from here on.
        yield from _guard(request, request.node.get_closest_marker("no_leaks"))


# -- wiring ----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "no_leaks(settle=2.0, ignore=(), kinds=None): fail the test if, after garbage "
        "collection and up to `settle` seconds of waiting, it left threads, fds, child "
        "processes, asyncio tasks, open event loops or memwarden-tracked objects behind. "
        "`ignore` takes kind names and 'thread:', 'fd:', 'child:' name prefixes; `kinds` "
        "limits the check to the kinds named (memwarden).")
    config.addinivalue_line(
        "markers",
        "limit_growth(runs=5, warmup=2, metric='blocks', min_growth=1): run the sync test "
        "body warmup+runs times and fail if `metric` (blocks, rss or a census kind) grew "
        "by at least `min_growth` in every measured run (memwarden).")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Loop tracking is opt-in in the library; a session that checks for leaks opts in,
    # early, so loops made by fixtures are counted as well.
    for item in items:
        if (item.get_closest_marker("no_leaks") is not None
                or "no_leaks" in getattr(item, "fixturenames", ())):
            _census.enable_loop_tracking()
            return


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    return report
