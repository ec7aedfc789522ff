"""No secret a client sends reaches any line memwarden writes or formats.

A marker travels in the query string, in path segments (a matched route
variable and an unmatched path), in the Cookie and Authorization headers and
in the body, on routes that succeed and on routes that raise, under the sync
worker (Flask and a bare WSGI app) and the uvicorn worker (FastAPI and a bare
ASGI app); gunicorn's access log and debug lines are on too.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support import Gunicorn, gunicorn

MARKER = "Mw7qZx9TopSecret41"
UVICORN = ["-k", "uvicorn_worker.UvicornWorker"]
VERBOSE = {"MEMWARDEN_ACCESS_LOG": "1", "MEMWARDEN_LOG_LEVEL": "DEBUG"}
HEADERS = {"Cookie": f"session={MARKER}; theme=dark", "Authorization": f"Bearer {MARKER}",
           "X-Api-Key": MARKER}


def _send_everywhere(server: Gunicorn) -> dict[str, int]:
    """The marker in every place a secret travels; the status each path got."""
    q = f"token={MARKER}&next=/a?b={MARKER}"
    statuses = {}
    for method, path, body in (
            ("GET", f"/items/{MARKER}?{q}", None),
            ("GET", f"/fail/{MARKER}?{q}", None),
            ("GET", f"/raise/{MARKER}?{q}", None),
            ("GET", f"/nowhere/{MARKER}/x?{q}", None),
            ("POST", f"/submit?{q}", f"password={MARKER}".encode()),
            ("POST", f"/submit-fail?{q}", f"password={MARKER}".encode())):
        status, _, _ = server.request(method, path, body=body, headers=HEADERS)
        statuses[path.split("?")[0].replace(MARKER, "M")] = status
    # Request lines and headers gunicorn refuses, echoing them in its error.
    for raw in (f"GET /bad path/{MARKER}?{q} HTTP/1.1\r\nHost: x\r\n\r\n",
                f"GET /items/1?{q} HTTP/1.1\r\nHost: x\r\nBad\x01Name: {MARKER}\r\n\r\n",
                f"GET /items/1?{q} HTTP/1.1\r\nHost: x\r\nCookie: {MARKER}\x01\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw.encode("latin-1"))
            while sock.recv(65536):
                pass
    return statuses


def _assert_no_marker(server: Gunicorn, expect_lines: int) -> list[dict[str, object]]:
    lines = server.request_lines(expect_lines)
    assert len(lines) >= expect_lines
    server.stop()
    text = server.log_path.read_text(errors="replace")
    leaked = [line for line in text.splitlines() if MARKER in line]
    assert not leaked, leaked[:3]
    server.lines()  # every line is JSON
    return lines


@pytest.mark.parametrize("app", ["secrets_flask:app", "secrets_wsgi:app"])
def test_no_secret_in_any_line_under_the_sync_worker(tmp_path: Path, app: str) -> None:
    with gunicorn(app, tmp_path, args=["-w", "1"], env=VERBOSE) as server:
        statuses = _send_everywhere(server)
        lines = _assert_no_marker(server, 6)
    assert any(x["status"] == 500 for x in lines), statuses
    # The error paths really ran and were logged (their traceback scrubbed, not lost).
    tracebacks = [x for x in server.lines() if x.get("exc_type")]
    assert tracebacks
    routes = {x["route"] for x in lines}
    if app.startswith("secrets_flask"):
        assert routes == {"/items/<item_id>", "/fail/<token>", "<unmatched>", "/submit",
                          "/submit-fail"}
    else:
        assert "/items/<var>" in routes and "/nowhere/<var>/x" in routes


@pytest.mark.parametrize("app", ["secrets_asgi:app", "raw_asgi:app"])
def test_no_secret_in_any_line_under_the_uvicorn_worker(tmp_path: Path, app: str) -> None:
    with gunicorn(app, tmp_path, args=["-w", "1", *UVICORN], env=VERBOSE) as server:
        statuses = _send_everywhere(server)
        lines = _assert_no_marker(server, 6)
    assert any(x["status"] == 500 for x in lines), statuses
    tracebacks = [x for x in server.lines() if x.get("exc_type")]
    assert tracebacks
    routes = {x["route"] for x in lines}
    if app.startswith("secrets_asgi"):
        assert routes == {"/items/{item_id}", "/fail/{token}", "<unmatched>", "/submit",
                          "/submit-fail"}
    else:
        assert "/items/<var>" in routes and "/nowhere/<var>/x" in routes
