"""The request memory tracker as WSGI middleware (Flask, Django, any WSGI app).

Streaming responses are measured when the server closes the response
iterable, so the line covers the whole body. Works wrapped twice: the outer
tracker marks the environ and the inner one passes straight through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from memwarden import context as _context
from memwarden.meter import RequestMeter, clean_label
from memwarden.settings import Settings

__all__ = ["MemoryTracker"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_MARK = "memwarden.tracked"


def wsgi_route(environ: Environ) -> str:
    """The route template when the framework knows it, else the bare path."""
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
    return clean_label(path if isinstance(path, str) else "/")


class _Measured:
    """Wraps the response iterable; records the request when it is closed."""

    __slots__ = ("_begin", "_closed", "_environ", "_error", "_inner", "_method",
                 "_request_id", "_route", "_status", "_token", "_tracker")

    def __init__(self, tracker: MemoryTracker, inner: Iterable[bytes], environ: Environ,
                 begin: float, request_id: str, method: str,
                 status: list[int | None], route: list[str | None], token: Any) -> None:
        self._tracker = tracker
        self._inner = inner
        self._environ = environ
        self._begin = begin
        self._request_id = request_id
        self._method = method
        self._status = status
        self._route = route
        self._token = token
        self._error: BaseException | None = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except BaseException as exc:
            self._error = exc
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            route = self._route[0] or wsgi_route(self._environ)
            self._tracker._record(route, self._begin, self._request_id, self._method,
                                  self._status[0], self._error, self._token)


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
        request_id = _context.request_id_from(environ.get("HTTP_X_REQUEST_ID"),
                                              environ.get("HTTP_TRACEPARENT"))
        token = _context._request_id.set(request_id)
        method = clean_label(str(environ.get("REQUEST_METHOD", "GET")))
        status: list[int | None] = [None]
        route: list[str | None] = [None]
        header = ("X-Request-ID", request_id)

        def tracking_start_response(status_line: str, headers: list[tuple[str, str]],
                                    exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
            try:
                status[0] = int(status_line[:3])
            except ValueError:
                status[0] = None
            headers.append(header)
            # Flask clears environ["werkzeug.request"] when its context pops, after
            # the response has started: read the route template now.
            route[0] = wsgi_route(environ)
            return start_response(status_line, headers, exc_info)

        begin = self.meter.start()
        try:
            result = self.app(environ, tracking_start_response)
        except BaseException as exc:
            self._record(route[0] or wsgi_route(environ), begin, request_id, method,
                         status[0], exc, token)
            raise
        return _Measured(self, result, environ, begin, request_id, method, status, route, token)

    def _record(self, route: str, begin: float, request_id: str,
                method: str, status: int | None, error: BaseException | None,
                token: Any) -> None:
        try:
            self.meter.finish(begin, request_id, method, route, status, error)
        finally:
            try:
                _context._request_id.reset(token)
            except ValueError:  # closed from another context by an unusual server
                _context._request_id.set(None)
