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

import email.utils
import http.client
import json
import math
import random
import string
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import IO, Any, TextIO

__all__ = [
    "DEFAULT_ROUTES",
    "LOCAL_HOSTS",
    "Route",
    "RoutesError",
    "SoakConfig",
    "SoakError",
    "SoakSummary",
    "load_routes",
    "parse_routes",
    "run_soak",
]

# Names that reach this machine and nothing else. Connections always go to
# 127.0.0.1; "localhost" is only what the Host header and cookies see.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
_CONNECT_HOST = "127.0.0.1"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ROUTE_KEYS = frozenset({"method", "path", "weight", "json", "body", "headers"})
# Headers the driver owns: the target, the framing and the per-user cookies.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "cookie",
                               "connection"})
_PLACEHOLDERS = frozenset({"rand", "seq"})
# Errors that mean "no worker answered": the server is restarting a worker,
# or a worker was killed mid-request. Timeouts are not among them: a worker
# that hangs is a finding, and retrying it would double the wait.
_CONNECTION_ERRORS = (ConnectionError, http.client.RemoteDisconnected,
                      http.client.BadStatusLine, http.client.IncompleteRead)


class SoakError(ValueError):
    """A soak that cannot run as configured (a non-local target, bad bounds)."""


class RoutesError(SoakError):
    """A routes file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of a routes file; ``path``, ``body``, header values and strings
    in ``json`` may hold ``{rand}`` and ``{seq}``."""

    method: str
    path: str
    weight: float = 1.0
    json: Any = None
    has_json: bool = False
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def render(self, rand: int, seq: int) -> tuple[str, bytes | None, dict[str, str]]:
        """The concrete path, body and headers of one request."""
        values = {"rand": rand, "seq": seq}
        path = self.path.format_map(values)
        headers = {name: value.format_map(values) for name, value in self.headers}
        body: bytes | None = None
        if self.has_json:
            body = json.dumps(_fill(self.json, values)).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        elif self.body is not None:
            body = self.body.format_map(values).encode()
        return path, body, headers


DEFAULT_ROUTES: tuple[Route, ...] = (Route("GET", "/"),)


def _fill(value: Any, values: Mapping[str, int]) -> Any:
    if isinstance(value, str):
        return value.format_map(values)
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def _check_template(text: str, where: str) -> None:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise RoutesError(f"{where}: {exc} in {text!r} (write a literal brace as {{{{ or }}}})"
                          ) from None
    for name in fields:
        if name not in _PLACEHOLDERS:
            raise RoutesError(f"{where}: unknown placeholder {{{name}}} in {text!r}; "
                              "use {rand} or {seq}")
    try:
        text.format_map({"rand": 1, "seq": 1})
    except (ValueError, TypeError) as exc:
        raise RoutesError(f"{where}: {exc} in {text!r}") from None


