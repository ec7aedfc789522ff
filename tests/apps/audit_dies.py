"""A Flask app whose GET /die kills the gunicorn master, as an OOM kill would."""

import os
import signal

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "ok"


@app.get("/die")
def die() -> str:
    os.kill(os.getppid(), signal.SIGKILL)
    return "bye"
