"""The least a per-request memory line can cost: bench-throughput's floor.

WSGI and ASGI middleware that does, per request, only what any tracker
writing one RSS line per request must: one pread of ``/proc/self/statm`` on a
descriptor kept open, and one write(2) of a line of the request line's size
to stderr (the benchmark sends stderr to a file). No id, no context, no
route, no JSON formatting beyond two ints. What it costs over the bare app is
the floor under memwarden's own cost on the same machine and load.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # each factory imports its framework: a Flask worker loads no FastAPI
    from flask import Flask

# The size of memwarden's usual request line (about 330 bytes), fixed text
# around the two numbers that change.
_HEAD = ('{"timestamp": "2026-01-01T00:00:00.000Z", "level": "INFO", "logger": "floor", '
         '"message": "request", "request_id": "0123456789abcdef0123456789abcdef", '
         '"pid": 1, "seq": ')
_TAIL = ', "method": "GET", "route": "/hello/<name>", "status": 200, "duration_ms": 0.100, '


class _Statm:
    """statm on a descriptor opened in the process that reads it (after fork)."""

    def __init__(self) -> None:
        self.pid = -1
        self.fd = -1
        self.seq = 0

    def line(self) -> bytes:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.fd = os.open("/proc/self/statm", os.O_RDONLY)
        rss = int(os.pread(self.fd, 128, 0).split(None, 2)[1]) * 4096
        self.seq += 1
        return f'{_HEAD}{self.seq}{_TAIL}"rss_bytes": {rss}}}\n'.encode()


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FloorWsgi:
    def __init__(self, app: WSGIApp, fd: int = 2) -> None:
        self.app = app
        self.fd = fd  # stderr; bench-overhead passes /dev/null's
        self.statm = _Statm()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        result = self.app(environ, start_response)
        os.write(self.fd, self.statm.line())
        return result


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FloorAsgi:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.statm = _Statm()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            os.write(2, self.statm.line())


def flask() -> Flask:
    from flask_hello import bare

    app = bare()
    app.wsgi_app = FloorWsgi(app.wsgi_app)  # type: ignore[method-assign]
    return app


def fastapi() -> Any:
    from fastapi_hello import bare

    return FloorAsgi(bare())
