"""Writing the request log line, cheaply.

An ordinary ``logger.info()`` costs tens of microseconds inside a request:
a stack walk, a LogRecord, filters, a dict for the formatter. When the
request logger ends in JSON stream handlers set up by memwarden (the usual
case under ``memwarden.gunicorn_conf``), the line is serialised once and
written straight to those handlers' streams, under their locks. With any
other logging setup (user handlers, filters, pytest's capture) the line goes
through ``logging`` as a normal record, so nothing is ever bypassed. The
choice is re-derived whenever the handler chain changes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from memwarden.logs import ContextFilter, JsonFormatter, Stamper

__all__ = ["RequestLineWriter"]

_SLOW = None  # sentinel plan: go through logging
_escape = json.encoder.encode_basestring_ascii
# Keys come from a small fixed set: escape each once. Values are never cached:
# ids, timestamps and raw paths are unbounded, and a cache of them would look
# exactly like the leak memwarden is there to find.
_escaped: dict[str, str] = {}
_ESCAPED_MAX = 256


def _json_key(key: str) -> str:
    out = _escaped.get(key)
    if out is None:
        out = _escape(key)
        if len(_escaped) < _ESCAPED_MAX:
            _escaped[key] = out
    return out


def format_line(head: dict[str, Any]) -> str:
    """``json.dumps(head)`` for flat str/int/float values, ~2x faster; other
    values (the census dict) go through json."""
    parts = []
    for key, value in head.items():
        kind = type(value)
        if kind is int:
            text = str(value)
        elif kind is str:
            text = _escape(value)
        elif kind is float:
            # NaN and infinities are not JSON: write null rather than break the line.
            text = repr(value) if value == value and value not in (_INF, -_INF) else "null"
        else:
            try:
                text = json.dumps(value, default=str, allow_nan=False)
            except ValueError:
                text = _escape(str(value))
        parts.append(f"{_json_key(key)}: {text}")
    return "{" + ", ".join(parts) + "}\n"


_INF = float("inf")


def _fileno(stream: Any) -> int | None:
    try:
        fileno: int = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # io.StringIO and friends: no descriptor
    return fileno
# Present on every line the meter writes, in this order.
_FIXED = ("request_id", "pid", "seq", "method", "route", "status", "duration_ms")


def format_request_line(head: str, fields: dict[str, Any]) -> str:
    """The request line: ``head`` (timestamp ... message, already JSON) plus fields.

    The fixed fields are formatted from a template, the rest as format_line
    does; the result equals json.dumps of the same dict, in half the time.
    """
    try:
        duration = fields["duration_ms"]
        if not (type(duration) is float and duration - duration == 0.0):  # finite float
            raise ValueError
        fixed = (f'{head}, "request_id": {_escape(fields["request_id"])}, '
                 f'"pid": {fields["pid"]:d}, "seq": {fields["seq"]:d}, '
                 f'"method": {_escape(fields["method"])}, "route": {_escape(fields["route"])}, '
                 f'"status": {fields["status"]:d}, "duration_ms": {duration!r}')
    except (KeyError, TypeError, ValueError):
        return format_line({**json.loads(head + "}"), **fields})
    rest = [fixed]
    for key, value in fields.items():
        if key in _FIXED:
            continue
        if type(value) is int:
            rest.append(f"{_json_key(key)}: {value}")
        else:
            rest.append(format_line({key: value})[1:-2])
    return ", ".join(rest) + "}\n"


class RequestLineWriter:
    """Emits one request line per call to ``write(fields)``."""

    __slots__ = ("_logger", "_plan", "_signature", "_stamp")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._signature: tuple[Any, ...] | None = None
        self._plan: tuple[logging.StreamHandler[Any], ...] | None = _SLOW
        self._stamp = Stamper()

    def _current_signature(self) -> tuple[Any, ...]:
        # Everything that decides where a record goes: handlers (by identity),
        # filters, propagation, levels, disabled flags, along the chain.
        sig: list[Any] = []
        logger: logging.Logger | None = self._logger
        while logger is not None:
            sig.append((tuple(logger.handlers), tuple(logger.filters), logger.propagate,
                        logger.level, logger.disabled))
            logger = logger.parent if logger.propagate else None
        return tuple(sig)

    def _derive_plan(self) -> tuple[logging.StreamHandler[Any], ...] | None:
        handlers: list[logging.StreamHandler[Any]] = []
        logger: logging.Logger | None = self._logger
        while logger is not None:
            if logger.filters:
                return _SLOW
            for handler in logger.handlers:
                if (type(handler) is not logging.StreamHandler
                        or type(handler.formatter) is not JsonFormatter
                        or any(type(f) is not ContextFilter for f in handler.filters)):
                    return _SLOW
                if handler.level <= logging.INFO:
                    handlers.append(handler)
            logger = logger.parent if logger.propagate else None
        return tuple(handlers) if handlers else _SLOW

    def _head_prefix(self, now: float) -> str:
        return (f'{{"timestamp": "{self._stamp(now)}", "level": "INFO", '
                f'"logger": {_escape(self._logger.name)}, "message": "request"')

    def write(self, fields: dict[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        signature = self._current_signature()
        if signature != self._signature:
            self._signature = signature
            self._plan = self._derive_plan()
        plan = self._plan
        if plan is _SLOW:
            # makeRecord + handle skips findCaller's stack walk.
            record = logger.makeRecord(logger.name, logging.INFO, "", 0, "request", (), None)
            record.memwarden = fields
            logger.handle(record)
            return
        line = format_request_line(self._head_prefix(time.time()), fields)
        data = line.encode("ascii")  # format_request_line escapes to ASCII
        for handler in plan:
            handler.acquire()
            try:
                stream = handler.stream
                # Whatever the stream buffered goes first; then one write(2) of the
                # whole line, skipping the text layer's encode-and-buffer round.
                stream.flush()
                fileno = _fileno(stream)
                if fileno is None:
                    stream.write(line)
                    stream.flush()
                else:
                    view = memoryview(data)
                    while view:  # a full pipe may take a long line in parts
                        view = view[os.write(fileno, view):]
            except Exception:
                handler.handleError(logger.makeRecord(logger.name, logging.INFO, "", 0,
                                                      "request", (), None))
            finally:
                handler.release()
