"""Memory-based load shedding, as WSGI and ASGI middleware.

Above a threshold a worker answers new requests with ``503``, a
``Retry-After`` header and a short JSON body, so that a load balancer or a
client retries elsewhere or later instead of pushing the worker into the OOM
killer. Two signals, each with hysteresis (shed from ``high``, serve again
below ``low``) so that a worker near the line does not flap:

- the worker's footprint (:mod:`memwarden.footprint`): ``shed_high`` /
  ``shed_low``, sizes or percentages of the worker's share of the cgroup
  limit;
- the cgroup's working set over its limit: ``shed_cgroup_high`` /
  ``shed_cgroup_low``, read at most twice a second.

Health-check paths are never shed: a load balancer must not take the
instance out, only see the 503s. The decision is taken before the app is
called, so a 503 is only ever the whole response. Every shed request is
logged (logger ``memwarden.shed``, message ``shed``) and counted
(:meth:`Shedder.shed_count`, which ``memwarden.gunicorn_conf`` publishes as
the census gauge ``shed.requests``).

Order with the tracker: ``MemoryTracker(ShedMiddleware(app, ...))``, so shed
requests get a request line with status 503 too.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from memwarden import events
from memwarden.footprint import FootprintSampler
from memwarden.hold import perform as actions
from memwarden.hold.policy import worker_share
from memwarden.see.meter import clean_label
from memwarden.settings import Settings

__all__ = ["AsgiShedMiddleware", "ShedMiddleware", "Shedder"]

_log = logging.getLogger("memwarden.shed")
_CGROUP_EVERY = 0.5  # seconds between reads of the cgroup's usage

CgroupReader = Callable[[], "tuple[int, int] | None"]


class _Hysteresis:
    __slots__ = ("high", "low", "on")

    def __init__(self, high: float, low: float) -> None:
        self.high = high
        self.low = low
        self.on = False

    def update(self, value: float) -> bool | None:
        """True when it switches on, False when off, None when unchanged."""
        if not self.on and value >= self.high:
            self.on = True
            return True
        if self.on and value < self.low:
            self.on = False
            return False
        return None


class Shedder:
    """Whether this worker sheds the request in hand; one per worker."""

    def __init__(self, settings: Settings, sampler: FootprintSampler | None, *,
                 workers: int = 1, cgroup_limit: int | None = None,
                 cgroup_reader: CgroupReader | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = settings.shed
        self.retry_after = settings.shed_retry_after
        self._sampler = sampler
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        share = worker_share(cgroup_limit, workers)
        high = settings.shed_high.resolve(share) if settings.shed_high else None
        low = settings.shed_low.resolve(share) if settings.shed_low else None
        self._footprint: _Hysteresis | None = None
        if high is not None and sampler is not None:
            self._footprint = _Hysteresis(high, low if low is not None and low < high
                                          else int(high * 0.9))
        self._cgroup: _Hysteresis | None = None
        self._read_cgroup = cgroup_reader
        if settings.shed_cgroup_high is not None and cgroup_reader is not None:
            chigh = settings.shed_cgroup_high
            clow = settings.shed_cgroup_low
            self._cgroup = _Hysteresis(chigh, clow if clow is not None else chigh - 0.05)
        self._cgroup_at = -1.0
        self._cgroup_ratio: float | None = None
        self._footprint_bytes: int | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != actions.OFF and (self._footprint is not None
                                             or self._cgroup is not None)

    @property
    def shedding(self) -> bool:
        return bool((self._footprint and self._footprint.on)
                    or (self._cgroup and self._cgroup.on))

    def shed_count(self) -> int:
        """Requests shed by this worker so far (dry-run: that would have been)."""
        return self._count

    def thresholds(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._footprint is not None:
            out["shed_high_bytes"] = int(self._footprint.high)
            out["shed_low_bytes"] = int(self._footprint.low)
        if self._cgroup is not None:
            out["shed_cgroup_high"] = self._cgroup.high
            out["shed_cgroup_low"] = self._cgroup.low
        return out

    def _figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._footprint_bytes is not None:
            out["footprint_bytes"] = self._footprint_bytes
        if self._cgroup_ratio is not None:
            out["cgroup_ratio"] = round(self._cgroup_ratio, 4)
        out.update(self.thresholds())
        return out

    def check(self) -> bool:
        """Update both signals; True when this request should be shed."""
        changes: list[tuple[str, bool]] = []
        with self._lock:
            if self._footprint is not None and self._sampler is not None:
                fp = self._sampler.now()
                if fp is not None:
                    self._footprint_bytes = fp.total_bytes
                    change = self._footprint.update(fp.total_bytes)
                    if change is not None:
                        changes.append(("footprint", change))
            if self._cgroup is not None and self._read_cgroup is not None:
                now = self._clock()
                if self._cgroup_at < 0 or now - self._cgroup_at >= _CGROUP_EVERY:
                    self._cgroup_at = now
                    usage = self._read_cgroup()
                    if usage is not None and usage[1] > 0:
                        self._cgroup_ratio = usage[0] / usage[1]
                        change = self._cgroup.update(self._cgroup_ratio)
                        if change is not None:
                            changes.append(("cgroup", change))
            shedding = self.shedding
            figures = self._figures() if changes else None
        for signal_name, on in changes:
            actions.emit(_log, "shedding_started" if on else "shedding_stopped",
                         {"pid": os.getpid(), "signal": signal_name, "shedding": shedding,
                          **(figures or {})})
        return shedding

    def refuse(self, method: str, path: str) -> bool:
        """Log (and count) one shed request; True when the 503 is to be sent."""
        with self._lock:
            self._count += 1
            count = self._count
            fields = {"pid": os.getpid(), "method": clean_label(method),
                      "path": clean_label(path), "status": 503,
                      "retry_after": self.retry_after, "shed_requests": count,
                      **self._figures()}
        refused = actions.perform(self.mode, _log, "shed", fields, lambda: None)
        if refused or self.mode == actions.DRY_RUN:
            events.publish(events.Shed(1, dry_run=not refused))
        return refused

    def body(self) -> bytes:
        return json.dumps({"error": "overloaded", "retry_after": self.retry_after},
                          separators=(",", ":")).encode()


Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _headers(shedder: Shedder, body: bytes) -> list[tuple[str, str]]:
    """The 503's headers: JSON, not to be cached, and when to come back."""
    return [("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(shedder.retry_after)),
            ("Cache-Control", "no-store")]


class _Shedding:
    """What the WSGI and ASGI middlewares share: the shedder, the paths never
    shed, the 503's body, and whether to refuse a request."""

    def __init__(self, shedder: Shedder, health_paths: Iterable[str]) -> None:
        self.shedder = shedder
        self._health = frozenset(health_paths)
        self._body = shedder.body()

    def _refuses(self, method: str, path: str) -> bool:
        return (path not in self._health and self.shedder.check()
                and self.shedder.refuse(method, path))


class ShedMiddleware(_Shedding):
    """WSGI: 503 for new requests while the worker sheds; health checks pass."""

    def __init__(self, app: WSGIApp, shedder: Shedder,
                 health_paths: Iterable[str] = ()) -> None:
        super().__init__(shedder, health_paths)
        self.app = app
        self._headers = _headers(shedder, self._body)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._refuses(str(environ.get("REQUEST_METHOD", "GET")),
                         environ.get("PATH_INFO") or "/"):
            start_response("503 Service Unavailable", list(self._headers))
            return [self._body]
        return self.app(environ, start_response)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiShedMiddleware(_Shedding):
    """ASGI: the same for HTTP scopes; lifespan and websockets pass through."""

    def __init__(self, app: ASGIApp, shedder: Shedder,
                 health_paths: Iterable[str] = ()) -> None:
        super().__init__(shedder, health_paths)
        self.app = app
        self._headers = [(name.lower().encode(), value.encode())
                         for name, value in _headers(shedder, self._body)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http" and self._refuses(str(scope.get("method", "GET")),
                                                         scope.get("path") or "/"):
            await send({"type": "http.response.start", "status": 503,
                        "headers": list(self._headers)})
            await send({"type": "http.response.body", "body": self._body})
            return
        await self.app(scope, receive, send)
