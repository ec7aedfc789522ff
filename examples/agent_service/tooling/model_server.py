"""A small OpenAI-compatible model endpoint on 127.0.0.1, deterministic, no model.

``python -m tooling.model_server --port 8767`` (cwd: examples/agent_service).
Mem0 calls an embedding model for every memory it stores or searches; here
``POST /v1/embeddings`` answers with vectors made from a hash of each input
text (the same text always gets the same unit-length vector, of ``dimensions``
floats when asked, else :data:`DIMENSIONS`). ``POST /v1/chat/completions``
answers a fixed, valid completion (an empty fact list as JSON), for the
paths that would call a chat model. ``GET /v1/models`` lists both.

Each answer closes its connection: a loopback connect costs less than a
tenth of a millisecond, and no client (a worker, a test) then holds a
keep-alive socket to this endpoint between its calls.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import math
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tooling import serve_until_stopped

__all__ = ["DIMENSIONS", "EMBEDDING_MODEL", "embed", "make_server"]

DEFAULT_PORT = 8767
DIMENSIONS = 384  # as small sentence-embedding models have
EMBEDDING_MODEL = "hash-embedding-384"
CHAT_MODEL = "fixed-chat"
_MAX_BODY = 4 * 1024 * 1024
_MAX_DIMENSIONS = 4096


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A unit vector from the text's hash: equal texts, equal vectors."""
    raw = array.array("H", hashlib.shake_256(text.encode()).digest(2 * dimensions))
    values = [value / 32767.5 - 1.0 for value in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        raise ValueError("input must be a string or a list of strings")
    dimensions = body.get("dimensions", DIMENSIONS)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= _MAX_DIMENSIONS:
        raise ValueError(f"dimensions must be an integer from 1 to {_MAX_DIMENSIONS}")
    data = [{"object": "embedding", "index": i, "embedding": embed(text, dimensions)}
            for i, text in enumerate(inputs)]
    tokens = sum(len(text.split()) for text in inputs)
    return {"object": "list", "data": data, "model": str(body.get("model") or EMBEDDING_MODEL),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ValueError("messages must be a list")
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]
    content = json.dumps({"memory": []})
    return {"id": f"chatcmpl-{digest}", "object": "chat.completion", "created": 0,
            "model": str(body.get("model") or CHAT_MODEL),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every call.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log would only add noise to gunicorn's JSON stderr

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)
        self.close_connection = True

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "local"}
                for name in (EMBEDDING_MODEL, CHAT_MODEL)]})
        else:
            self._error(404, f"no route {self.path.split('?', 1)[0]}")

    def do_POST(self) -> None:
        routes = {"/v1/embeddings": _embeddings, "/v1/chat/completions": _chat}
        path = self.path.split("?", 1)[0].rstrip("/")
        handler = routes.get(path)
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY:
            self._error(413, "body too large")
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        if handler is None:
            self._error(404, f"no route {path}")
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            self._send(200, handler(body))
        except ValueError as exc:
            self._error(400, str(exc))


def make_server(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tooling.model_server", description=__doc__)
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("AGENT_SERVICE_MODEL_PORT", DEFAULT_PORT)))
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="exit when this process (the launcher) is gone")
    args = parser.parse_args(argv)
    server = make_server(args.port)
    serve_until_stopped(server, args.parent_pid)


if __name__ == "__main__":
    main()
