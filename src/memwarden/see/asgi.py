"""The request memory tracker as pure ASGI middleware (FastAPI, Starlette).

A request is measured when its response completes (the last body message is
sent) and logged when the app returns or raises, so that an exception raised
after a framework sent its 500 response is still named on the line. Non-HTTP
scopes (lifespan, websocket) pass straight through. With several requests in
flight in one worker the deltas overlap; the analysis accounts for that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from memwarden.see import context as _context
from memwarden.see import inflight_slot as _inflight
from memwarden.see import redact as _redact
from memwarden.see.context import _reset_request, _set_request
from memwarden.see.meter import RequestMeter, clean_label
from memwarden.settings import Settings

__all__ = ["AsgiMemoryTracker"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MARK = "memwarden.tracked"


def asgi_route(scope: Scope) -> str:
    """The route template (Starlette/FastAPI set ``scope["route"]``), ``<unmatched>``
    when their router matched none, else the path with its id-like segments replaced."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return clean_label(path)
    if "router" in scope:  # Starlette's router saw the request and matched no route
        return "<unmatched>"
    raw = scope.get("path")
    return clean_label(_redact.safe_path(raw) if isinstance(raw, str) else "/")


# What several X-Request-ID headers become: no id, as a WSGI server's joined value.
_SEVERAL = b","


def _request_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """X-Request-ID and traceparent (None when absent); a header sent several
    times is passed as a value that is no id, so it gets a fresh one."""
    request_id: bytes | None = None
    traceparent: bytes | None = None
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            request_id = value if request_id is None else _SEVERAL
        elif name == b"traceparent":
            traceparent = value if traceparent is None else _SEVERAL
    return request_id, traceparent


class _Bound:
    """The request as the context knows it: its id, and its scope while it runs."""

    __slots__ = ("_private", "request_id", "scope", "slot")

    def __init__(self, request_id: str, scope: Scope) -> None:
        self.request_id = request_id
        self.scope: Scope | None = scope
        self._private: tuple[tuple[str, str], ...] | None = None
        self.slot = -1  # its in-flight record, when the master gave this worker some

    def route_now(self) -> str:
        """The route as far as the router knows it now (for a request cut short)."""
        return asgi_route(self.scope or {})

    def private_texts(self) -> tuple[tuple[str, str], ...]:
        """Worked out on the first line logged during the request, then kept."""
        private = self._private
        if private is None:
            scope = self.scope
            private = () if scope is None else _redact.scope_texts(scope)
            self._private = private
        return private


class AsgiMemoryTracker:
    """ASGI middleware writing one request log line per HTTP request."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None,
                 meter: RequestMeter | None = None) -> None:
        self.app = app
        self.meter = meter if meter is not None else RequestMeter(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get(_MARK):
            await self.app(scope, receive, send)
            return
        scope[_MARK] = True
        raw_id, raw_trace = _request_headers(scope)
        request_id = _context.request_id_from(raw_id, raw_trace)
        bound = _Bound(request_id, scope)
        token = _set_request(bound)
        method = clean_label(str(scope.get("method", "GET")))
        header = (b"x-request-id", request_id.encode("ascii"))
        status: int | None = None
        end: tuple[float, int | None, int | None] | None = None
        meter = self.meter
        begin = meter.start()
        slots = _inflight.writer
        if slots is not None:
            raw_path = scope.get("path")
            bound.slot = slots.begin(request_id, method,
                                     raw_path if isinstance(raw_path, str) else "/", begin)

        async def tracking_send(message: Message) -> None:
            nonlocal status, end
            kind = message.get("type")
            if kind == "http.response.start":
                status = message.get("status")
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                # Measured now, logged when the app returns: frameworks send
                # their 500 response first and raise afterwards.
                end = meter.readings()

        error: BaseException | None = None
        try:
            await self.app(scope, receive, tracking_send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is not None:  # the server logs it after the request ended
                _redact.remember_failure(bound)
            meter.finish(begin, request_id, method, asgi_route(scope), status, error, end)
            if bound.slot >= 0:
                _inflight.end(bound.slot)
            bound.scope = None  # it may stay bound in a context a task copied
            try:
                _reset_request(token)
            except ValueError:
                _set_request(None)
