"""The memory sidecar of the hardened service: Mem0 on disk, outside the workers.

``python -m tooling.memory_server --port 8768`` (cwd: examples/agent_service),
started by gunicorn's master beside the MCP server in hardened mode. It runs
the bounded context store (``api.context_manager.BoundedContextManager``:
``AGENT_SERVICE_MAX_SESSIONS``, ``_MAX_TURNS``, ``_SESSION_TTL``) on a Mem0
``Memory`` whose qdrant collection and SQLite history live under
``AGENT_SERVICE_DATA_DIR`` (or whose vectors live in the qdrant server at
``AGENT_SERVICE_QDRANT_URL``). The data outlives this process too: a restart
takes the stored sessions up again.

API (JSON, 127.0.0.1 only): ``POST /turns`` {session, role, content,
user_agent, extra} -> {turns}; ``POST /history`` {session} -> {history};
``GET /stats`` -> {sessions, memories, points}; ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tooling import serve_until_stopped

__all__ = ["make_server"]

_log = logging.getLogger("agent_service.memory_server")
_SESSION = re.compile(r"[0-9a-zA-Z_-]{1,64}")
_MAX_BODY = 64 * 1024
_MAX_CONTENT = 8000
Store = Any  # api.context_manager.BoundedContextManager, imported in main()


def _session(body: dict[str, Any]) -> str:
    session = body.get("session")
    if not isinstance(session, str) or not _SESSION.fullmatch(session):
        raise ValueError("session must be 1-64 letters, digits, '-' or '_'")
    return session


def _turns(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    role, content = body.get("role"), body.get("content")
    if role not in ("user", "assistant") or not isinstance(content, str):
        raise ValueError("role must be user or assistant, content a string")
    extra = body.get("extra") or {}
    if not isinstance(extra, dict):
        raise ValueError("extra must be an object")
    turns = store.add_turn(_session(body), role, content[:_MAX_CONTENT],
                           user_agent=str(body.get("user_agent", "")),
                           **{str(k): str(v) for k, v in extra.items()})
    return {"turns": turns}


def _history(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    return {"history": store.history(_session(body))}


def _handler(store: Store) -> type[BaseHTTPRequestHandler]:
    posts = {"/turns": _turns, "/history": _history}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._send(200, {"sessions": store.count(), "memories": store.memories(),
                                 "points": store.points()})
            elif self.path == "/healthz":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": "no such route"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= _MAX_BODY:
                self._send(413, {"error": "body too large"})
                self.close_connection = True
                return
            raw = self.rfile.read(length)
            route = posts.get(self.path)
            if route is None:
                self._send(404, {"error": "no such route"})
                return
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                self._send(200, route(store, body))
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
            except Exception as exc:  # one failed call must not stop the sidecar
                _log.exception("memory call failed")
                self._send(500, {"error": type(exc).__name__})

    return Handler


def make_server(port: int, store: Store) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(store))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tooling.memory_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="exit when this process (the launcher) is gone")
    args = parser.parse_args(argv)
    # Warnings and errors only: a line per embedding call would drown gunicorn's log.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="memory server: %(levelname)s %(name)s: %(message)s")
    from api import config, memory
    from api.context_manager import BoundedContextManager

    cfg = config.settings()
    where = Path(cfg.data_dir) / "memory"
    try:
        store = BoundedContextManager(memory.new_memory(cfg, where), cfg.max_sessions,
                                      cfg.max_turns, cfg.session_ttl)
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        # qdrant on disk takes one process at a time: name the setting that separates them.
        sys.exit(f"memory server: {where} is in use by another instance; give each "
                 "service its own AGENT_SERVICE_DATA_DIR")
    server = make_server(args.port, store)

    def close_store() -> None:
        # Close qdrant's storage and the history file (releases qdrant's lock).
        store.memory.vector_store.client.close()
        store.memory.db.connection.close()

    serve_until_stopped(server, args.parent_pid, close_store)


if __name__ == "__main__":
    main()
