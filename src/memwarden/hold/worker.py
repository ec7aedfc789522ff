"""The worker's side of recycling: measure, ask the policy, act.

Decisions are taken at two moments:

- after each request (a :mod:`memwarden.see.meter` observer): the request line
  already holds RSS, so this costs a counter, a compare and, every
  ``footprint_every`` requests, a sample of PSS and descendants;
- in idle gaps, by a daemon thread that wakes a few times per
  ``idle_seconds``: it is what recycles a worker over the idle limit once
  traffic stops, rather than in the middle of a burst.

To restart, the worker sends itself SIGTERM: every gunicorn worker treats it
as a graceful stop (the sync and gthread workers finish the current request
and leave their loop, uvicorn's finishes the requests in flight), and the
signal also wakes a sync worker sleeping in ``select``. A worker over its
soft or idle limit first takes a rolling slot (:mod:`memwarden.hold.slots`) and
waits for one if all are taken; over the hard limit it does not wait.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from memwarden import events
from memwarden.footprint import Footprint, FootprintSampler
from memwarden.hold import perform as actions
from memwarden.hold.policy import Action, Decision, Limits, decide
from memwarden.hold.slots import RecycleSlots

__all__ = ["AsgiActivity", "Recycler"]

_log = logging.getLogger("memwarden.recycle")


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class _AfterRequest:
    """``Recycler.on_request``: called with a line's fields, or ``usual`` with
    the usual line's RSS."""

    __slots__ = ("_fields", "usual")

    def __init__(self, recycler: Recycler) -> None:
        self._fields = recycler._after_request
        self.usual = recycler._after_usual  # bound once: the meter calls it directly

    def __call__(self, fields: dict[str, Any]) -> None:
        self._fields(fields)


class Recycler:
    """One worker's recycling. Create it in the worker, after fork."""

    def __init__(self, limits: Limits, sampler: FootprintSampler, *,
                 slots: RecycleSlots | None = None, mode: str = actions.ON,
                 health_paths: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.monotonic,
                 stop: Callable[[], None] = _terminate_self) -> None:
        self.limits = limits
        self.sampler = sampler
        self.slots = slots
        self.mode = mode
        self._health = health_paths
        self._clock = clock
        self._stop_worker = stop
        self._lock = threading.Lock()
        self._requests = 0
        self._in_flight = 0
        self._last_end = clock()
        self._done = False
        self._logged: set[str] = set()  # reasons already logged as deferred / dry-run
        self._dry_run_recycles = 0  # dry-run: decisions logged as would_recycle
        self._thread: threading.Thread | None = None
        self._quit = threading.Event()
        # The meter's observer (see.meter.UsualObserver): no dict of the usual
        # line's fields is made for it.
        self.on_request = _AfterRequest(self)

    # -- activity ------------------------------------------------------------------

    def begin(self, path: str | None = None) -> None:
        """A request starts (health checks do not make a worker busy)."""
        if path in self._health:
            return
        with self._lock:
            self._in_flight += 1

    def end(self, path: str | None = None) -> None:
        if path in self._health:
            return
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._last_end = self._clock()

    @property
    def requests(self) -> int:
        return self._requests

    def would_recycles(self) -> int:
        """Dry-run: recycles decided and logged as ``would_recycle`` (one per reason)."""
        return self._dry_run_recycles

    @property
    def recycling(self) -> bool:
        return self._done

    def idle_for(self) -> float | None:
        """Seconds without a request in flight; None while one is."""
        with self._lock:
            if self._in_flight:
                return None
            return max(0.0, self._clock() - self._last_end)

    # -- decisions -------------------------------------------------------------------

    def _after_request(self, fields: dict[str, Any]) -> None:
        """After any request in this worker, from its line's fields."""
        if self._done:
            return
        if not fields.get("health_check"):
            self._requests += 1
            self._last_end = self._clock()
        footprint = self.sampler.observe(fields) if self.limits.watches_memory else None
        self._act(decide(self.limits, footprint.total_bytes if footprint else None,
                         self._requests, None), footprint)

    def _after_usual(self, rss_bytes: int, seq: int) -> None:
        """After a usual request (no health check, no census, RSS read): the
        same as ``_after_request`` with its fields, from its RSS alone."""
        if self._done:
            return
        self._requests += 1
        self._last_end = self._clock()
        footprint = self.sampler.observe_rss(rss_bytes) if self.limits.watches_memory else None
        self._act(decide(self.limits, footprint.total_bytes if footprint else None,
                         self._requests, None), footprint)

    def check_idle(self) -> Decision:
        """The idle timer's check (also usable directly); acts and returns the decision."""
        if self._done:
            return Decision(Action.NONE)
        idle_for = self.idle_for()
        if idle_for is None:
            return Decision(Action.NONE)  # a request in flight: its end will decide
        # About to act on an idle gap: measure descendants afresh rather than
        # trust a sample from the middle of the burst.
        footprint = self.sampler.now(fresh=idle_for >= self.limits.idle_seconds)
        decision = decide(self.limits, footprint.total_bytes if footprint else None,
                          self._requests, idle_for)
        self._act(decision, footprint)
        return decision

    def _act(self, decision: Decision, footprint: Footprint | None) -> None:
        if decision.action is not Action.NOW or decision.reason is None:
            return
        reason = decision.reason
        fields: dict[str, Any] = {"pid": os.getpid()}
        if footprint is not None:
            fields.update(footprint.fields())
        fields.update(decision.fields())
        with self._lock:
            if self._done:
                return
            if self.mode == actions.DRY_RUN:
                if reason not in self._logged:
                    self._logged.add(reason)
                    self._dry_run_recycles += 1
                    actions.emit(_log, "would_recycle", fields)
                    events.publish(events.Recycle(reason, dry_run=True))
                return
            if self.mode == actions.OFF:
                return
            if self.slots is not None:
                if not decision.bypasses_rolling:
                    slot = self.slots.acquire()
                    if slot is None:
                        if reason not in self._logged:
                            self._logged.add(reason)
                            actions.emit(_log, "recycle_deferred",
                                         {**fields, "why": "other workers are recycling"})
                        return
                    if slot >= 0:
                        fields["slot"] = slot
                self.slots.announce()
            self._done = True
        self._quit.set()
        actions.perform(self.mode, _log, "recycle", fields, self._stop_worker)
        events.publish(events.Recycle(reason))

    # -- idle timer --------------------------------------------------------------------

    def start_idle_timer(self) -> None:
        """A daemon thread checking a few times per ``idle_seconds``."""
        if self._thread is not None or not self.limits.watches_memory:
            return
        interval = max(0.05, min(1.0, self.limits.idle_seconds / 4))

        def run() -> None:
            failed = False
            while not self._quit.wait(interval):
                try:
                    self.check_idle()
                except Exception:
                    if not failed:
                        failed = True
                        _log.exception("memwarden idle check failed; it keeps trying")

        self._thread = threading.Thread(target=run, name="memwarden-idle", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._quit.set()


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiActivity:
    """Tells the recycler when HTTP requests start and end (uvicorn has no
    ``pre_request``/``post_request`` hooks)."""

    def __init__(self, app: ASGIApp, recycler: Recycler) -> None:
        self.app = app
        self.recycler = recycler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        self.recycler.begin(path)
        try:
            await self.app(scope, receive, send)
        finally:
            self.recycler.end(path)
