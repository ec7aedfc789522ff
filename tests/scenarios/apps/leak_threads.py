"""Leak: POST /jobs starts a watcher thread per request that never ends."""

import threading

from flask import Flask

app = Flask(__name__)
_stop = threading.Event()  # never set


def _watch() -> None:
    _stop.wait()


@app.post("/jobs")
def jobs() -> dict[str, int]:
    threading.Thread(target=_watch, daemon=True).start()
    return {"threads": threading.active_count()}


@app.get("/status")
def status() -> dict[str, str]:
    return {"status": "ok"}
