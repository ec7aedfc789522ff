"""Public entry point: the names of :mod:`memwarden.hold.loop`, importable from
here as before."""

from memwarden.hold.loop import (
    THREAD_NAME,
    Held,
    get_loop,
    hold,
    run,
    shutdown,
)

__all__ = [
    "THREAD_NAME",
    "Held",
    "get_loop",
    "hold",
    "run",
    "shutdown",
]
