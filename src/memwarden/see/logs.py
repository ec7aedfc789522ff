"""JSON logs: one valid JSON object per line, whatever the message holds.

``JsonFormatter`` puts the request's correlation id and the worker pid on
every record logged during a request, the application's own included, and
``gunicorn_logconfig`` (``logconfig_dict``) makes gunicorn's error and access
logs JSON too. No line carries a query string, a cookie, credentials or a
token-like path segment, the server's own lines and tracebacks included (see
``memwarden.see.redact``), and none is longer than ``linecap.MAX_LINE`` bytes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

from memwarden.see import redact as _redact
from memwarden.see.context import current_private_texts, current_request_id
from memwarden.see.linecap import MAX_LINE, fit

__all__ = ["ContextFilter", "JsonFormatter", "gunicorn_logconfig"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "memwarden",
}
# Cut before scrubbing, to bound its cost: a line never keeps this much anyway.
_MAX_MESSAGE = 16_384
_SERVER_LOGGERS = ("gunicorn.", "uvicorn.")
_INVALID_REQUEST = "Invalid request from ip="
# gunicorn names the header it refused: kept when it is a plain header name.
_HEADER_ERRORS = frozenset({"Invalid HTTP Header", "Invalid HTTP header name"})
_HEADER_NAME = re.compile(r"'[A-Za-z0-9_-]{1,64}'")


def _default(value: object) -> str:
    # Never fail a log line over a value json cannot encode.
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _encode_each(out: dict[str, Any]) -> str:
    """The line when ``out`` as a whole cannot be encoded: each value that fails
    (circular, too deep, not finite, keys json rejects) becomes its ``str``,
    so the request id, pid and the other fields stay on the line."""
    parts = []
    for key, value in out.items():
        try:
            text = json.dumps(value, default=_default, allow_nan=False)
        except Exception:
            text = json.dumps(_default(value))
        parts.append(f"{json.dumps(_default(key))}: {text}")
    return "{" + ", ".join(parts) + "}"


# "000" to "999": the fraction digits of timestamps and request durations,
# looked up rather than formatted (a format spec costs ~0.5 us in a request).
THOUSANDTHS = tuple(f"{i:03d}" for i in range(1000))


class Stamper:
    """ISO-8601 UTC timestamps with milliseconds; the seconds part is cached."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        # One tuple, swapped whole: with two attributes a thread could pair a
        # new second with the previous second's text.
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._cached = cached
        return f"{cached[1]}.{THOUSANDTHS[int((created - second) * 1000)]}Z"


class JsonFormatter(logging.Formatter):
    """Format any record as one line of JSON.

    Records made by memwarden carry their fields pre-built in
    ``record.memwarden``; other records get their ``extra=`` attributes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stamp = Stamper()

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = _message(record)
        except Exception:  # a bad %-format in the app's own call, or a msg whose str() raises
            message = f"{_default(record.msg)} (unformattable args)"
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "...(truncated)"
        pairs = current_private_texts()
        message = _redact.scrub(message, pairs)
        out: dict[str, Any] = {
            "timestamp": self._stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        fields: Any = getattr(record, "memwarden", None)
        prebuilt = type(fields) is dict  # not an app's own extra={"memwarden": ...}
        if not prebuilt or "request_id" not in fields:
            # memwarden's own lines (a refusal, a shed request) carry the id of
            # the request they happened in, as the app's lines do.
            request_id = getattr(record, "request_id", None) or current_request_id()
            if request_id is not None:
                out["request_id"] = request_id
        if prebuilt:
            out.update(fields)
        else:
            out["pid"] = record.process if record.process is not None else os.getpid()
            if record.name == "gunicorn.access" and isinstance(record.args, dict):
                out.update(_access_fields(record.args))
                out["message"] = "access"
            else:
                for key, value in record.__dict__.items():
                    # `extra=` accepts any key; it must not replace level, pid...
                    if (isinstance(key, str) and key not in _RESERVED and key not in out
                            and not key.startswith("_")):
                        out[key] = (_redact.scrub(value[:_MAX_MESSAGE], pairs)
                                    if isinstance(value, str) else value)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            exc = self.formatException(record.exc_info)
            out["exc"] = _redact.scrub(exc[:_MAX_MESSAGE], pairs)
        line = _dumps(out)
        # ASCII only (json escapes the rest): its length in characters is in bytes.
        return line if len(line) < MAX_LINE else fit(out, _dumps)


def _dumps(out: dict[str, Any]) -> str:
    try:
        # allow_nan=False: NaN and Infinity are not JSON, and log shippers reject them.
        return json.dumps(out, default=_default, allow_nan=False)
    except Exception:
        return _encode_each(out)


def _message(record: logging.LogRecord) -> str:
    """The record's message; a server's request target in its arguments (gunicorn's
    "Error handling request", uvicorn's access line) is made safe first, and a
    request the server refused is named without the bytes it echoes."""
    args = record.args
    if not record.name.startswith(_SERVER_LOGGERS):
        return record.getMessage()
    if isinstance(args, tuple) and args:
        args = tuple(_redact.safe_target(a) if isinstance(a, str) and a.startswith("/") else a
                     for a in args)
        message = str(record.msg) % args
    else:
        message = record.getMessage()
    if message.startswith(_INVALID_REQUEST):
        # "Invalid request from ip=1.2.3.4: Invalid HTTP Header: '<the header>'"
        head, sep, detail = message.partition(": ")
        kind, _, rest = detail.partition(":")
        if not (kind in _HEADER_ERRORS and _HEADER_NAME.fullmatch(rest.strip())):
            rest = f" {_redact.REDACTED}" if rest else ""
        message = f"{head}{sep}{kind}" + (f":{rest}" if rest else "")
    return message


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """gunicorn access atoms without the query string, headers or cookies."""
    fields: dict[str, Any] = {}
    for key, name in (("m", "method"), ("U", "path"), ("s", "status"), ("B", "bytes")):
        value = atoms.get(key)
        if value not in (None, "-"):
            fields[name] = _redact.safe_path(value) if key == "U" and isinstance(value, str) \
                else value
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
        "filters": {"context": {"()": "memwarden.see.logs.ContextFilter"}},
        "formatters": {"json": {"()": "memwarden.see.logs.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # propagate=False with their own handler so gunicorn's handlers never
            # write a second, non-JSON copy of the same line.
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO" if access_log else "WARNING",
                                "handlers": ["stderr"], "propagate": False},
            "memwarden": {"level": level, "handlers": ["stderr"], "propagate": False},
        },
    }
