"""A Flask app whose POST /remember keeps ~50 KB per request in a module-level list.

What it keeps is a conversation-like record of many small strings, the way
session and context data accumulate in practice.
"""

from flask import Flask

app = Flask(__name__)
_kept: list[list[str]] = []


@app.get("/")
def index() -> str:
    return "ok"


@app.post("/remember")
def remember() -> dict[str, int]:
    _kept.append([f"message {i}: " + "x" * 80 for i in range(500)])
    return {"kept": len(_kept)}
