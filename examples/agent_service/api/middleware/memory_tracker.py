"""memwarden's per-request memory tracker around the Flask app.

Writes one JSON line per request (logger ``memwarden.request``) with the
memory deltas and, on sampled requests, the census. Under gunicorn,
``memwarden.gunicorn_conf`` wraps the worker's app as well; the outer tracker
marks the request and this one then passes straight through, so nothing is
counted twice. Wrapping here also measures the app when it runs elsewhere
(Flask's test client, another server).
"""

from __future__ import annotations

from flask import Flask

from memwarden.see.wsgi import MemoryTracker

__all__ = ["install"]


def install(app: Flask) -> Flask:
    app.wsgi_app = MemoryTracker(app.wsgi_app)  # type: ignore[method-assign]
    return app
