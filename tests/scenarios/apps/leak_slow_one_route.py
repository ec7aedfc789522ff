"""Leak: POST /events keeps an event record of about 1 KB per call; two other routes are clean."""

import time

from flask import Flask, request

app = Flask(__name__)
_events: list[dict[str, object]] = []


@app.post("/events")
def events() -> dict[str, int]:
    _events.append({
        "at": time.time(), "path": request.path, "method": request.method,
        "agent": f"{request.headers.get('User-Agent', '-')} #{len(_events)}",
        "request_id": str(request.headers.get("X-Request-ID")),
        "note": f"event {len(_events)}: " + "x" * 120,
        "user": f"user-{len(_events) % 977}", "session": f"s-{len(_events)}",
        "tags": (f"t{len(_events)}", f"u{len(_events)}"),
    })
    return {"events": len(_events)}


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}


@app.get("/search")
def search() -> dict[str, list[int]]:
    return {"results": list(range(10))}
