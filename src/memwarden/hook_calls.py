"""Which of memwarden's gunicorn hooks a config has replaced without calling them.

A config of one's own that defines ``worker_exit`` after
``from memwarden.gunicorn_conf import *`` replaces memwarden's, and with it,
silently, the reaping of the worker's child processes. :func:`replaced_hooks`
finds such hooks; the gunicorn master logs them once at start, and a check
command can run it on a config module's namespace.

"Calls memwarden's" is decided by reading the hook, not by running it: the
exit hooks run only when a worker or the server exits, so a flag set when
memwarden's hook runs would tell too late, after the first orphan. A hook
counts as calling memwarden's when it is memwarden's (possibly decorated
with ``functools.wraps`` or bound in a ``functools.partial``), or when its
code refers to memwarden's hook of the same name: by a global or closure
name (``_memwarden_worker_exit``), through a module
(``memwarden_hooks.worker_exit``, ``memwarden.gunicorn_conf.worker_exit``),
or through a function of the config's own it calls, a few levels deep. A
reference is taken for a call. A hook that reaches memwarden's only through
something not written in its code (``getattr`` with a computed name, a
callback registry) is reported as replaced: the warning names the hook, and
the fix, calling memwarden's directly, is one line.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memwarden.settings import Settings

__all__ = ["LOST", "calls", "describe", "needed", "replaced_hooks"]

# Each hook memwarden needs, and what is lost when its own does not run.
LOST: dict[str, str] = {
    "nworkers_changed": "the metrics directory prepared before a preloaded app is imported",
    "on_starting": "the Prometheus metrics listener and the master's OTLP exporter",
    "when_ready": "the master's watchdog: the hard memory limit, OOM-kill detection and "
                  "the orphans of killed workers",
    "pre_fork": "rolling recycles (one worker recycling at a time)",
    "post_fork": "the worker's probes, recycling, shedding and exporters",
    "post_worker_init": "the request memory tracker, recycling and load shedding",
    "pre_request": "requests in flight as recycling sees them (sync and gthread workers)",
    "post_request": "the memory check after each request: soft-limit and max-requests "
                    "recycling (sync and gthread workers)",
    "worker_abort": "the request in flight at a gunicorn timeout, named in the master's "
                    "death_in_flight line (the unwinding request clears its record first)",
    "worker_exit": "ending the exiting worker's child processes (orphans left running) "
                   "and its last metrics export",
    "child_exit": "ending the orphans of a killed worker, the log of how it died, and the "
                  "cleanup of its metrics",
    "on_exit": "stopping the metrics listener and the watchdog at exit",
}

# Hooks in which memwarden does nothing but export: replacing them loses
# nothing while no exporter is on.
_EXPORTING = frozenset({"nworkers_changed", "on_starting"})

_DEPTH = 3  # functions of one's own followed from a hook, for helpers and wrappers
_FOLLOW = 200  # objects looked at per function: a bound on odd code, not a limit in practice



def replaced_hooks(configured: Mapping[str, Callable[..., Any]],
                   ours: Mapping[str, Callable[..., Any]]) -> list[str]:
    """The hooks memwarden needs that ``configured`` (gunicorn's ``cfg``, or a config
    module's names) gives to functions that do not call memwarden's, in
    :data:`LOST` order. A name missing from ``configured`` is gunicorn's default,
    which does not call memwarden's either."""
    return [name for name in LOST
            if name in ours and not calls(configured.get(name), ours[name])]


def needed(settings: Settings) -> list[str]:
    """The hooks in which memwarden does something under ``settings``."""
    exporting = settings.prometheus or settings.otel
    return [name for name in LOST if exporting or name not in _EXPORTING]


def describe(names: list[str]) -> str:
    """``hook (lost: ...)`` for each name, for the one warning line."""
    return "; ".join(f"{name} (lost: {LOST.get(name, 'memwarden hook')})" for name in names)


def calls(hook: object, target: Callable[..., Any], _depth: int = 0) -> bool:
    """Whether ``hook`` is ``target`` or refers to it in its code (see the module doc)."""
    wanted = {id(t) for t in _unwrapped(target)}
    for fn in _unwrapped(hook):
        if id(fn) in wanted:
            return True
        if isinstance(fn, types.FunctionType) and _refers(fn, wanted, _depth):
            return True
    return False


def _unwrapped(obj: object) -> Iterator[object]:
    """The object and what it wraps: ``__wrapped__``, a partial's func, a method's function."""
    seen: set[int] = set()
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        yield obj
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, types.MethodType):
            obj = obj.__func__
        else:
            obj = inspect.getattr_static(obj, "__wrapped__", None)


def _names(code: types.CodeType) -> set[str]:
    """Global, attribute and free-variable names of ``code`` and of the code nested in it."""
    names = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _refers(fn: types.FunctionType, wanted: set[int], depth: int) -> bool:
    names = _names(fn.__code__)
    scope: dict[str, object] = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            scope[name] = cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
    frontier = [scope[n] if n in scope else fn.__globals__[n] for n in sorted(names)
                if n in scope or n in fn.__globals__]
    seen: set[int] = set()
    while frontier and len(seen) < _FOLLOW:
        value = frontier.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if id(value) in wanted or any(id(v) in wanted for v in _unwrapped(value)):
            return True
        if isinstance(value, types.ModuleType) or inspect.isclass(value):
            # Attribute chains: memwarden.gunicorn_conf.worker_exit, hooks.worker_exit.
            frontier += [found for found in (inspect.getattr_static(value, n, None)
                                             for n in sorted(names)) if found is not None]
        elif (isinstance(value, types.FunctionType) and depth + 1 < _DEPTH
              and not (value.__module__ or "").startswith("memwarden")
              and _refers(value, wanted, depth + 1)):
            return True
    return False
