"""The throughput benchmark's Flask hello world, one factory per variant.

``gunicorn 'flask_hello:bare()'``: memwarden's variants run ``bare()`` under
``-c python:memwarden.gunicorn_conf``; the peers wrap it their usual way.
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def bare() -> Flask:
    app = Flask("hello")

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        return f"hello {name}"

    return app


def prometheus() -> Flask:
    """prometheus_flask_exporter's defaults: a request counter and a latency
    histogram per endpoint, ``/metrics`` served by the app."""
    from prometheus_flask_exporter import PrometheusMetrics

    app = bare()
    PrometheusMetrics(app)
    return app


def naive() -> Any:
    from naive import NaiveWsgi

    app = bare()
    app.wsgi_app = NaiveWsgi(app.wsgi_app)  # type: ignore[method-assign]
    return app
