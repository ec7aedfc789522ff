"""A Flask app for the exporter tests: names its worker, keeps memory on demand,
and reports the events that recycling and shedding will report."""

import os
import time

from flask import Flask

from memwarden import events
from memwarden import export as exporters

app = Flask(__name__)
_kept: list[bytes] = []


@app.get("/pid")
def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/multiproc-dir")
def multiproc_dir() -> dict[str, str]:
    return {"dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")}


@app.get("/slow")
def slow() -> dict[str, int]:
    time.sleep(0.05)  # long enough that two requests at once land on two workers
    return {"pid": os.getpid()}


@app.post("/keep")
def keep() -> dict[str, int]:
    _kept.append(b"x" * 200_000)
    return {"pid": os.getpid(), "kept": len(_kept)}


@app.post("/events/shed")
def shed() -> dict[str, int]:
    events.publish(events.Shed())
    return {"pid": os.getpid()}


@app.post("/events/recycle/<reason>")
def recycle(reason: str) -> dict[str, int]:
    events.publish(events.Recycle(reason))
    return {"pid": os.getpid()}


@app.post("/events/limit/<int:limit>")
def limit(limit: int) -> dict[str, int]:
    exporters.set_worker_limit(limit)
    return {"pid": os.getpid()}
