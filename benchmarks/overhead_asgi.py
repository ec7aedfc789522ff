"""Per-request CPU cost of the ASGI tracker, in process.

A plain ASGI hello-world app that sets the route as FastAPI does (no
framework, so the tracker's own cost is not lost in a framework's) is driven
by a fake scope, receive and send in one asyncio loop, alone and under
memwarden's defaults, interleaved round by round; logs go to /dev/null.
Timed in this thread's CPU time: other processes' load on a shared machine
stretches wall time, not this.

Last line: ``bare_us=B tracked_us=T overhead_us=T-B ratio=B/T``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
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
    args = parser.parse_args()
    sys.path.insert(0, "benchmarks")
    asyncio.run(run(args.rounds, args.requests))


if __name__ == "__main__":
    main()
