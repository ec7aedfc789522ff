"""Not a leak: a clean app served by gthread workers to several users at once."""

import hashlib
import json

from flask import Flask, request

app = Flask(__name__)


@app.post("/chat")
def chat() -> dict[str, object]:
    body = request.get_json(silent=True) or {}
    words = [f"{w}-{i}" for i, w in enumerate(str(body.get("message", "")).split() * 50)]
    digest = hashlib.sha256(json.dumps(words).encode()).hexdigest()
    return {"reply": digest[:16], "words": len(words)}


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, object]:
    return {"item": item_id, "related": [item_id + k for k in range(20)]}
