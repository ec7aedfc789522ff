"""Public entry point: the names of :mod:`memwarden.see.context`, importable from
here as before."""

from memwarden.see.context import *  # noqa: F403
from memwarden.see.context import __all__ as __all__
