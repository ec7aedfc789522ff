"""A Flask app with one memwarden Pool (max_size 1) on the worker loop.

For pool limits under real gunicorn (gthread, so requests overlap in one
worker): ``/hold?s=S&flag=PATH`` takes the pool's one resource, creates
``PATH`` once it has it, and keeps it ``S`` seconds; ``/take?timeout=T``
waits at most ``T`` seconds for a resource and answers 503 when the pool
refuses.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from pathlib import Path
from typing import Any

from flask import Flask, request

from memwarden.hold import loop
from memwarden.hold.pool import Pool, PoolTimeout

app = Flask(__name__)
_made = itertools.count(1)
_lock = threading.Lock()
_pool: Pool[int] | None = None


async def _create() -> int:
    return next(_made)


async def _close(resource: int) -> None:
    pass


def _the_pool() -> Pool[int]:
    global _pool
    with _lock:
        if _pool is None:  # made in the worker, on first use: after the fork
            _pool = Pool(_create, _close, max_size=1, acquire_timeout=5.0, name="things")
        return _pool


async def _lease(seconds: float, timeout: float, flag: str | None) -> int:
    async with _the_pool().acquire(timeout=timeout) as resource:
        if flag:
            Path(flag).touch()
        await asyncio.sleep(seconds)
        return resource


@app.get("/hold")
def hold() -> dict[str, Any]:
    seconds = float(request.args.get("s", "1"))
    resource = loop.run(_lease(seconds, 5.0, request.args.get("flag")))
    return {"pid": os.getpid(), "resource": resource}


@app.get("/take")
def take() -> tuple[dict[str, Any], int]:
    try:
        resource = loop.run(_lease(0.0, float(request.args.get("timeout", "0.2")), None))
    except PoolTimeout:
        return {"pid": os.getpid(), "refused": True}, 503
    return {"pid": os.getpid(), "resource": resource}, 200
