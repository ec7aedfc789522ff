"""A Flask app whose POST /remember builds ~50 KB per request and keeps none of it."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "ok"


@app.post("/remember")
def remember() -> dict[str, int]:
    scratch = [f"message {i}: " + "x" * 80 for i in range(500)]
    return {"kept": 0, "size": sum(map(len, scratch))}
