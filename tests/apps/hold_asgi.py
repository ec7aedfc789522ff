"""A FastAPI app for the Hold tests under uvicorn workers: leaks on demand."""

import asyncio
import os
import subprocess

from fastapi import FastAPI

app = FastAPI()
_kept: list[bytes] = []
_children: list[subprocess.Popen[bytes]] = []


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/leak")
async def leak(mb: float = 1.0) -> dict[str, int]:
    _kept.append(b"x" * int(mb * 1024 * 1024))
    return {"pid": os.getpid(), "kept": len(_kept)}


@app.get("/spawn")
async def spawn() -> dict[str, object]:
    _children.append(subprocess.Popen(["sleep", "300"]))
    return {"pid": os.getpid(), "children": [c.pid for c in _children]}


@app.get("/leak_for")
async def leak_for(mb: float = 1.0, s: float = 1.0) -> dict[str, int]:
    """Keep ``mb`` MiB for ``s`` seconds, then let it go."""
    block = b"x" * int(mb * 1024 * 1024)
    _kept.append(block)
    asyncio.get_running_loop().call_later(s, _kept.remove, block)
    return {"pid": os.getpid()}


@app.get("/healthz")
async def healthz() -> str:
    return "ok"
