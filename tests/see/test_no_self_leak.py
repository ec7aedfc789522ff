"""memwarden does not leak itself: tens of thousands of tracked requests stay flat."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import sys
from collections.abc import Iterator

import pytest
from flask import Flask

from memwarden.see.asgi import AsgiMemoryTracker
from memwarden.see.logs import JsonFormatter
from memwarden.see.wsgi import MemoryTracker
from memwarden.settings import Settings

REQUESTS = 30_000
CHECKPOINT = 500
# Census on every 10th request: far more often than production, on purpose.
SETTINGS = Settings(census_every=10, census_seconds=0, loop_tracking=True)


class _NullStream(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


@pytest.fixture
def json_logging_to_nowhere() -> Iterator[None]:
    logger = logging.getLogger("memwarden")
    handler = logging.StreamHandler(_NullStream())
    handler.setFormatter(JsonFormatter())
    old = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


@contextlib.contextmanager
def _without_pytest_capture() -> Iterator[None]:
    """pytest attaches capture handlers to non-propagating loggers too, during the
    test call; they keep every record for the report: a leak of the test, not ours."""
    logger = logging.getLogger("memwarden")
    captured = [h for h in logger.handlers if type(h).__module__.startswith("_pytest")]
    for handler in captured:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in captured:
            logger.addHandler(handler)


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of blocks per request over the checkpoints."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def _environ(i: int) -> dict[str, object]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": f"/items/{i}", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
            "HTTP_X_REQUEST_ID": f"id-{i}"}


def test_wsgi_tracker_keeps_allocated_blocks_flat(json_logging_to_nowhere: None) -> None:
    """30,000 Flask requests through the tracker: no upward trend in allocated blocks."""
    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    tracked = MemoryTracker(app.wsgi_app, SETTINGS)

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None
                       ) -> object:
        return None

    points: list[tuple[int, int]] = []
    with _without_pytest_capture():
        for i in range(1, REQUESTS + 1):
            body = tracked(_environ(i), start_response)
            b"".join(body)  # type: ignore[arg-type]
            body.close()  # type: ignore[attr-defined]
            if i % CHECKPOINT == 0:
                gc.collect()
                points.append((i, sys.getallocatedblocks()))
    warm = points[1:]  # the first 500 requests fill werkzeug's and re's caches
    slope = _slope(warm)
    # A leak of one block per request would show a slope of ~1.0.
    assert slope < 0.01, f"allocated blocks trend {slope:.4f} per request: {warm}"


def test_asgi_tracker_keeps_allocated_blocks_flat(json_logging_to_nowhere: None) -> None:
    """30,000 ASGI requests through the tracker: no upward trend in allocated blocks."""

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    tracked = AsgiMemoryTracker(app, SETTINGS)  # type: ignore[arg-type]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    async def drive() -> list[tuple[int, int]]:
        points: list[tuple[int, int]] = []
        for i in range(1, REQUESTS + 1):
            scope = {"type": "http", "method": "GET", "path": f"/items/{i}",
                     "headers": [(b"x-request-id", f"id-{i}".encode())]}
            await tracked(scope, receive, send)
            if i % CHECKPOINT == 0:
                gc.collect()
                points.append((i, sys.getallocatedblocks()))
        return points

    with _without_pytest_capture():
        points = asyncio.run(drive())
    warm = points[1:]
    slope = _slope(warm)
    assert slope < 0.01, f"allocated blocks trend {slope:.4f} per request: {warm}"
