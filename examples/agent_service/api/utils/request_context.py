"""The request's correlation id, from memwarden's request context.

memwarden's tracker reads ``X-Request-ID`` (or a W3C ``traceparent``), makes an
id when there is none, echoes it in the response and puts it on every JSON log
record written during the request. The service adds it to its error bodies so
a user's report can be matched with the log line.
"""

from __future__ import annotations

from typing import Any

from memwarden.see.context import current_request_id

__all__ = ["current_request_id", "error_body"]


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, **extra}
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    return body
