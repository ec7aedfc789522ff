"""Per-request CPU cost of the ASGI tracker, in process.

A plain ASGI hello-world app that sets the route as FastAPI does (no
framework, so the tracker's own cost is not lost in a framework's) is driven
by a fake scope, receive and send in one asyncio loop, alone and under
memwarden's defaults, interleaved round by round; logs go to /dev/null.
Timed in this thread's CPU time: other processes' load on a shared machine
stretches wall time, not this.

``--stack``: the server's whole path instead, in process: uvicorn's h11
protocol serving bench-throughput's FastAPI app (benchmarks/apps/fastapi_hello.py)
on one keep-alive connection, each request fed to it as bytes and answered
into a transport that keeps nothing. As under ``memwarden.gunicorn_conf``:
the request lines go to a file through the JSON handler, uvicorn.access has no
handlers, and the worker's in-flight records are written (to an anonymous
mapping). The tracker costs here what it costs under a uvicorn worker, more
than three times its cost alone (the same Python runs slower amid a
framework's and a server's), with a spread of a microsecond or two rather than
wrk's few percent: in one hour, ``make bench-throughput`` saw +31 us of the
server's CPU per request (asgi_throughput_ratio=0.863), this mode +27.9 us
(ratio=0.844) and the default mode +7.5 us.

Last line: ``bare_us=B tracked_us=T overhead_us=T-B ratio=B/T``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from overhead import setup_logging

from memwarden.see.asgi import AsgiMemoryTracker
from memwarden.settings import Settings

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]

_START = {"type": "http.response.start", "status": 200,
          "headers": [(b"content-type", b"text/plain"), (b"content-length", b"11")]}
_BODY = {"type": "http.response.body", "body": b"hello world"}
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}
_HEADERS = [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


class _Route:
    """What Starlette's router puts in ``scope["route"]`` for a matched request."""

    path = "/hello/{name}"


_ROUTE = _Route()


async def hello(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                send: Callable[[Message], Awaitable[None]]) -> None:
    scope["route"] = _ROUTE  # as FastAPI's router does
    await send(dict(_START))
    await send(dict(_BODY))


async def receive() -> Message:
    return _REQUEST


async def send(message: Message) -> None:
    pass


def scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/hello/world", "raw_path": b"/hello/world",
            "query_string": b"", "root_path": "", "headers": list(_HEADERS),
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def time_round(app: ASGIApp, n: int) -> float:
    """Mean seconds per request over n requests, in this thread's CPU time."""
    clock = time.thread_time
    started = clock()
    for _ in range(n):
        await app(scope(), receive, send)
    return (clock() - started) / n


async def run(rounds: int, requests: int) -> None:
    devnull = open("/dev/null", "w")  # noqa: SIM115 - held for the whole run
    setup_logging(devnull)
    variants: dict[str, ASGIApp] = {"bare": hello, "tracked": AsgiMemoryTracker(hello, Settings())}
    for app in variants.values():  # warm up
        await time_round(app, requests // 4)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, app in variants.items():
            times[name].append(await time_round(app, requests))
    report(times, rounds, requests)


class _Transport(asyncio.Transport):
    """A connection's transport that counts what the server writes and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def is_closing(self) -> bool:
        return False


_REQUEST_BYTES = b"GET /hello/world HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"


class _Connection:
    """One keep-alive connection of uvicorn's h11 protocol to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        from uvicorn.config import Config
        from uvicorn.protocols.http.h11_impl import H11Protocol
        from uvicorn.server import ServerState

        config = Config(app=app, log_config=None, lifespan="off")
        config.load()
        self.protocol = H11Protocol(config, ServerState(), {}, asyncio.get_running_loop())
        self.transport = _Transport()
        self.protocol.connection_made(self.transport)

    async def time_round(self, n: int) -> float:
        """Mean seconds per request over n requests, in this thread's CPU time."""
        protocol, transport = self.protocol, self.transport
        clock = time.thread_time
        started = clock()
        for _ in range(n):
            writes = transport.writes + 2  # the response's head, then its body
            protocol.data_received(_REQUEST_BYTES)
            while transport.writes < writes:
                await asyncio.sleep(0)
        return (clock() - started) / n


def _stack_logging(path: str) -> None:
    """The request lines to ``path`` as memwarden's gunicorn config sends them to
    stderr; uvicorn.access without handlers, as that config leaves it."""
    import logging

    from memwarden.see.logs import ContextFilter, JsonFormatter

    handler = logging.StreamHandler(open(path, "a"))  # noqa: SIM115 - held for the run
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    for name in ("memwarden", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


async def run_stack(rounds: int, requests: int, log_path: str) -> None:
    import mmap

    from fastapi_hello import bare

    from memwarden.see import inflight_slot

    _stack_logging(log_path)
    inflight_slot.install(mmap.mmap(-1, inflight_slot.SIZE))
    connections = {"bare": _Connection(bare()),
                   "tracked": _Connection(AsgiMemoryTracker(bare(), Settings()))}
    for connection in connections.values():  # warm up
        await connection.time_round(requests // 4)
    times: dict[str, list[float]] = {name: [] for name in connections}
    for _ in range(rounds):
        for name, connection in connections.items():
            times[name].append(await connection.time_round(requests))
    report(times, rounds, requests)


def report(times: dict[str, list[float]], rounds: int, requests: int) -> None:
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name}: median {value:.2f} us/request over {rounds} rounds of {requests}")
    bare, tracked = medians["bare"], medians["tracked"]
    print(f"bare_us={bare:.2f} tracked_us={tracked:.2f} overhead_us={tracked - bare:.2f} "
          f"ratio={bare / tracked:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stack", action="store_true",
                        help="uvicorn's h11 protocol and a FastAPI app around the tracker")
    parser.add_argument("--log", default=None,
                        help="where --stack writes the request lines (default: a temporary "
                             "file, as the benchmark's server writes them to a file)")
    args = parser.parse_args()
    sys.path.insert(0, "benchmarks")
    if args.stack:
        sys.path.insert(0, "benchmarks/apps")
        with tempfile.TemporaryDirectory(prefix="mw-overhead-asgi-") as tmp:
            log = args.log or f"{tmp}/requests.log"
            asyncio.run(run_stack(args.rounds, args.requests, log))
    else:
        asyncio.run(run(args.rounds, args.requests))


if __name__ == "__main__":
    main()
