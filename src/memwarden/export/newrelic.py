"""New Relic APM: memwarden's figures on the Python agent's transactions, metrics and events.

An optional extra (``memwarden[newrelic]``), active in a worker when the New
Relic agent is (``MEMWARDEN_NEWRELIC``):

- ``auto`` (the default): on in a worker whose agent was initialized before
  the worker started (``newrelic-admin run-program gunicorn ...``, or
  ``newrelic.agent.initialize()`` in the gunicorn config or at the top of the
  app module with ``--preload``); off otherwise. Never imports the agent.
- ``1``: on; the extra must be installed (checked when gunicorn starts). A
  worker whose agent is not initialized yet initializes it after fork, before
  the app is imported, from ``NEW_RELIC_CONFIG_FILE`` and ``NEW_RELIC_*``.
- ``0``: off.

What goes out, all of it named here so that the alert conditions and the
dashboard in deploy/newrelic are checked against these names:

- each web transaction gets :data:`ATTRIBUTES` (the request line's memory
  deltas and identity). memwarden wraps the worker's app, outermost, in the
  agent's own WSGI/ASGI wrapper, so that the transaction is still current when
  the request meter finishes: gunicorn's instrumentation wraps the bare app,
  inside memwarden's tracker, and ends its transaction before the tracker
  measures. The inner wrapper then joins the outer transaction.
- on the census cadence (not per request), the worker's gauges as custom
  metrics (:data:`METRICS`, and ``Custom/Memwarden/Census/<kind>``).
- recycles, shed requests and pool refusals, and their dry-run twins, as
  custom events of type :data:`EVENT_TYPE` with :data:`EVENT_ATTRIBUTES`.

The gunicorn master records nothing: the agent reports no data from a process
forked after its application was activated, so activating it in the master
would silence every worker. The master's own events (a worker killed at the
hard limit, an OOM kill) reach New Relic as memwarden's JSON log lines
(``worker_killed``, ``recycle`` with ``reason`` ``hard_limit``) through log
forwarding, or as OTLP counters (``MEMWARDEN_OTEL``). A worker that died
with a request in flight is the exception: the master hands the event to the
next worker it forks (:mod:`memwarden.handoff`), which sends it with its
first request as a :data:`EVENT_TYPE` event of action ``death_in_flight``
(:data:`HANDED_ACTIONS`), with the dead request's ``cause``, ``route``,
``request_id`` and ``seconds``; its ``pid`` is the sending worker's.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from memwarden import events as _events
from memwarden import handoff as _handoff
from memwarden.export import sinks as _exporters
from memwarden.see import meter as _meter
from memwarden.settings import Settings

__all__ = [
    "ATTRIBUTES", "CENSUS_PREFIX", "EVENT_ACTIONS", "EVENT_ATTRIBUTES", "EVENT_TYPE",
    "HANDED_ACTIONS", "METRICS",
    "active", "census_metric_name", "check_extra", "post_worker_init", "start_worker",
    "wrap_app",
]

_log = logging.getLogger("memwarden.exporters.newrelic")

# Request line field -> transaction attribute.
ATTRIBUTES: dict[str, str] = {
    "request_id": "memwarden.request_id",
    "pid": "memwarden.pid",
    "seq": "memwarden.seq",
    "route": "memwarden.route",
    "rss_bytes": "memwarden.rss_bytes",
    "rss_delta_bytes": "memwarden.rss_delta_bytes",
    "blocks_delta": "memwarden.blocks_delta",
}
# Added by this exporter, not from the request line.
UPTIME_ATTRIBUTE = "memwarden.worker_uptime_s"
FOOTPRINT_ATTRIBUTE = "memwarden.footprint_bytes"
ALL_ATTRIBUTES = (*ATTRIBUTES.values(), UPTIME_ATTRIBUTE, FOOTPRINT_ATTRIBUTE)

# Gauge -> custom metric name. Custom metrics are timeslices: per host and
# application, with min, max and average over the worker processes.
METRICS: dict[str, str] = {
    "footprint": "Custom/Memwarden/Memory/Footprint",
    "rss": "Custom/Memwarden/Memory/RSS",
    "pss": "Custom/Memwarden/Memory/PSS",
    "uss": "Custom/Memwarden/Memory/USS",
    "children_pss": "Custom/Memwarden/Memory/ChildrenPSS",
    "limit": "Custom/Memwarden/Memory/Limit",
    "blocks": "Custom/Memwarden/Heap/Blocks",
}
CENSUS_PREFIX = "Custom/Memwarden/Census/"
# Census keys that are not a count of resources, or are sent under METRICS.
_NOT_KINDS = frozenset({"blocks", "children_pss_bytes", "blocks_collected",
                        "blocks_after_full_gc", "gc_full_collections"})

EVENT_TYPE = "MemwardenAction"
# What workers send. An OOM kill is seen only by the master, which sends nothing.
EVENT_ACTIONS = ("recycle", "shed", "pool_refusal")
# What a worker sends for the master: a worker that died with a request in flight.
HANDED_ACTIONS = ("death_in_flight",)
EVENT_ATTRIBUTES = ("action", "dry_run", "reason", "pool", "count", "pid", "seq",
                    "footprint_bytes", "rss_bytes", "limit_bytes", "uptime_s",
                    "cause", "route", "request_id", "seconds")


def check_extra() -> None:
    """Raise MissingExtraError when the agent is not installed (without importing it)."""
    _exporters.require("newrelic.agent", "newrelic", load=False)


def _agent_initialized() -> bool:
    # The agent has no public "initialized" query; this flag is what initialize()
    # itself checks. Looked up in sys.modules: "auto" never imports the agent.
    config = sys.modules.get("newrelic.config")
    return bool(getattr(config, "_configuration_done", False))


class _State:
    """This worker's exporter: on or off, and the last figures its events carry."""

    def __init__(self) -> None:
        self.pid = -1
        self.started = 0.0
        self.kind = "rss"
        self.footprint_descendants = True
        self.footprint: int | None = None
        self.rss: int | None = None
        self.children_pss: int | None = None
        self.handed: list[_events.DeathInFlight] = []  # from the master, not sent yet

    def on(self) -> bool:
        return self.pid == os.getpid()


