"""Leak: POST /convert starts a child process per request and never waits for it.

The children carry MEMWARDEN_SCENARIO_MARKER in their environment so the
test can find and kill them when it ends.
"""

import os
import subprocess

from flask import Flask

app = Flask(__name__)
_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MEMWARDEN_SCENARIO_MARKER": os.environ.get("MEMWARDEN_SCENARIO_MARKER", "")}


@app.post("/convert")
def convert() -> dict[str, int]:
    child = subprocess.Popen(["sleep", "600"], env=_ENV, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"pid": child.pid}


@app.get("/formats")
def formats() -> dict[str, list[str]]:
    return {"formats": ["pdf", "png"]}
