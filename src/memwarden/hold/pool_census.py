"""A pool's figures in the census: ``pool.<name>.size``, ``.in_use``, ``.waiting``
and its refusals (``.refused`` with limits on, ``.would_refuse`` in dry-run).

Pools are named with fixed words, and a later pool may reuse a name: the
registry below says which pool owns a name's gauges, so that closing the
earlier one leaves the later one's in place. Gauges read a pool through a
weak reference, so the census never keeps a pool alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from memwarden.hold import perform as actions
from memwarden.hold.pool_slots import Slots

__all__ = ["register", "unregister"]

P = TypeVar("P", bound=Slots[Any])

# Which pool owns the gauges of a name: a second pool with the same name takes
# them over, and closing the first must not remove the second's.
_owners: weakref.WeakValueDictionary[str, Slots[Any]] = weakref.WeakValueDictionary()

_KINDS = ("size", "in_use", "waiting", "refused", "would_refuse")


def _names(name: str) -> tuple[str, ...]:
    # Every name a pool of this name may register, whatever its mode.
    return tuple(f"pool.{name}.{kind}" for kind in _KINDS)


def register(pool: Slots[Any], mode: str) -> None:
    """Give ``pool`` its gauges (taking them over from an earlier pool of its name)."""
    try:
        from memwarden.see.census import gauge, remove_gauge
    except ImportError:
        return
    ref = weakref.ref(pool)
    size, in_use, waiting, refused, would_refuse = _names(pool.name)
    gauge(size, lambda: _read(ref, lambda p: p._size()))
    gauge(in_use, lambda: _read(ref, lambda p: len(p._in_use)))
    gauge(waiting, lambda: _read(ref, lambda p: p._waiting))
    # Refusals under the mode's own name, so that a dry-run one never reads as
    # a real one (off refuses nothing). The other name may be left by an earlier
    # pool of this name, in another mode: it goes.
    if mode == actions.ON:
        gauge(refused, lambda: _read(ref, lambda p: p._refused))
    else:
        remove_gauge(refused)
    if mode == actions.DRY_RUN:
        gauge(would_refuse, lambda: _read(ref, lambda p: p._would_refuse))
    else:
        remove_gauge(would_refuse)
    _owners[pool.name] = pool
    finalizer = weakref.finalize(pool, _drop, pool.name)
    finalizer.atexit = False


def unregister(pool: Slots[Any]) -> None:
    """Remove ``pool``'s gauges, unless a later pool of its name took them over."""
    if _owners.get(pool.name) is pool:
        del _owners[pool.name]
        _drop(pool.name)


def _read(ref: weakref.ref[P], fn: Callable[[P], int]) -> int | None:
    pool = ref()
    return None if pool is None or pool.closed else fn(pool)


def _drop(name: str) -> None:
    if name in _owners:
        return
    try:
        from memwarden.see.census import remove_gauge
    except ImportError:
        return
    for gauge_name in _names(name):
        remove_gauge(gauge_name)
