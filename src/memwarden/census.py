"""Public entry point: the names of :mod:`memwarden.see.census`, importable from
here as before."""

from memwarden.see.census import *  # noqa: F403
from memwarden.see.census import __all__ as __all__