_state = _State()


def active() -> bool:
    """Whether this process sends to New Relic."""
    return _state.on()


def start_worker(settings: Settings) -> bool:
    """In a new worker (``post_fork``): decide, and wire the observer and the sink.

    Returns whether the exporter is on in this worker.
    """
    mode = getattr(settings, "newrelic", "auto")
    if mode == "off":
        return False
    if not _agent_initialized():
        if mode != "on":
            return False
        check_extra()
        import newrelic.agent  # type: ignore[import-untyped]

        # Before the app is imported, so that the agent instruments its framework.
        newrelic.agent.initialize()
    from memwarden.export.prom_metrics import footprint_kind

    _state.pid = os.getpid()
    _state.started = time.monotonic()
    _state.kind, _state.footprint_descendants = footprint_kind(settings)
    _state.footprint = _state.rss = _state.children_pss = None
    # Taken now, before the app could fork a process of its own (which would
    # make this worker forget them): sent with the first request.
    _state.handed = [e for e in _handoff.take() if isinstance(e, _events.DeathInFlight)]
    _meter.add_observer(_observe)
    _exporters.add_sink(_sink)
    return True


def wrap_app(app: Any, asgi: bool) -> Any:
    """The worker's app inside the agent's own wrapper, so that a transaction spans
    memwarden's tracker; ``app`` unchanged when the exporter is off here."""
    if not _state.on():
        return app
    if asgi:
        from newrelic.api.asgi_application import ASGIApplicationWrapper  # type: ignore[import-untyped]

        return ASGIApplicationWrapper(_LastBodyAfterApp(app))
    from newrelic.api.wsgi_application import WSGIApplicationWrapper  # type: ignore[import-untyped]

    return WSGIApplicationWrapper(app)


def post_worker_init(worker: Any) -> None:
    """Wrap the worker's app (already inside memwarden's tracker) for the agent. Never raises."""
    app = getattr(worker, "wsgi", None)
    if app is None or not _state.on():
        return
    try:
        from memwarden.app_kind import is_asgi_app, is_asgi_worker

        worker.wsgi = wrap_app(app, is_asgi_worker(worker) or is_asgi_app(app))
    except Exception:
        _log.exception("memwarden could not wrap the app for New Relic; its transactions "
                       "carry no memwarden attributes")


