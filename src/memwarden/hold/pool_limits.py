"""How a pool's bound acts (on, dry-run, off) and what a refusal does.

``on`` refuses an acquire no slot freed for in time (:class:`PoolTimeout`,
logged as ``pool_refuse``); ``dry-run`` logs ``would_pool_refuse`` with the
same figures and lets the pool lend beyond its bound; ``off`` never refuses.
Either refusal is counted on the pool and published on the event bus.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from memwarden import events
from memwarden.hold import perform as actions
from memwarden.hold.pool_slots import Slots
from memwarden.hold.pool_types import PoolTimeout

__all__ = ["mode_for", "refuse"]

_log = logging.getLogger("memwarden.pool")
_MODES = (actions.ON, actions.DRY_RUN, actions.OFF)


def mode_for(name: str, mode: str | None) -> str:
    """The mode a pool named ``name`` runs in: ``mode`` as given, or, for ``None``,
    the configured one."""
    if mode is None:
        return _configured_mode(name)
    if mode not in _MODES:
        raise ValueError(f"pool {name!r}: mode must be on, dry-run or off, got {mode!r}")
    return mode


def _configured_mode(name: str) -> str:
    """``MEMWARDEN_POOL_LIMITS`` as capped by ``MEMWARDEN_PROTECT``; ``on`` if unreadable."""
    try:
        from memwarden.settings import SETTINGS, Settings

        # Only these two: a bad value of another variable (gunicorn names it at
        # start) must not change how a pool made later behaves.
        wanted = {s.env for s in SETTINGS if s.name in ("protect", "pool_limits")}
        environ = {k: v for k, v in os.environ.items() if k in wanted}
        return Settings.from_env(environ).pool_limits
    except Exception as exc:
        _log.warning("pool %r: %s; its limits stay on", name, exc)
        return actions.ON


def refuse(pool: Slots[Any], mode: str, timeout: float) -> None:
    """No slot freed within ``timeout``: log and raise :class:`PoolTimeout` (on),
    or log ``would_pool_refuse`` with the same figures and return (dry-run)."""
    # The figures on would see: dry-run's loans beyond max_size left out, and
    # the caller, just out of the queue, still counted as waiting.
    size = pool._size() - pool._over
    in_use = len(pool._in_use) - sum(1 for e in pool._in_use.values() if e.over)
    idle, waiting = len(pool._idle), pool._waiting + 1
    fields = {"pool": pool.name, "size": size, "max_size": pool.max_size,
              "in_use": in_use, "idle": idle, "waiting": waiting, "timeout_s": timeout}
    refused = actions.perform(mode, _log, "pool_refuse", fields, lambda: None)
    if refused:
        pool._refused += 1
    else:
        pool._would_refuse += 1
    events.publish(events.PoolRefusal(pool.name, dry_run=not refused))
    if refused:
        raise PoolTimeout(
            f"pool {pool.name!r}: no resource free within {timeout:g} s "
            f"(size {size}/{pool.max_size}, in use {in_use}, idle {idle}, "
            f"creating {pool._creating}, closing {pool._closing}, waiting {waiting})")
