"""Public entry point: the names of :mod:`memwarden.hold.pool`, importable from
here as before."""

from memwarden.hold.pool import *  # noqa: F403
from memwarden.hold.pool import __all__ as __all__
