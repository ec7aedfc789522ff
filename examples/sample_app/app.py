"""A small Flask app for the quick demo: one clean route, one that leaks."""

from flask import Flask, request

app = Flask(__name__)
_cache: list[bytes] = []


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}


@app.post("/remember")
def remember() -> dict[str, int]:
    # The leak: every request keeps 64 KiB for ever.
    _cache.append(request.get_data() + b"x" * 65536)
    return {"remembered": len(_cache)}


@app.get("/healthz")
def healthz() -> str:
    return "ok"