class _LastBodyAfterApp:
    """ASGI: pass a response's last body message on when the app returns.

    The agent ends an ASGI transaction inside the send of the last body, and
    memwarden's tracker measures right after that send and logs when the app
    returns: the figures would come after the transaction. Held here, between
    the agent and the tracker, the last body leaves once the tracker is done,
    which is at once for an app that returns after its last send; an app that
    works on after it (a background task) finishes its response after that work.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        held: list[Any] = []

        async def holding_send(message: Any) -> None:
            if held:  # the app sent on after its last body: keep the order
                await send(held.pop())
            elif (message.get("type") == "http.response.body"
                  and not message.get("more_body", False)):
                held.append(message)
                return
            await send(message)

        try:
            await self.app(scope, receive, holding_send)
        finally:
            if held:
                await send(held.pop())


# -- per request -----------------------------------------------------------------------

def _observe(fields: dict[str, Any]) -> None:
    if not _state.on():
        return
    if _state.handed:
        _send_handed()
    from newrelic.api.transaction import current_transaction  # type: ignore[import-untyped]

    rss = fields.get("rss_bytes")
    if isinstance(rss, int):
        _state.rss = rss
    census = fields.get("census")
    metrics = _census_metrics(fields, census) if census is not None else None
    transaction = current_transaction()
    if transaction is None:  # a request the agent does not record
        if metrics:
            _record_metrics(None, metrics)
        return
    attributes = [(name, fields[key]) for key, name in ATTRIBUTES.items() if key in fields]
    attributes.append((UPTIME_ATTRIBUTE, round(time.monotonic() - _state.started, 3)))
    if metrics is not None and METRICS["footprint"] in metrics:
        attributes.append((FOOTPRINT_ATTRIBUTE, metrics[METRICS["footprint"]]))
    transaction.add_custom_attributes(attributes)
    route = fields.get("route")
    if isinstance(route, str) and transaction.group == "Uri":
        # Still named after its raw path: no framework routed it (a request
        # memwarden shed, an app the agent does not instrument). The route has
        # its ids replaced, so that names do not grow without bound.
        transaction.set_transaction_name(route, "Uri", priority=1)
    if metrics:
        _record_metrics(transaction, metrics)


def _census_metrics(fields: dict[str, Any], census: dict[str, Any]) -> dict[str, float]:
    from memwarden.export.prom_metrics import footprint

    out: dict[str, float] = {}
    rss, pss = fields.get("rss_bytes"), fields.get("pss_bytes")
    children = census.get("children_pss_bytes")
    if isinstance(children, int):
        _state.children_pss = children
    total = footprint(_state.kind, rss, pss, _state.children_pss, _state.footprint_descendants)
    if total is not None:
        _state.footprint = total
        out[METRICS["footprint"]] = total
    for key, metric in (("rss_bytes", "rss"), ("pss_bytes", "pss"), ("uss_bytes", "uss")):
        value = fields.get(key)
        if isinstance(value, int):
            out[METRICS[metric]] = value
    if _state.children_pss is not None:
        out[METRICS["children_pss"]] = _state.children_pss
    limit = _exporters.worker_limit()
    if limit is not None:
        out[METRICS["limit"]] = limit
    blocks = census.get("blocks")
    if isinstance(blocks, int):
        out[METRICS["blocks"]] = blocks
    for kind, value in census.items():
        if kind in _NOT_KINDS or kind.startswith("gc.") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[CENSUS_PREFIX + census_metric_name(kind)] = value
    return out


def census_metric_name(kind: str) -> str:
    """A census kind as the last segment of a metric name ('/' would add a level)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in kind)[:100]


def _application() -> Any:
    import newrelic.agent

    return newrelic.agent.application()


def _record_metrics(transaction: Any, metrics: dict[str, float]) -> None:
    items = list(metrics.items())
    if transaction is not None:
        transaction.record_custom_metrics(items)
        return
    application = _application()
    if application.enabled:
        application.record_custom_metrics(items)


# -- events ----------------------------------------------------------------------------

def _event(action: str, dry_run: bool, **extra: Any) -> None:
    if not _state.on():
        # The master (or a worker where the agent is off): see the module's docstring.
        return
    params: dict[str, Any] = {"action": action, "dry_run": dry_run, "pid": os.getpid(),
                              "seq": _meter.worker_requests(),
                              "uptime_s": round(time.monotonic() - _state.started, 3)}
    params.update((k, v) for k, v in extra.items() if v is not None)
    for key, value in (("footprint_bytes", _state.footprint), ("rss_bytes", _state.rss),
                       ("limit_bytes", _exporters.worker_limit())):
        if value is not None:
            params[key] = value
    from newrelic.api.transaction import current_transaction

    transaction = current_transaction()
    if transaction is not None:
        transaction.record_custom_event(EVENT_TYPE, params)
        return
    application = _application()
    if application.enabled:
        application.record_custom_event(EVENT_TYPE, params)


def _send_handed() -> None:
    handed, _state.handed = _state.handed, []
    for death in handed:
        _event("death_in_flight", False, cause=death.cause, route=death.route,
               request_id=death.request_id, seconds=death.seconds)


class _Sink:
    def record_recycle(self, reason: str) -> None:
        _event("recycle", False, reason=reason)

    def record_would_recycle(self, reason: str) -> None:
        _event("recycle", True, reason=reason)

    def record_shed(self, count: int) -> None:
        _event("shed", False, count=count)

    def record_would_shed(self, count: int) -> None:
        _event("shed", True, count=count)

    def record_pool_refusal(self, pool: str) -> None:
        _event("pool_refusal", False, pool=pool)

    def record_would_pool_refusal(self, pool: str) -> None:
        _event("pool_refusal", True, pool=pool)

    def record_oom_kill(self, count: int) -> None:
        _event("oom_kill", False, count=count)

    def set_worker_limit(self, limit_bytes: int | None) -> None:
        pass  # read from memwarden.exporters at each census


_sink = _Sink()
