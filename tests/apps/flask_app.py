"""A small Flask app for the integration tests."""

import logging

from flask import Flask, Response, stream_with_context

app = Flask(__name__)
app_log = logging.getLogger("flask_app")
_kept: list[bytes] = []


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    app_log.info("looking up item", extra={"item_id": item_id})
    return {"item": item_id}


@app.post("/leak")
def leak() -> dict[str, int]:
    _kept.append(b"x" * 100_000)
    return {"kept": len(_kept)}


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("the app failed")


@app.get("/stream")
def stream() -> Response:
    def chunks():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield f"chunk {i}\n"
    return Response(stream_with_context(chunks()), mimetype="text/plain")


@app.get("/healthz")
def healthz() -> str:
    return "ok"
