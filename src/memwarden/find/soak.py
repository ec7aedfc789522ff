"""A traffic driver for audits: virtual users, bursts and idle gaps.

It reproduces the traffic that kills long-running workers in production:
low and bursty. Bursts of a few concurrent users are separated by idle
gaps; each virtual user keeps its own cookie jar (so the server keeps a
session per user, as it would for a browser), and brand-new users keep
arriving while others return. The run stops at whichever bound comes first:
the request count or the wall time.

Only loopback targets are accepted: every connection goes to 127.0.0.1,
redirects are never followed and proxy settings are ignored, so a routes
file or an environment variable cannot send traffic anywhere else.

The plan (bursts, users, routes, ``{rand}`` values) is drawn from one seeded
generator in the driving thread, never from the request threads, so the same
seed gives the same requests in the same order whatever the server does.
Standard library only.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import IO, Any, TextIO

from memwarden.find.soak_progress import Progress, SoakSummary, retry_after
from memwarden.find.soak_routes import (
    DEFAULT_ROUTES,
    Route,
    RoutesError,
    SoakError,
    load_routes,
    parse_routes,
)

__all__ = ["DEFAULT_ROUTES", "LOCAL_HOSTS", "Route", "RoutesError", "SoakConfig", "SoakError",
           "SoakSummary", "load_routes", "parse_routes", "run_soak"]

# Names that reach this machine and nothing else. Connections always go to
# 127.0.0.1; "localhost" is only what the Host header and cookies see.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
_CONNECT_HOST = "127.0.0.1"
# Errors that mean "no worker answered": the server is restarting a worker,
# or a worker was killed mid-request. Timeouts are not among them: a worker
# that hangs is a finding, and retrying it would double the wait.
_CONNECTION_ERRORS = (ConnectionError, http.client.RemoteDisconnected,
                      http.client.BadStatusLine, http.client.IncompleteRead)



def _check_range(value: tuple[float, float], name: str, minimum: float) -> None:
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)) or low < minimum or high < low:
        raise SoakError(f"{name}: expected {minimum:g} <= low <= high, got {low:g}..{high:g}")


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """What to send, how, and for how long.

    ``new_users`` is the share of visits made by brand-new users (a visit is
    one user's turn in a burst, ``visit_requests`` requests long); the rest
    come from users seen before. Set ``visit_requests`` to ``(1, 1)`` to make
    it exactly the share of requests.
    """

    url: str
    routes: tuple[Route, ...] = DEFAULT_ROUTES
    requests: int = 1000
    seconds: float = 300.0
    seed: int = 0
    new_users: float = 0.3
    burst_users: tuple[int, int] = (1, 10)
    visit_requests: tuple[int, int] = (1, 3)
    idle_seconds: tuple[float, float] = (0.0, 0.2)
    rand_max: int = 1_000_000
    timeout: float = 30.0
    max_retries: int = 3
    max_retry_after: float = 10.0
    request_id_prefix: str = "soak"

    def __post_init__(self) -> None:
        check_local_url(self.url)
        if not self.routes:
            raise SoakError("routes: at least one route is needed")
        if self.requests < 1:
            raise SoakError(f"requests: must be at least 1, got {self.requests}")
        if not self.seconds > 0:
            raise SoakError(f"seconds: must be positive, got {self.seconds}")
        if not 0.0 <= self.new_users <= 1.0:
            raise SoakError(f"new_users: must be between 0 and 1, got {self.new_users}")
        _check_range((float(self.burst_users[0]), float(self.burst_users[1])), "burst_users", 1)
        _check_range((float(self.visit_requests[0]), float(self.visit_requests[1])),
                     "visit_requests", 1)
        _check_range(self.idle_seconds, "idle_seconds", 0.0)
        if self.rand_max < 1 or self.max_retries < 0 or not self.timeout > 0 \
                or not self.max_retry_after >= 0:
            raise SoakError("rand_max, timeout must be positive; max_retries, "
                            "max_retry_after must not be negative")


def check_local_url(url: str) -> tuple[str, int]:
    """The (host, port) of an ``http://`` loopback URL; SoakError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise SoakError(f"{url!r}: only http:// targets on this machine are supported")
    host = (parts.hostname or "").lower()
    if host not in LOCAL_HOSTS:
        raise SoakError(f"{url!r}: refusing to send traffic to {host or 'an empty host'!r}; "
                        f"soak only targets {' or '.join(sorted(LOCAL_HOSTS))}")
    try:
        port = parts.port
    except ValueError as exc:
        raise SoakError(f"{url!r}: {exc}") from None
    if port is None:
        port = 80
    return host, port


@dataclass(slots=True)
class _User:
    id: int
    jar: CookieJar = field(default_factory=CookieJar)
    visits: int = 0


@dataclass(frozen=True, slots=True)
class _Planned:
    seq: int
    route: Route
    rand: int


@dataclass(frozen=True, slots=True)
class _Visit:
    user: _User
    new: bool
    requests: tuple[_Planned, ...]


class _Driver:
    def __init__(self, config: SoakConfig, records: IO[str] | None,
                 progress: Progress, on_record: Callable[[dict[str, Any]], None] | None,
                 stop: threading.Event | None = None,
                 extend: Callable[[SoakSummary], int] | None = None) -> None:
        self.config = config
        self.host, self.port = check_local_url(config.url)
        self.records = records
        self.progress = progress
        self.on_record = on_record
        self.rng = random.Random(config.seed)
        self.users: list[_User] = []
        self.summary = SoakSummary()
        self.lock = threading.Lock()
        self.stop = stop if stop is not None else threading.Event()
        self.active = 0
        self.start = 0.0
        self.deadline = 0.0
        self.weights = [route.weight for route in config.routes]
        self.extend = extend
        self.target = config.requests

    # -- the plan: drawn in the driving thread only, so a seed fixes it ------

    def _new_user(self) -> _User:
        user = _User(id=len(self.users) + 1)
        self.users.append(user)
        return user

    def plan(self) -> Iterator[list[_Visit]]:
        cfg = self.config
        seq = 0
        while True:
            if seq >= self.target:
                # Asked only once every request sent so far has its answer: the
                # caller judges a finished prefix, the same requests a run of
                # exactly this many would have sent.
                if self.extend is None or self.stop.is_set():
                    return
                more = self.extend(self.summary)
                if more <= seq:
                    return
                self.target = more
                self.progress.total = more
            size = self.rng.randint(*cfg.burst_users)
            known = len(self.users)  # users from earlier bursts can return in this one
            taken: set[int] = set()
            chosen: list[_Visit] = []
            for _ in range(size):
                if seq >= self.target:
                    break
                is_new = len(taken) >= known or self.rng.random() < cfg.new_users
                if is_new:
                    user = self._new_user()
                else:
                    # One user is never in a burst twice: its requests stay in order.
                    index = self.rng.randrange(known)
                    while index in taken:
                        index = self.rng.randrange(known)
                    taken.add(index)
                    user = self.users[index]
                count = min(self.rng.randint(*cfg.visit_requests), self.target - seq)
                planned = []
                for _ in range(count):
                    seq += 1
                    route = self.rng.choices(cfg.routes, weights=self.weights)[0]
                    planned.append(_Planned(seq, route, self.rng.randint(1, cfg.rand_max)))
                chosen.append(_Visit(user, is_new, tuple(planned)))
            yield chosen

    # -- sending ----------------------------------------------------------------

    def _send_once(self, user: _User, method: str, path: str, body: bytes | None,
                   headers: dict[str, str]) -> tuple[int, str | None]:
        url = f"http://{self.host}:{self.port}{path}"
        # A urllib Request only to let the cookie jar read and write cookies.
        shadow = urllib.request.Request(url, data=body, headers=headers, method=method)
        user.jar.add_cookie_header(shadow)
        conn = http.client.HTTPConnection(_CONNECT_HOST, self.port, timeout=self.config.timeout)
        try:
            send_headers = dict(shadow.header_items())
            send_headers["Host"] = f"{self.host}:{self.port}"
            conn.request(method, path, body=body, headers=send_headers)
            response = conn.getresponse()
            response.read()
            user.jar.extract_cookies(response, shadow)
            return response.status, response.getheader("Retry-After")
        finally:
            conn.close()

    def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short by the deadline or a stop; False when cut short."""
        remaining = self.deadline - time.monotonic()
        if seconds > remaining:
            if remaining > 0:
                self.stop.wait(remaining)
            return False
        return not self.stop.wait(seconds)

    def _request(self, user: _User, planned: _Planned, new: bool) -> dict[str, Any]:
        cfg = self.config
        path, body, headers = planned.route.render(planned.rand, planned.seq)
        base_id = f"{cfg.request_id_prefix}-{planned.seq}"
        own_id = any(name.lower() == "x-request-id" for name in headers)
        status: int | None = None
        error: str | None = None
        retries = 0
        was_shed = False
        connection_errors = 0
        started = time.monotonic()
        while True:
            if not own_id:
                headers["X-Request-ID"] = base_id if retries == 0 else f"{base_id}.{retries}"
            wait_for: float | None = None
            try:
                status, retry_header = self._send_once(user, planned.route.method, path, body,
                                                       headers)
                error = None
                delay = retry_after(retry_header) if status == 503 else None
                if delay is not None:
                    was_shed = True
                    wait_for = min(delay, cfg.max_retry_after)
            except _CONNECTION_ERRORS as exc:
                status, error = None, f"{type(exc).__name__}: {exc}".rstrip(": ")
                connection_errors += 1
                # A restarting worker is back within a second or so: back off.
                wait_for = min(0.1 * 2 ** retries, 2.0)
            except TimeoutError:
                status, error = None, f"timeout after {cfg.timeout:g} s"
            except (OSError, http.client.HTTPException) as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            if wait_for is None or retries >= cfg.max_retries or self.stop.is_set():
                break
            if not self._sleep(wait_for):
                break
            retries += 1
        duration_ms = (time.monotonic() - started) * 1000.0
        return {"seq": planned.seq, "user": user.id, "new_user": new,
                "method": planned.route.method, "template": planned.route.path, "path": path,
                "request_id": next((v for k, v in headers.items() if k.lower() == "x-request-id"),
                                   None),
                "status": status, "duration_ms": round(duration_ms, 3), "retries": retries,
                "shed": was_shed, "connection_errors": connection_errors, "error": error,
                "t": round(started - self.start, 4)}

    def _visit(self, visit: _Visit) -> list[dict[str, Any]]:
        done = []
        with self.lock:
            self.active += 1
        try:
            for planned in visit.requests:
                if self.stop.is_set() or time.monotonic() >= self.deadline:
                    break
                record = self._request(visit.user, planned, visit.new)
                done.append(record)
                self._count(record)
        finally:
            with self.lock:
                self.active -= 1
        return done

    def _count(self, record: dict[str, Any]) -> None:
        with self.lock:
            s = self.summary
            s.requests += 1
            status = record["status"]
            if record["error"] is not None or (status is not None and status >= 500):
                s.failed += 1
            s.shed += record["shed"]
            s.retried += record["retries"] > 0
            s.retries += record["retries"]
            s.connection_errors += record["connection_errors"]
            key = str(status) if status is not None else "error"
            s.statuses[key] = s.statuses.get(key, 0) + 1
            self.progress.update(s, self.active, time.monotonic() - self.start)

    def run(self) -> SoakSummary:
        cfg = self.config
        self.start = time.monotonic()
        self.deadline = self.start + cfg.seconds
        summary = self.summary
        with ThreadPoolExecutor(max_workers=cfg.burst_users[1],
                                thread_name_prefix="memwarden-soak") as pool:
            try:
                for burst in self.plan():
                    if summary.bursts and not self._sleep(self.rng.uniform(*cfg.idle_seconds)):
                        break
                    if time.monotonic() >= self.deadline:
                        break
                    summary.bursts += 1
                    for visit in burst:
                        visit.user.visits += 1
                        summary.new_user_visits += visit.new
                    summary.users = sum(1 for u in self.users if u.visits)
                    futures = [pool.submit(self._visit, visit) for visit in burst]
                    wait(futures)
                    records = sorted((r for f in futures for r in f.result()),
                                     key=lambda r: r["seq"])
                    self._write(records)
            except BaseException:
                self.stop.set()  # Ctrl-C: in-flight requests end, no new ones start
                raise
        summary.seconds = time.monotonic() - self.start
        if summary.requests >= self.target:
            summary.stopped_by = "requests"
        else:
            summary.stopped_by = "stop" if self.stop.is_set() else "seconds"
        self.progress.update(summary, 0, summary.seconds, final=True)
        return summary

    def _write(self, records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            if self.records is not None:
                self.records.write(json.dumps(record, separators=(",", ":")) + "\n")
            if self.on_record is not None:
                self.on_record(record)
        if self.records is not None:
            self.records.flush()


def run_soak(config: SoakConfig, records: Path | IO[str] | None = None,
             progress: TextIO | None = None,
             on_record: Callable[[dict[str, Any]], None] | None = None,
             stop: threading.Event | None = None,
             extend: Callable[[SoakSummary], int] | None = None) -> SoakSummary:
    """Drive the traffic ``config`` describes and return the counts.

    Each request's result is written as one JSON line to ``records`` (a path
    or an open text file), in sequence order, and passed to ``on_record``.
    ``progress`` (e.g. ``sys.stderr``) shows an updating line on a terminal
    and a plain line every few seconds otherwise. Setting ``stop`` ends the run
    early: requests in flight finish, no new ones start. ``extend``, when
    given, is called each time the requests planned so far (first
    ``config.requests``) have all been answered, with the counts so far; it
    returns the new total to reach, or anything not above the requests sent
    to stop there. The plan stays the one seed's: a run extended from N to M
    sends the same first N requests as a run of N.
    """
    bar = Progress(progress, config.requests, config.seconds)
    if isinstance(records, Path):
        records.parent.mkdir(parents=True, exist_ok=True)
        with records.open("w", encoding="utf-8") as out:
            return _Driver(config, out, bar, on_record, stop, extend).run()
    return _Driver(config, records, bar, on_record, stop, extend).run()
