"""Writing the request log line, cheaply.

An ordinary ``logger.info()`` costs tens of microseconds inside a request:
a stack walk, a LogRecord, filters, a dict for the formatter. When the
request logger ends in JSON stream handlers set up by memwarden (the usual
case under ``memwarden.gunicorn_conf``), the line is serialised once and
written straight to those handlers' streams, under their locks. With any
other logging setup (user handlers, filters, pytest's capture) the line goes
through ``logging`` as a normal record, so nothing is ever bypassed. The
choice is re-derived whenever the handler chain changes. Either way a line
is one write of at most ``linecap.MAX_LINE`` bytes, so that workers sharing a
pipe never interleave.

The fast path does not flush the stream's text layer before its write(2): a
StreamHandler flushes after every record, so whatever logging wrote through
the handler is out already, in order. What else may sit in that buffer is
someone's partial line (``sys.stderr.write("...")`` without a newline): it is
finished after the request line rather than have the request line glued to
its end, which would leave neither line readable.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from memwarden.see.linecap import MAX_LINE, fit
from memwarden.see.logs import THOUSANDTHS, ContextFilter, JsonFormatter, Stamper

__all__ = ["RequestLineWriter"]

_SLOW = None  # sentinel plan: go through logging
_INFO = logging.INFO
_NO_LOCK = threading.RLock()  # for a handler without a lock of its own
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


def _dumps(out: dict[str, Any]) -> str:
    return format_line(out)[:-1]


def _fileno(stream: Any) -> int | None:
    try:
        fileno: int = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # io.StringIO and friends: no descriptor
    return fileno


# What decides where one logger sends a record: its handlers, its filters,
# whether it propagates, and its parent. The chain's signature is these for
# each of its loggers, read in C by one attrgetter of dotted names from the
# first logger (``handlers``, ..., ``parent.handlers``, ...) and compared on
# every request. Levels and `disabled` are not in it: logging consults them on
# the first logger only (isEnabledFor, asked on every line) and on each
# handler (checked as it writes).
_ROUTING = ("handlers", "filters", "propagate", "parent")


def _routing(depth: int) -> Callable[[logging.Logger], tuple[Any, ...]]:
    """Reads the routing attributes of the first ``depth`` loggers of a chain."""
    return operator.attrgetter(*("parent." * i + name
                                 for i in range(depth) for name in _ROUTING))


# A handler's stream and its descriptor (None: no descriptor), looked up once
# per plan; re-looked-up if the handler's stream is swapped (setStream).
_Target = tuple[logging.StreamHandler[Any], Any, int | None]


def _write_rest(fileno: int, data: bytes, written: int) -> None:
    """The rest of a line a full pipe took in parts (a long line)."""
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fileno, view):]


class RequestLineWriter:
    """Emits one request line per call: ``write(fields)`` for any line,
    ``write_usual(...)`` for the usual one, from its values."""

    __slots__ = ("_head", "_logger", "_plan", "_routing", "_second", "_signature", "_stamp")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        # The chain's routing attributes as read now, against its signature as
        # last derived (None: never derived, so the first line derives it).
        self._routing: Callable[[logging.Logger], Any] = _routing(1)
        self._signature: tuple[Any, ...] | None = None
        self._plan: tuple[_Target, ...] | None = _SLOW
        # The bound method: calling the instance itself goes through its
        # type's __call__ slot, measurably slower inside a request.
        self._stamp = Stamper().__call__
        # The usual line's own timestamp cache, as Stamper keeps it: (second,
        # its text), one tuple swapped whole.
        self._second: tuple[int, str] = (-1, "")
        name = _escape(logger.name)
        self._head = f'"level": "INFO", "logger": {name}, "message": "request"'

    def _derive_plan(self) -> tuple[_Target, ...] | None:
        """Where the line goes, and the signature that keeps that answer valid."""
        chain: list[logging.Logger] = []
        logger: logging.Logger | None = self._logger
        while logger is not None:
            chain.append(logger)
            logger = logger.parent if logger.propagate else None
        self._routing = _routing(len(chain))
        # Copies of the lists: the live ones are compared against them.
        self._signature = tuple(list(value) if type(value) is list else value
                                for value in self._routing(self._logger))
        targets: list[_Target] = []
        for logger in chain:
            if logger.filters:
                return _SLOW
            for handler in logger.handlers:
                if (type(handler) is not logging.StreamHandler
                        or type(handler.formatter) is not JsonFormatter
                        or any(type(f) is not ContextFilter for f in handler.filters)):
                    return _SLOW
                targets.append((handler, handler.stream, _fileno(handler.stream)))
        return tuple(targets) if targets else _SLOW

    def _current_plan(self) -> tuple[_Target, ...] | None:
        """The plan, re-derived first if anything along the chain changed."""
        # Any change along the chain (a handler added or removed, a filter,
        # propagation, a new parent logger) re-derives the plan, so a handler
        # added at any time (pytest's capture, a file handler) sees the very
        # next line.
        try:
            changed = self._routing(self._logger) != self._signature
        except AttributeError:  # a logger of the chain lost its parent
            changed = True
        if changed:
            self._plan = self._derive_plan()
        return self._plan

    def write(self, fields: dict[str, Any]) -> None:
        """Write any request line: ``fields`` follow the head, in order."""
        stamp = self._stamp(time.time())
        head = f'{{"timestamp": "{stamp}", {self._head}'
        line = f"{head}, {format_line(fields)[1:]}" if fields else head + "}\n"
        if len(line) > MAX_LINE:  # a long route or error, a census of many kinds
            logger = self._logger
            line = fit({"timestamp": stamp, "level": "INFO", "logger": logger.name,
                        "message": "request", **fields}, _dumps) + "\n"
        if not self._emit(line):
            # makeRecord + handle skips findCaller's stack walk.
            logger = self._logger
            record = logger.makeRecord(logger.name, logging.INFO, "", 0, "request", (), None)
            record.memwarden = fields
            logger.handle(record)

    def write_usual(self, request_id: str, pid: int, seq: int, method: str, route: str,
                    status: int, duration_us: int, rss_bytes: int, rss_delta_bytes: int,
                    blocks: int | None, blocks_delta: int | None) -> bool:
        """Write the usual line (these fields, no others) from one template.

        Cheaper inside a request than any loop over a dict: the same JSON as
        ``write`` makes of the same fields, with ``duration_ms`` written from
        whole microseconds (not negative) with three decimals. ``blocks`` and
        ``blocks_delta`` are left out when None (blocks not read on this
        request, or not on the one before). The ints are written as given: the
        caller passes ints. False when the line was not written (it must go
        through ``logging``, or a text field is not a str): then the caller
        writes the fields with :meth:`write`.

        Everything :meth:`_emit` does is done here in line: this is the one
        call a usual request makes to write its line.
        """
        logger = self._logger
        if not logger.isEnabledFor(_INFO):
            return True  # nothing to write, and logging would drop the record too
        try:
            changed = self._routing(logger) != self._signature
        except AttributeError:  # a logger of the chain lost its parent
            changed = True
        if changed:
            self._plan = self._derive_plan()
        plan = self._plan
        if plan is _SLOW:
            return False
        if blocks is None:
            tail = "}\n"
        elif blocks_delta is None:
            tail = f', "blocks": {blocks}}}\n'
        else:
            tail = f', "blocks": {blocks}, "blocks_delta": {blocks_delta}}}\n'
        now = time.time()
        second = int(now)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        try:
            line = (f'{{"timestamp": "{cached[1]}.{THOUSANDTHS[int((now - second) * 1000)]}Z", '
                    f'{self._head}, '
                    f'"request_id": {_escape(request_id)}, "pid": {pid}, "seq": {seq}, '
                    f'"method": {_escape(method)}, "route": {_escape(route)}, '
                    f'"status": {status}, "duration_ms": {duration_us // 1000}.'
                    f'{THOUSANDTHS[duration_us % 1000]}, '
                    f'"rss_bytes": {rss_bytes}, "rss_delta_bytes": {rss_delta_bytes}{tail}')
        except TypeError:  # a value of another type than the signature's
            return False  # written from the dict, as any line
        data = line.encode("ascii")  # every string in the line is escaped to ASCII
        if len(data) > MAX_LINE:  # only a long route or method can make it so
            return False  # written from the dict, cut to fit
        for handler, stream, fileno in plan:  # _put's work in line: one call less
            if handler.level > _INFO:
                continue
            lock = handler.lock or _NO_LOCK
            lock.acquire()
            try:
                if handler.stream is not stream or fileno is None:
                    self._put_locked(handler, data, line)
                else:
                    written = os.write(fileno, data)
                    if written < len(data):
                        _write_rest(fileno, data, written)
            except Exception:
                handler.handleError(logger.makeRecord(logger.name, logging.INFO, "", 0,
                                                      "request", (), None))
            finally:
                lock.release()
        return True

    def _put(self, target: _Target, data: bytes, line: str) -> None:
        """One line to one handler's stream, under the handler's lock."""
        handler = target[0]
        if handler.level > _INFO:
            return
        # The handler's own lock, as Handler.handle takes it. acquire() and
        # release() rather than `with`: half the cost on an RLock.
        lock = handler.lock or _NO_LOCK
        lock.acquire()
        try:
            self._put_locked(handler, data, line)
        except Exception:
            logger = self._logger
            handler.handleError(logger.makeRecord(logger.name, logging.INFO, "", 0,
                                                  "request", (), None))
        finally:
            lock.release()

    @staticmethod
    def _put_locked(handler: logging.StreamHandler[Any], data: bytes, line: str) -> None:
        """The write itself, the handler's lock held: the stream as it is now."""
        stream = handler.stream
        fileno = _fileno(stream)
        # One write(2) of the whole line, skipping the text layer's
        # encode-and-buffer round; nothing flushed first (see the module's doc).
        if fileno is None:
            stream.write(line)
            stream.flush()
        else:
            written = os.write(fileno, data)
            if written < len(data):
                _write_rest(fileno, data, written)

    def _emit(self, line: str) -> bool:
        """Write ``line`` straight to the handlers' streams. False when it must go
        through ``logging`` instead (the line is then not written)."""
        if not self._logger.isEnabledFor(_INFO):
            return True  # nothing to write, and logging would drop the record too
        plan = self._current_plan()
        if plan is _SLOW:
            return False
        data = line.encode("ascii")  # every string in the line is escaped to ASCII
        for target in plan:
            self._put(target, data, line)
        return True
