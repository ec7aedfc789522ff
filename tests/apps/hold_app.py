"""A Flask app for the Hold tests: leaks on demand, sleeps, spawns child processes.

``/leak`` keeps ``mb`` MiB (default 1) for the life of the worker, written so
that it is resident. ``/spawn`` starts a ``sleep 300`` child (a stand-in for a
browser) and keeps it; ``/spawn_tree`` starts a shell with a grandchild.
``/sleep`` holds the request for ``s`` seconds, after leaking ``mb`` MiB
first when asked, like a worker stuck in a long call.
"""

import os
import subprocess
import threading
import time

from flask import Flask, request

app = Flask(__name__)
_kept: list[bytes] = []
_children: list[subprocess.Popen[bytes]] = []


def _leak(mb: float) -> None:
    if mb > 0:
        _kept.append(b"x" * int(mb * 1024 * 1024))


@app.get("/pid")
def pid() -> dict[str, int]:
    return {"pid": os.getpid(), "kept_mb": len(_kept)}


@app.get("/leak")
def leak() -> dict[str, int]:
    _leak(float(request.args.get("mb", "1")))
    return {"pid": os.getpid(), "kept": len(_kept)}


@app.get("/sleep")
def sleep() -> dict[str, int]:
    _leak(float(request.args.get("mb", "0")))
    time.sleep(float(request.args.get("s", "1")))
    return {"pid": os.getpid()}


@app.get("/spawn")
def spawn() -> dict[str, object]:
    if request.args.get("stubborn"):
        # Ignores SIGTERM (and so does its sleep, which inherits the disposition).
        child = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300"])
    else:
        child = subprocess.Popen(["sleep", "300"])
    _children.append(child)
    time.sleep(float(request.args.get("s", "0")))
    return {"pid": os.getpid(), "children": [c.pid for c in _children]}


@app.get("/spawn_tree")
def spawn_tree() -> dict[str, object]:
    # A shell whose own child is the grandchild: `exec` would replace it, `&` + wait keeps both.
    child = subprocess.Popen(["sh", "-c", "sleep 300 & wait"])
    _children.append(child)
    time.sleep(float(request.args.get("s", "0")))
    return {"pid": os.getpid(), "children": [c.pid for c in _children]}


@app.get("/leak_for")
def leak_for() -> dict[str, int]:
    """Keep ``mb`` MiB for ``s`` seconds, then let it go."""
    block = b"x" * int(float(request.args.get("mb", "1")) * 1024 * 1024)
    _kept.append(block)
    threading.Timer(float(request.args.get("s", "1")), _kept.remove, [block]).start()
    return {"pid": os.getpid()}


@app.get("/healthz")
def healthz() -> str:
    return "ok"
