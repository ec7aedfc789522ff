"""The request memory tracker as WSGI middleware (Flask, Django, any WSGI app).

Streaming responses are measured when the server closes the response
iterable, so the line covers the whole body. Works wrapped twice: the outer
tracker marks the environ and the inner one passes straight through. The
app's own objects are never changed: ``X-Request-ID`` goes on a copy of the
header list it passes, which it may reuse for every response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from memwarden.see import context as _context
from memwarden.see import inflight_slot as _inflight
from memwarden.see import redact as _redact
from memwarden.see.context import _reset_request, _set_request
from memwarden.see.context import new_request_id as _new_request_id
from memwarden.see.meter import RequestMeter, clean_label
from memwarden.settings import Settings

__all__ = ["MemoryTracker"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_MARK = "memwarden.tracked"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def wsgi_route(environ: Environ) -> str:
    """The route template when the framework knows it, ``<unmatched>`` when it
    matched none, else the path with its id-like segments replaced."""
    route = environ.get("memwarden.route")
    if isinstance(route, str):
        return clean_label(route)
    request = environ.get("werkzeug.request")  # set by Flask/werkzeug
    if request is not None:
        rule = getattr(request, "url_rule", None)
        if rule is not None:
            return clean_label(str(rule.rule))
        if getattr(request, "routing_exception", None) is not None:
            return "<unmatched>"  # 404/405: a raw path would explode cardinality
    path = environ.get("PATH_INFO") or "/"
    return clean_label(_redact.safe_path(path) if isinstance(path, str) else "/")


class _Request:
    """One request's state: its start_response wrapper, then its response iterable.

    A single object per request (rather than closures and cells) keeps the
    per-request cost to one allocation; the request is recorded when the
    server closes the iterable, so a streamed body is measured in full.
    """

    __slots__ = ("_error", "_inner", "_private", "begin", "environ", "meter", "method",
                 "request_id", "route", "slot", "start_response", "status", "token")

    def __init__(self, meter: RequestMeter | None, environ: Environ, start_response: StartResponse,
                 request_id: str, method: str, begin: float) -> None:
        self.meter = meter  # None once the request is recorded
        self.environ: Environ | None = environ  # None once recorded: nothing held after
        self.start_response = start_response
        self.request_id = request_id
        self.method = method
        self.token: Any = None
        self.status: int | None = None
        self.route: str | None = None
        self.begin = begin
        self.slot = -1  # its in-flight record, when the master gave this worker some
        self._inner: Iterable[bytes] = ()
        self._error: BaseException | None = None
        # _private stays unset until a line asks for it: nothing per request.

    def tracking_start_response(self, status_line: str, headers: list[tuple[str, str]],
                                exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
        try:
            self.status = int(status_line[:3])
        except ValueError:
            self.status = None
        # Flask clears environ["werkzeug.request"] when its context pops, after
        # the response has started: read the route template now.
        self.route = wsgi_route(self.environ or {})
        return self.start_response(status_line, [*headers, ("X-Request-ID", self.request_id)],
                                   exc_info)

    def route_now(self) -> str:
        """The route as far as the framework knows it now (for a request cut short)."""
        return self.route or wsgi_route(self.environ or {})

    def private_texts(self) -> tuple[tuple[str, str], ...]:
        """Worked out on the first line logged during the request, then kept."""
        private: tuple[tuple[str, str], ...] | None = getattr(self, "_private", None)
        if private is None:
            environ = self.environ
            private = () if environ is None else _redact.environ_texts(environ)
            self._private = private
        return private

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except BaseException as exc:
            self._error = exc
            raise

    def close(self) -> None:
        """Close the app's iterable, then record the request (once)."""
        meter = self.meter
        if meter is None:  # recorded already
            return
        self.meter = None
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            try:
                error = self._error
                if error is not None:  # the server logs it after the request ended
                    _redact.remember_failure(self)
                meter.finish(self.begin, self.request_id, self.method,
                             self.route or wsgi_route(self.environ or {}), self.status, error)
                if self.slot >= 0:
                    _inflight.end(self.slot)
            finally:
                # The request may stay bound in a context a thread or task copied.
                self.environ = None
                self._inner = ()
                try:
                    _reset_request(self.token)
                except ValueError:  # closed from another context by an unusual server
                    _set_request(None)


class MemoryTracker:
    """WSGI middleware writing one request log line per request."""

    def __init__(self, app: WSGIApp, settings: Settings | None = None,
                 meter: RequestMeter | None = None) -> None:
        self.app = app
        self.meter = meter if meter is not None else RequestMeter(settings)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(_MARK):
            return self.app(environ, start_response)
        environ[_MARK] = True
        x_request_id = environ.get("HTTP_X_REQUEST_ID")
        traceparent = environ.get("HTTP_TRACEPARENT")
        request_id = (_new_request_id() if x_request_id is None and traceparent is None
                      else _context.request_id_from(x_request_id, traceparent))
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in _METHODS:
            method = clean_label(str(method))
        meter = self.meter
        request = _Request(meter, environ, start_response, request_id, method, meter.start())
        slots = _inflight.writer
        if slots is not None:
            request.slot = slots.begin(request_id, method, environ.get("PATH_INFO") or "/",
                                       request.begin)
        request.token = _set_request(request)
        try:
            request._inner = self.app(environ, request.tracking_start_response)
        except BaseException as exc:
            request._error = exc
            request.close()
            raise
        return request
