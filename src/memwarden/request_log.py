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

import contextlib
import json
import logging
import operator
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


# The usual line: exactly these fields, as the meter writes them.
_USUAL = ("request_id", "pid", "seq", "method", "route", "status", "duration_ms",
          "rss_bytes", "rss_delta_bytes", "blocks", "blocks_delta")


def format_request_line(head: str, fields: dict[str, Any]) -> str:
    """The request line: ``head`` (timestamp ... message, already JSON) plus fields.

    The usual line is written from one template, cheaper inside a request than
    any loop over the fields; any other (a census, an error, a reading left
    out) as format_line writes it. Either equals json.dumps of the same dict.
    """
    if len(fields) == len(_USUAL):
        try:
            duration = fields["duration_ms"]
            if type(duration) is float and duration - duration == 0.0:  # finite
                return (f'{head}, "request_id": {_escape(fields["request_id"])}, '
                        f'"pid": {fields["pid"]:d}, "seq": {fields["seq"]:d}, '
                        f'"method": {_escape(fields["method"])}, '
                        f'"route": {_escape(fields["route"])}, '
                        f'"status": {fields["status"]:d}, "duration_ms": {duration!r}, '
                        f'"rss_bytes": {fields["rss_bytes"]:d}, '
                        f'"rss_delta_bytes": {fields["rss_delta_bytes"]:d}, '
                        f'"blocks": {fields["blocks"]:d}, '
                        f'"blocks_delta": {fields["blocks_delta"]:d}}}\n')
        except (KeyError, TypeError, ValueError):
            pass  # other keys or values: field by field
    if not fields:
        return head + "}\n"
    return f"{head}, {format_line(fields)[1:]}"


# What decides where one logger sends a record, read in C: the chain's
# signature is this for each of its loggers, compared on every request.
_ROUTING = operator.attrgetter("handlers", "filters", "propagate", "level", "disabled", "parent")

# A handler's stream and its descriptor (None: no descriptor), looked up once
# per plan; re-looked-up if the handler's stream is swapped (setStream).
_Target = tuple[logging.StreamHandler[Any], Any, int | None]


class RequestLineWriter:
    """Emits one request line per call to ``write(fields)``."""

    __slots__ = ("_chain", "_head", "_logger", "_plan", "_signature", "_stamp")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._chain: tuple[logging.Logger, ...] = ()  # the loggers a record passes
        self._signature: tuple[Any, ...] | None = None
        self._plan: tuple[_Target, ...] | None = _SLOW
        self._stamp = Stamper()
        name = _escape(logger.name)
        self._head = f'"level": "INFO", "logger": {name}, "message": "request"'

    def _derive_plan(self) -> tuple[_Target, ...] | None:
        """Where the line goes, and the signature that keeps that answer valid."""
        chain: list[logging.Logger] = []
        logger: logging.Logger | None = self._logger
        while logger is not None:
            chain.append(logger)
            logger = logger.parent if logger.propagate else None
        self._chain = tuple(chain)
        # Copies of the lists: the live ones are compared against them.
        self._signature = tuple((list(h), list(f), *rest)
                                for h, f, *rest in map(_ROUTING, chain))
        targets: list[_Target] = []
        for logger in chain:
            if logger.filters:
                return _SLOW
            for handler in logger.handlers:
                if (type(handler) is not logging.StreamHandler
                        or type(handler.formatter) is not JsonFormatter
                        or any(type(f) is not ContextFilter for f in handler.filters)):
                    return _SLOW
                if handler.level <= logging.INFO:
                    targets.append((handler, handler.stream, _fileno(handler.stream)))
        return tuple(targets) if targets else _SLOW

    def write(self, fields: dict[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        # Any change along the chain (a handler added or removed, a filter, a
        # level, propagation, a new parent logger) re-derives the plan, so a
        # handler added at any time (pytest's capture, a file handler) sees the
        # very next line.
        if tuple(map(_ROUTING, self._chain)) != self._signature:
            self._plan = self._derive_plan()
        plan = self._plan
        if plan is _SLOW:
            # makeRecord + handle skips findCaller's stack walk.
            record = logger.makeRecord(logger.name, logging.INFO, "", 0, "request", (), None)
            record.memwarden = fields
            logger.handle(record)
            return
        line = format_request_line(f'{{"timestamp": "{self._stamp(time.time())}", {self._head}',
                                   fields)
        data = line.encode("ascii")  # every string in the line is escaped to ASCII
        for handler, stream, fileno in plan:
            # The handler's own lock, as Handler.handle takes it (acquire() is
            # only a wrapper around it).
            with handler.lock or contextlib.nullcontext():
                try:
                    if handler.stream is not stream:
                        stream, fileno = handler.stream, _fileno(handler.stream)
                    # Whatever the stream buffered goes first; then one write(2) of
                    # the whole line, skipping the text layer's encode-and-buffer round.
                    stream.flush()
                    if fileno is None:
                        stream.write(line)
                        stream.flush()
                    else:
                        written = os.write(fileno, data)
                        if written < len(data):  # a full pipe may take a long line in parts
                            view = memoryview(data)[written:]
                            while view:
                                view = view[os.write(fileno, view):]
                except Exception:
                    handler.handleError(logger.makeRecord(logger.name, logging.INFO, "", 0,
                                                          "request", (), None))
