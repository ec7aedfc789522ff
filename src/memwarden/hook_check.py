"""Public entry point: which gunicorn hooks a config of your own replaced without
calling memwarden's. The checks live in :mod:`memwarden.hook_calls`; this module
adds memwarden's own hooks as the default to compare with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from memwarden.hook_calls import LOST, calls, describe, needed
from memwarden.hook_calls import replaced_hooks as _replaced_hooks

__all__ = ["LOST", "calls", "describe", "memwarden_hooks", "needed", "replaced_hooks"]


def memwarden_hooks() -> dict[str, Callable[..., Any]]:
    """memwarden's own hook of each name in :data:`LOST`."""
    # Imported when asked: loading the config module reads the settings.
    from memwarden import gunicorn_conf

    return {name: getattr(gunicorn_conf, name) for name in LOST}


def replaced_hooks(configured: Mapping[str, Callable[..., Any]],
                   ours: Mapping[str, Callable[..., Any]] | None = None) -> list[str]:
    """The hooks memwarden needs that ``configured`` (gunicorn's ``cfg``, or a config
    module's names) gives to functions that do not call memwarden's, in
    :data:`LOST` order; ``ours`` defaults to memwarden's own hooks."""
    return _replaced_hooks(configured, memwarden_hooks() if ours is None else ours)
