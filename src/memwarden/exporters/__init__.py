"""Public entry point for gunicorn configs of your own: the names of
:mod:`memwarden.export`, importable from here as before. Code of your own that
takes a protective action publishes it on :mod:`memwarden.events`."""

from memwarden.export import *  # noqa: F403
from memwarden.export import __all__ as __all__
