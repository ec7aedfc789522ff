"""Leak: POST /upload opens a file descriptor per request and never closes it.

A raw descriptor holds no Python object: the heap stays flat, only the
census's fd count shows it.
"""

import os

from flask import Flask

app = Flask(__name__)


@app.post("/upload")
def upload() -> dict[str, int]:
    fd = os.open(__file__, os.O_RDONLY)  # leaked: never closed
    return {"size": os.fstat(fd).st_size}


@app.get("/files")
def files() -> dict[str, int]:
    return {"count": 3}
