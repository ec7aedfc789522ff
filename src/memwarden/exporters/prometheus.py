"""Public entry point: the names of :mod:`memwarden.export.prometheus`, importable from
here as before."""

from memwarden.export.prometheus import *  # noqa: F403
from memwarden.export.prometheus import __all__ as __all__
