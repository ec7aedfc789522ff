"""Public entry point: the names of :mod:`memwarden.see.asgi`, importable from
here as before."""

from memwarden.see.asgi import (
    AsgiMemoryTracker,
)

__all__ = [
    "AsgiMemoryTracker",
]
