"""Resource census: counts of the things that leak in practice.

Built-in counters (threads, fds, descendants and their PSS, asyncio tasks and
event loops) plus a registry users fill: ``track(obj, kind)`` counts live
objects of a kind through weak references, ``gauge(name, fn)`` reads a number
on each census. A census is sampled, never taken on every request, because
reading /proc for descendants costs far more than the per-request probe.
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from memwarden.system import probe as _probe

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "census",
    "declare",
    "enable_loop_tracking",
    "gauge",
    "open_loops",
    "remove_gauge",
    "track",
    "tracked_count",
    "tracked_kinds",
    "tracked_objects",
    "untrack_kind",
]

_log = logging.getLogger("memwarden.census")

# kind -> {id(obj): weak reference}. Keyed by id, not a WeakSet: a WeakSet
# hashes its members, and objects with __eq__ but no __hash__ (dataclasses
# such as mcp.Client) would make track() raise inside a request.
_tracked: dict[str, dict[int, weakref.ref[Any]]] = {}
_untrackable: set[str] = set()
_gauges: dict[str, Callable[[], float | int | None]] = {}
_failed_gauges: set[str] = set()
_registry_lock = threading.Lock()

# Event loops created in this process, when loop tracking is on.
_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_loop_tracking_on = False


def track(obj: object, kind: str) -> None:
    """Count ``obj`` under ``kind`` for as long as it is alive. Never raises.

    Tracking adds no strong reference, so it never keeps the object alive.
    An object that cannot be weakly referenced is not counted (logged once
    per kind).
    """
    with _registry_lock:
        live = _tracked.get(kind)
        if live is None:
            live = _tracked[kind] = {}
    key = id(obj)

    def forget(_ref: weakref.ref[Any], live: dict[int, weakref.ref[Any]] = live,
               key: int = key) -> None:
        # Only drop the entry if it is still this object's (ids are reused).
        if live.get(key) is _ref:
            live.pop(key, None)

    try:
        live[key] = weakref.ref(obj, forget)
    except TypeError:
        if kind not in _untrackable:
            _untrackable.add(kind)
            _log.warning("memwarden cannot track %s objects of kind %r (no weak references)",
                         type(obj).__name__, kind)


def untrack_kind(kind: str) -> None:
    """Forget a kind (and its objects) entirely."""
    with _registry_lock:
        _tracked.pop(kind, None)


def declare(kind: str) -> None:
    """Report ``kind`` as 0 before its first object is tracked."""
    with _registry_lock:
        _tracked.setdefault(kind, {})


def tracked_kinds() -> list[str]:
    return sorted(_tracked)


def tracked_objects(kind: str) -> list[Any]:
    """The live objects of a kind (strong references: drop them after use)."""
    live = _tracked.get(kind)
    if live is None:
        return []
    found = []
    for ref in list(live.values()):
        obj = ref()
        if obj is not None:
            found.append(obj)
    return found


def tracked_count(kind: str) -> int:
    live = _tracked.get(kind)
    if live is None:
        return 0
    # Entries whose object died are removed by the callback; count defensively.
    return sum(1 for ref in list(live.values()) if ref() is not None)


def open_loops() -> list[asyncio.AbstractEventLoop]:
    """Event loops seen by loop tracking that are not closed yet."""
    return [loop for loop in list(_loops) if not loop.is_closed()]


def gauge(name: str, fn: Callable[[], float | int | None]) -> None:
    """Read ``fn()`` on each census under ``name``; a raising gauge is omitted."""
    with _registry_lock:
        _gauges[name] = fn
        _failed_gauges.discard(name)


def remove_gauge(name: str) -> None:
    with _registry_lock:
        _gauges.pop(name, None)


def enable_loop_tracking() -> None:
    """Track every asyncio event loop created from now on (opt-in).

    Wraps ``BaseEventLoop.__init__`` so that loops made by ``asyncio.run``,
    ``new_event_loop`` and libraries alike are seen. Idempotent.
    """
    global _loop_tracking_on
    if _loop_tracking_on:
        return
    # Imported here, not with the module: a sync worker that never tracks
    # loops would carry asyncio's 1.5 MiB for nothing.
    import asyncio

    original_init = asyncio.BaseEventLoop.__init__

    def tracking_init(self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _loops.add(self)

    asyncio.BaseEventLoop.__init__ = tracking_init  # type: ignore[method-assign,assignment]
    _loop_tracking_on = True


def _loop_counts() -> dict[str, int]:
    import asyncio  # loaded already: loops were tracked, or none are counted

    loops = list(_loops)
    open_loops = [loop for loop in loops if not loop.is_closed()]
    tasks = 0
    for loop in open_loops:
        try:
            tasks += len(asyncio.all_tasks(loop))
        except RuntimeError:
            # The set changed size under us (another thread's loop): skip this sample.
            continue
    return {"asyncio.loops": len(open_loops), "asyncio.loops_alive": len(loops),
            "asyncio.tasks": tasks}


def _gc_type_counts(top: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__name__
        counts[name] = counts.get(name, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)[:top]
    return {f"gc.{name}": n for name, n in ranked}


# Allocated blocks right after the last full (generation 2) collection: the
# live heap without the garbage that waits in the oldest generation, which
# makes plain block counts climb between full collections in a clean app.
_after_full_gc: list[int] = []


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        if _after_full_gc:
            _after_full_gc[0] = sys.getallocatedblocks()
        else:
            _after_full_gc.append(sys.getallocatedblocks())


def watch_full_collections() -> None:
    """Record the live heap after each full collection (costs nothing between them)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def census(
    process_probe: _probe.Probe | None = None,
    *,
    descendants: bool = True,
    gc_types: int = 0,
    collect: bool = False,
) -> dict[str, int | float]:
    """Take one census. Keys are omitted when their probe is unavailable.

    ``gc_types`` > 0 adds the counts of the most common object types: it walks
    every tracked object, so it is slow and only taken when asked. ``collect``
    runs a full collection first and reports ``blocks_collected``, the exact
    live heap: for audits and soak runs, too slow for a big production heap.
    """
    p = process_probe if process_probe is not None else _probe.current()
    result: dict[str, int | float] = {}
    if collect:
        gc.collect()
        result["blocks_collected"] = sys.getallocatedblocks()
    result["gc_full_collections"] = gc.get_stats()[2]["collections"]
    if _after_full_gc:
        result["blocks_after_full_gc"] = _after_full_gc[0]
    threads = p.threads()
    result["threads"] = threads if threads is not None else threading.active_count()
    fds = p.open_fds()
    if fds is not None:
        result["fds"] = fds
    if descendants:
        desc = p.descendants_memory()
        if desc is not None:
            result["children"] = desc.count
            if desc.pss_bytes is not None:
                result["children_pss_bytes"] = desc.pss_bytes
    if _loop_tracking_on:
        result.update(_loop_counts())
    result["blocks"] = sys.getallocatedblocks()
    for kind in list(_tracked):
        result[kind] = tracked_count(kind)
    for name, fn in list(_gauges.items()):
        try:
            value = fn()
        except Exception:
            if name not in _failed_gauges:
                _failed_gauges.add(name)
                _log.warning("census gauge %r raised; it is omitted until it recovers",
                             name, exc_info=True)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue  # NaN and Infinity would make the request line invalid JSON
        _failed_gauges.discard(name)
        result[name] = value
    if gc_types > 0:
        result.update(_gc_type_counts(gc_types))
    return result
