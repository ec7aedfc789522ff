"""What kind of app a gunicorn worker runs: WSGI or ASGI.

Its own module so that the exporters and the gunicorn wiring can both ask
without one importing the other.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["is_asgi_app", "is_asgi_worker"]


def is_asgi_worker(worker: Any) -> bool:
    """uvicorn's workers (and other asyncio-based ones) run ASGI apps."""
    return any("uvicorn" in klass.__module__.lower() or "asgi" in klass.__name__.lower()
               for klass in type(worker).__mro__)


def is_asgi_app(app: Any) -> bool:
    call = app.__call__ if callable(app) else None
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)
