"""Public entry point: the names of :mod:`memwarden.see.census`, importable from
here as before."""

from memwarden.see.census import (
    census,
    declare,
    enable_loop_tracking,
    gauge,
    open_loops,
    remove_gauge,
    track,
    tracked_count,
    tracked_kinds,
    tracked_objects,
    untrack_kind,
)

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
