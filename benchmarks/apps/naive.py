"""What teams write first: psutil before and after, one json.dumps log line.

The same naive tracker as benchmarks/overhead.py, as WSGI and ASGI
middleware for the throughput benchmark; its lines go to stderr through a
plain logging handler (the benchmark sends stderr to a file).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import psutil

_log = logging.getLogger("naive.request")


def _setup_logging() -> None:
    if not _log.handlers:
        _log.addHandler(logging.StreamHandler(sys.stderr))
        _log.setLevel(logging.INFO)
        _log.propagate = False


def _line(path: Any, method: Any, before: int, after: int, started: float) -> None:
    _log.info(json.dumps({"path": path, "method": method, "rss": after,
                          "rss_delta": after - before,
                          "duration_ms": (time.perf_counter() - started) * 1000}))


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class NaiveWsgi:
    def __init__(self, app: WSGIApp) -> None:
        _setup_logging()
        self.app = app
        self.process = psutil.Process()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        before = self.process.memory_info().rss
        started = time.perf_counter()
        result = self.app(environ, start_response)
        _line(environ.get("PATH_INFO"), environ.get("REQUEST_METHOD"), before,
              self.process.memory_info().rss, started)
        return result


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class NaiveAsgi:
    def __init__(self, app: ASGIApp) -> None:
        _setup_logging()
        self.app = app
        self.process = psutil.Process()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        before = self.process.memory_info().rss
        started = time.perf_counter()
        await self.app(scope, receive, send)
        _line(scope.get("path"), scope.get("method"), before,
              self.process.memory_info().rss, started)
