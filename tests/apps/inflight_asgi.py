"""A FastAPI app for the in-flight tests under uvicorn workers: requests that hang."""

import asyncio
import os
import time

from fastapi import FastAPI

app = FastAPI()


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/orders/{order_id}/wait")
async def wait(order_id: int, s: float = 30.0) -> dict[str, int]:
    await asyncio.sleep(s)
    return {"pid": os.getpid(), "order": order_id}


@app.get("/block")
async def block(s: float = 30.0) -> dict[str, int]:
    time.sleep(s)  # blocks the event loop: gunicorn's timeout ends the worker
    return {"pid": os.getpid()}
