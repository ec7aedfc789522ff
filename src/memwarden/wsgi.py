"""Public entry point: the names of :mod:`memwarden.see.wsgi`, importable from
here as before."""

from memwarden.see.wsgi import *  # noqa: F403
from memwarden.see.wsgi import __all__ as __all__
