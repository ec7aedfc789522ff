"""JSON logs: one valid JSON object per line, whatever the message holds.

``JsonFormatter`` puts the request's correlation id and the worker pid on
every record logged during a request, the application's own included, and
``gunicorn_logconfig`` (``logconfig_dict``) makes gunicorn's error and access
logs JSON too. Access records carry the path without its query string, and no
headers: query strings and headers are where secrets travel.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from memwarden.context import current_request_id

__all__ = ["ContextFilter", "JsonFormatter", "gunicorn_logconfig"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "memwarden",
}
_MAX_MESSAGE = 16_384


def _default(value: object) -> str:
    # Never fail a log line over a value json cannot encode.
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class _Stamper:
    """ISO-8601 UTC timestamps with milliseconds; the seconds part is cached."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Format any record as one line of JSON.

    Records made by memwarden carry their fields pre-built in
    ``record.memwarden``; other records get their ``extra=`` attributes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _Stamper()

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format in the app's own call
            message = f"{record.msg!s} (unformattable args)"
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "...(truncated)"
        out: dict[str, Any] = {
            "timestamp": self._stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        fields: dict[str, Any] | None = getattr(record, "memwarden", None)
        if fields is not None:
            out.update(fields)
        else:
            request_id = getattr(record, "request_id", None) or current_request_id()
            if request_id is not None:
                out["request_id"] = request_id
            out["pid"] = record.process if record.process is not None else os.getpid()
            if record.name == "gunicorn.access" and isinstance(record.args, dict):
                out.update(_access_fields(record.args))
                out["message"] = "access"
            else:
                for key, value in record.__dict__.items():
                    if key not in _RESERVED and not key.startswith("_"):
                        out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        try:
            return json.dumps(out, default=_default)
        except (TypeError, ValueError):
            # Circular extras or keys json rejects: keep the line, drop the extras.
            safe = {k: out[k] for k in ("timestamp", "level", "logger", "message")}
            return json.dumps(safe, default=_default)


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """gunicorn access atoms without the query string, headers or cookies."""
    fields: dict[str, Any] = {}
    for key, name in (("m", "method"), ("U", "path"), ("s", "status"), ("B", "bytes")):
        value = atoms.get(key)
        if value not in (None, "-"):
            fields[name] = value
    duration = atoms.get("D")
    if isinstance(duration, int):
        fields["duration_ms"] = round(duration / 1000, 3)
    return fields


class ContextFilter(logging.Filter):
    """Put ``request_id`` and ``pid`` on records, for formatters other than ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


def gunicorn_logconfig(level: str = "INFO", access_log: bool = False) -> dict[str, Any]:
    """A ``logconfig_dict`` for gunicorn: every log as JSON on stderr.

    With a ``logconfig_dict`` gunicorn writes access records whatever
    ``accesslog`` says; memwarden's request line already covers them, so they
    are off unless asked for.
    """
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "memwarden.logs.ContextFilter"}},
        "formatters": {"json": {"()": "memwarden.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # propagate=False with their own handler so gunicorn's handlers never
            # write a second, non-JSON copy of the same line.
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO" if access_log else "WARNING", "handlers": ["stderr"], "propagate": False},
            "memwarden": {"level": level, "handlers": ["stderr"], "propagate": False},
        },
    }
