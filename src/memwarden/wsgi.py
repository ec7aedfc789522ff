"""Public entry point: the names of :mod:`memwarden.see.wsgi`, importable from
here as before."""

from memwarden.see.wsgi import (
    MemoryTracker,
)

__all__ = [
    "MemoryTracker",
]
