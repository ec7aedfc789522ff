"""Leak: POST /fetch runs async code on a new event loop per request and never closes it.

Each "client" keeps its loop, as async clients built inside a per-request
loop do; every open loop holds an epoll fd and a socket pair.
"""

import asyncio

from flask import Flask

app = Flask(__name__)
_clients: list[dict[str, object]] = []


async def _connect() -> dict[str, object]:
    await asyncio.sleep(0)
    return {"loop": asyncio.get_running_loop(), "queue": asyncio.Queue()}


@app.post("/fetch")
def fetch() -> dict[str, int]:
    loop = asyncio.new_event_loop()
    _clients.append(loop.run_until_complete(_connect()))  # the loop is never closed
    return {"clients": len(_clients)}


@app.get("/cached")
def cached() -> dict[str, str]:
    return {"cached": "yes"}
