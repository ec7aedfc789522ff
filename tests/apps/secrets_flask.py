"""A Flask app for the secrets tests: a path variable, routes that raise, a POST."""

import logging

from flask import Flask, request

app = Flask(__name__)
app_log = logging.getLogger("secrets_flask")


@app.get("/items/<item_id>")
def item(item_id: str) -> dict[str, int]:
    app_log.info("looking up an item")
    return {"length": len(item_id)}


@app.get("/fail/<token>")
def fail(token: str) -> str:
    # The URL in the message, as apps often put it: query string and path token.
    raise RuntimeError(f"lookup failed for {request.url}")


@app.post("/submit")
def submit() -> dict[str, int]:
    return {"received": len(request.get_data())}


@app.post("/submit-fail")
def submit_fail() -> str:
    request.get_data()
    raise ValueError("could not store the submission")
