"""Public entry point for gunicorn configs of your own and for code that reports
protective actions: the names of :mod:`memwarden.export`, importable from here
as before."""

from memwarden.export import *  # noqa: F403
from memwarden.export import __all__ as __all__
