"""Public entry point: the names of :mod:`memwarden.export.newrelic`, importable from
here as before."""

from memwarden.export.newrelic import *  # noqa: F403
from memwarden.export.newrelic import __all__ as __all__
