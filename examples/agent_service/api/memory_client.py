"""The hardened context store: the memory sidecar keeps the memories, not the worker.

:class:`RemoteContextStore` has the context store's interface and sends each
call to ``tooling.memory_server`` on 127.0.0.1 (JSON over HTTP, one short
connection per call). The sidecar runs Mem0 with the bounded store, qdrant
and the history on disk under ``AGENT_SERVICE_DATA_DIR``, and lives as long
as gunicorn's master: a worker that is recycled, killed or replaced loses
nothing, and every worker sees every user's context.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

__all__ = ["ContextUnavailable", "RemoteContextStore"]


class ContextUnavailable(RuntimeError):
    """The memory sidecar did not answer; the message says where it was asked."""

    retry_after_header = "1"


class RemoteContextStore:
    """Session context kept by the memory sidecar; this worker holds none of it."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self._port = port
        self._timeout = timeout

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        body = json.dumps(payload).encode() if payload is not None else None
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=self._timeout)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise ContextUnavailable(f"memory server at 127.0.0.1:{self._port} is unavailable "
                                     f"({type(exc).__name__}: {exc})") from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise ContextUnavailable(f"memory server at 127.0.0.1:{self._port} answered "
                                     f"{resp.status}: {raw[:200].decode(errors='replace')}")
        answer: dict[str, Any] = json.loads(raw)
        return answer

    def add_turn(self, session_id: str, role: str, content: str, *, user_agent: str = "",
                 **extra: Any) -> int:
        answer = self._call("POST", "/turns", {
            "session": session_id, "role": role, "content": content,
            "user_agent": user_agent, "extra": {k: str(v) for k, v in extra.items()}})
        return int(answer["turns"])

    def history(self, session_id: str) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = self._call("POST", "/history",
                                                   {"session": session_id})["history"]
        return history

    def stats(self) -> dict[str, int]:
        """The sidecar's sessions, memories and points (for tests and operators)."""
        return {k: int(v) for k, v in self._call("GET", "/stats").items()}

    # The census of this worker: it keeps no session, memory or point itself.
    def count(self) -> int:
        return 0

    def memories(self) -> int:
        return 0

    def points(self) -> int:
        return 0
