"""Public entry point: the names of :mod:`memwarden.see.asgi`, importable from
here as before."""

from memwarden.see.asgi import *  # noqa: F403
from memwarden.see.asgi import __all__ as __all__
