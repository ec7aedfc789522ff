"""Public entry point: the names of :mod:`memwarden.hold.loop`, importable from
here as before."""

from memwarden.hold.loop import *  # noqa: F403
from memwarden.hold.loop import __all__ as __all__
