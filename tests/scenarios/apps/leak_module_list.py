"""Leak: POST /remember appends each conversation turn to a module-level list."""

from flask import Flask, request

app = Flask(__name__)
_history: list[dict[str, object]] = []


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}


@app.post("/remember")
def remember() -> dict[str, int]:
    body = request.get_json(silent=True) or {}
    turn = {"user": str(body.get("user", "?")),
            "messages": [f"message {i} from {body.get('user')}: hello there" for i in range(40)]}
    _history.append(turn)
    return {"turns": len(_history)}
