"""The throughput benchmark's FastAPI hello world, one factory per variant.

Served by gunicorn with ``-k uvicorn_worker.UvicornWorker``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse


def bare() -> FastAPI:
    app = FastAPI()

    @app.get("/hello/{name}", response_class=PlainTextResponse)
    async def hello(name: str) -> str:
        return f"hello {name}"

    return app


def prometheus() -> FastAPI:
    """prometheus-fastapi-instrumentator's defaults, ``/metrics`` exposed."""
    from prometheus_fastapi_instrumentator import Instrumentator

    app = bare()
    Instrumentator().instrument(app).expose(app)
    return app


def naive() -> Any:
    from naive import NaiveAsgi

    return NaiveAsgi(bare())
