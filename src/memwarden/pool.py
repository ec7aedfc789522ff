"""Public entry point: the names of :mod:`memwarden.hold.pool`, importable from
here as before."""

from memwarden.hold.pool import (
    Lease,
    Pool,
    PoolClosed,
    PoolStats,
    PoolTimeout,
)

__all__ = [
    "Lease",
    "Pool",
    "PoolClosed",
    "PoolStats",
    "PoolTimeout",
]
