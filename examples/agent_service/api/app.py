"""The agent API: Flask, sessions in signed cookies, all state in worker memory.

Routes: ``POST /chat`` {"message": ...}, ``POST /browse`` {"page": ...},
``GET /tools``, ``GET /healthz``. Run under gunicorn with
``gunicorn -c examples/agent_service/gunicorn_conf.py api.app:app``.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from flask import Flask, jsonify, request, session
from flask.typing import ResponseReturnValue

from api import browser, config, mcp_client
from api.agent import ToolCallError, get_agent
from api.context_manager import get_store
from api.memory_client import ContextUnavailable
from api.middleware import memory_tracker
from api.utils.request_context import error_body

_log = logging.getLogger("agent_service")
_MAX_MESSAGE = 4000

app = Flask(__name__)
app.secret_key = config.settings().secret_key
memory_tracker.install(app)
get_store()  # registers the context gauges with the census now


def _session_id() -> str:
    sid = session.get("sid")
    if not isinstance(sid, str):
        sid = session["sid"] = uuid.uuid4().hex
    return sid


def _json_field(name: str) -> str | None:
    body: Any = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value.strip() else None


@app.post("/chat")
def chat() -> ResponseReturnValue:
    message = _json_field("message")
    if message is None:
        return jsonify(error_body('send JSON {"message": "..."}')), 400
    message = message[:_MAX_MESSAGE]
    sid = _session_id()
    store = get_store()
    try:
        history = store.history(sid)
        store.add_turn(sid, "user", message, user_agent=request.headers.get("User-Agent", ""))
        result = get_agent().run_turn(message, history)
        turns = store.add_turn(sid, "assistant", result.answer, tools=",".join(result.tools),
                               extracts=repr(result.extracts))
    except ToolCallError as exc:
        _log.info("turn failed: %s", exc)
        return jsonify(error_body(str(exc))), 502
    except browser.BrowserUnavailable as exc:
        return jsonify(error_body(str(exc))), 503
    except (mcp_client.MCPUnavailable, ContextUnavailable) as exc:
        return _unavailable(exc)
    return jsonify(answer=result.answer, tools=list(result.tools), pages=list(result.pages),
                   extracts=list(result.extracts), turns=turns)


@app.post("/browse")
def browse() -> ResponseReturnValue:
    name = _json_field("page")
    if name is None:
        return jsonify(error_body('send JSON {"page": "about"}')), 400
    try:
        page = browser.browse(browser.page_url(name.strip()))
    except browser.BrowserUnavailable as exc:
        return jsonify(error_body(str(exc))), 503
    except browser.BrowseError as exc:
        return jsonify(error_body(str(exc))), 502
    return jsonify(url=page.url, status=page.status, title=page.title, heading=page.heading,
                   extract=page.text)


def _unavailable(exc: mcp_client.MCPUnavailable | ContextUnavailable) -> ResponseReturnValue:
    # The tool or memory server is down (hardened mode): say so, and when to come back.
    _log.info("tools unavailable: %s", exc)
    return (jsonify(error_body(str(exc), retry_after=exc.retry_after_header)), 503,
            {"Retry-After": exc.retry_after_header})


@app.get("/tools")
def tools() -> ResponseReturnValue:
    try:
        listed = mcp_client.get_client().list_tools()
    except mcp_client.MCPUnavailable as exc:
        return _unavailable(exc)
    return jsonify(tools=listed)


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    cfg = config.settings()
    return jsonify(status="ok", pid=os.getpid(), mode=cfg.mode, leaks=sorted(cfg.leaks))