def _check_json_templates(value: Any, where: str) -> None:
    if isinstance(value, str):
        _check_template(value, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_templates(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_templates(item, f"{where}.{key}")


def _parse_route(entry: Any, where: str) -> Route:
    if not isinstance(entry, dict):
        raise RoutesError(f"{where}: expected an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ROUTE_KEYS)
    if unknown:
        raise RoutesError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(sorted(_ROUTE_KEYS))}")
    method = entry.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise RoutesError(f"{where}.method: expected one of {', '.join(sorted(_METHODS))}, "
                          f"got {method!r}")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise RoutesError(f"{where}.path: expected a path starting with '/', got {path!r} "
                          "(the host is always the audited server)")
    if any(ch.isspace() or ord(ch) < 32 for ch in path):
        raise RoutesError(f"{where}.path: {path!r} holds whitespace or control characters")
    _check_template(path, f"{where}.path")
    weight = entry.get("weight", 1)
    if (isinstance(weight, bool) or not isinstance(weight, int | float)
            or not math.isfinite(weight) or weight <= 0):
        raise RoutesError(f"{where}.weight: expected a positive number, got {weight!r}")
    if "json" in entry and "body" in entry:
        raise RoutesError(f"{where}: give either 'json' or 'body', not both")
    body = entry.get("body")
    if body is not None:
        if not isinstance(body, str):
            raise RoutesError(f"{where}.body: expected a string, got {type(body).__name__}")
        _check_template(body, f"{where}.body")
    if "json" in entry:
        _check_json_templates(entry["json"], f"{where}.json")
    raw_headers = entry.get("headers", {})
    if not isinstance(raw_headers, dict):
        raise RoutesError(f"{where}.headers: expected an object of name: value strings")
    headers = []
    for name, value in raw_headers.items():
        if not isinstance(value, str) or not name or any(
                ch.isspace() or ch in ":\r\n" for ch in name) or "\n" in value or "\r" in value:
            raise RoutesError(f"{where}.headers: bad header {name!r}: {value!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise RoutesError(f"{where}.headers: {name!r} is set by the driver (each virtual "
                              "user keeps its own cookies)")
        _check_template(value, f"{where}.headers.{name}")
        headers.append((name, value))
    return Route(method=method.upper(), path=path, weight=float(weight),
                 json=entry.get("json"), has_json="json" in entry, body=body,
                 headers=tuple(headers))


def parse_routes(data: Any, source: str = "routes") -> tuple[Route, ...]:
    """Validate a decoded routes document; errors name ``source`` and the entry."""
    if not isinstance(data, dict) or "routes" not in data:
        raise RoutesError(f'{source}: expected an object like {{"routes": [{{"method": "GET", '
                          f'"path": "/"}}]}}')
    unknown = sorted(set(data) - {"routes"})
    if unknown:
        raise RoutesError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}")
    entries = data["routes"]
    if not isinstance(entries, list) or not entries:
        raise RoutesError(f"{source}: 'routes' must be a non-empty list")
    return tuple(_parse_route(entry, f"{source}: routes[{i}]")
                 for i, entry in enumerate(entries))


def load_routes(path: Path | str) -> tuple[Route, ...]:
    """Read and validate a routes file (see DESIGN.md)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutesError(f"{path}: cannot read the routes file: {exc.strerror or exc}"
                          ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RoutesError(f"{path}: not valid JSON: {exc}") from None
    return parse_routes(data, str(path))


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


@dataclass(slots=True)
class SoakSummary:
    """Counts of a finished soak. ``failed``: status >= 500 after retries, or no
    response at all; ``shed``: requests answered 503 with Retry-After at least
    once; ``retried``: requests sent more than once."""

    requests: int = 0
    failed: int = 0
    shed: int = 0
    retried: int = 0
    retries: int = 0
    connection_errors: int = 0
    users: int = 0
    new_user_visits: int = 0
    bursts: int = 0
    seconds: float = 0.0
    stopped_by: str = "requests"  # or "seconds", or "stop" (the caller's stop event)
    statuses: dict[str, int] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "shed": self.shed,
                "retried": self.retried, "retries": self.retries,
                "connection_errors": self.connection_errors, "users": self.users,
                "new_user_visits": self.new_user_visits, "bursts": self.bursts,
                "seconds": round(self.seconds, 3), "stopped_by": self.stopped_by,
                "statuses": dict(sorted(self.statuses.items()))}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class _Progress:
    """One updating line on a terminal, plain periodic lines otherwise."""

    def __init__(self, stream: TextIO | None, total: int, seconds: float) -> None:
        self._stream = stream
        self.total = total
        self._seconds = seconds
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._every = 0.2 if self._tty else 5.0
        self._last = -math.inf
        self._width = 0

    def update(self, summary: SoakSummary, active: int, elapsed: float,
               final: bool = False) -> None:
        if self._stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < self._every:
            return
        self._last = now
        text = (f"soak: {summary.requests}/{self.total} requests, "
                f"{elapsed:.1f}/{self._seconds:g} s, {active} active users, "
                f"{summary.users} users, {summary.failed} failed, {summary.shed} shed, "
                f"{summary.retried} retried")
        if final:
            text += f" (done: stopped by {summary.stopped_by})"
        try:
            if self._tty:
                pad = max(self._width - len(text), 0)
                self._width = len(text)
                self._stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            else:
                self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None  # a closed terminal must not stop the soak


class _Driver:
    def __init__(self, config: SoakConfig, records: IO[str] | None,
                 progress: _Progress, on_record: Callable[[dict[str, Any]], None] | None,
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
                status, retry_after = self._send_once(user, planned.route.method, path, body,
                                                      headers)
                error = None
                delay = _retry_after(retry_after) if status == 503 else None
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
    bar = _Progress(progress, config.requests, config.seconds)
    if isinstance(records, Path):
        records.parent.mkdir(parents=True, exist_ok=True)
        with records.open("w", encoding="utf-8") as out:
            return _Driver(config, out, bar, on_record, stop, extend).run()
    return _Driver(config, records, bar, on_record, stop, extend).run()
