"""A Flask app for the soak driver's tests: signed-cookie sessions, shedding, crashes.

Every request appends one JSON line to the file named by ``SOAK_APP_RECORD``
(what the server saw: request id, session id, visits), so a test can check
the server side of each virtual user whatever worker served it.
"""

import json
import os
import time
import uuid

from flask import Flask, request, session

app = Flask(__name__)
app.secret_key = "soak-tests-only"
_RECORD = os.environ.get("SOAK_APP_RECORD")


def _record(**fields: object) -> None:
    if _RECORD:
        fields["request_id"] = request.headers.get("X-Request-ID")
        fields["path"] = request.full_path.rstrip("?")
        # One short O_APPEND write per line: lines from both workers never mix.
        with open(_RECORD, "a") as f:
            f.write(json.dumps(fields) + "\n")


def _first_attempt() -> bool:
    # The soak driver marks retries as <id>.<n>.
    return "." not in (request.headers.get("X-Request-ID") or "")


@app.route("/visit", methods=["GET", "POST"])
def visit() -> dict[str, object]:
    new = "sid" not in session
    if new:
        session["sid"] = uuid.uuid4().hex
    session["visits"] = session.get("visits", 0) + 1
    _record(sid=session["sid"], visits=session["visits"], new=new)
    return {"sid": session["sid"], "visits": session["visits"]}


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    _record(item=item_id)
    return {"item": item_id}


@app.post("/echo")
def echo() -> dict[str, object]:
    _record(json=request.get_json(), header=request.headers.get("X-Seq"))
    return {"ok": True}


@app.get("/shed")
def shed() -> tuple[str, int, dict[str, str]] | str:
    """503 with Retry-After on the first attempt of a request, then 200."""
    _record(first=_first_attempt())
    if _first_attempt():
        return "busy", 503, {"Retry-After": request.args.get("after", "0")}
    return "ok"


@app.get("/always-shed")
def always_shed() -> tuple[str, int, dict[str, str]]:
    _record()
    return "busy", 503, {"Retry-After": "0"}


@app.get("/crash")
def crash() -> str:
    """The worker dies on the first attempt of a request, as one killed by a recycle."""
    _record(first=_first_attempt())
    if _first_attempt():
        os._exit(1)
    return "ok"


@app.get("/slow")
def slow() -> str:
    time.sleep(float(request.args.get("s", "0.2")))
    return "ok"


@app.get("/away")
def away() -> tuple[str, int, dict[str, str]]:
    """A redirect off this machine: the driver must record it, never follow it."""
    _record()
    return "", 302, {"Location": "http://example.com/"}
