"""Leak: a server-side session store that never expires, under user churn.

POST /login gives each user without a session a new one holding their
conversation; nothing ever removes a session, so every new user adds one.
The store's size is a census gauge ("sessions").
"""

import uuid

from flask import Flask, request

from memwarden.see.census import gauge

app = Flask(__name__)
_sessions: dict[str, dict[str, object]] = {}
gauge("sessions", lambda: len(_sessions))


@app.post("/login")
def login() -> tuple[dict[str, int], int, dict[str, str]] | dict[str, int]:
    sid = request.cookies.get("sid")
    if sid in _sessions:
        return {"sessions": len(_sessions)}
    sid = uuid.uuid4().hex
    _sessions[sid] = {"user": sid[:8],
                      "history": [f"{sid[:8]} said something {i}" for i in range(60)]}
    return {"sessions": len(_sessions)}, 200, {"Set-Cookie": f"sid={sid}; Path=/"}


@app.get("/profile")
def profile() -> dict[str, object]:
    session = _sessions.get(request.cookies.get("sid", ""))
    return {"user": session["user"] if session else None}
