"""Read memwarden's log lines from files, gzip files or stdin.

Logs are mixed: the request lines sit between memwarden's protective-action
lines (``analysis.actions``), gunicorn's access lines, the application's own
JSON and plain text. Anything that is not a memwarden line is skipped; a
memwarden line that cannot be trusted is counted, never fatal.
Hostile input is expected: lines are read with a length cap (a 10 GB line
must not be loaded to be rejected), NaN and Infinity are refused, nesting
deep enough to exhaust the recursion limit is caught, numbers are bounded,
and strings that reach the terminal lose their control characters.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from memwarden.find.analysis.actions import ACTION_LINES, ActionKind
from memwarden.find.analysis.counters import ReadCounters
from memwarden.find.analysis.fast_lines import DECODE_ERRORS, fast_decode
from memwarden.find.analysis.heavy_hitters import RouteCounts
from memwarden.find.analysis.inputs import MAX_LINE_BYTES, _bounded_lines, read_path_lines
from memwarden.find.analysis.records import (
    ActionEvent,
    AllocationWindow,
    DeathInFlight,
    LifecycleEvent,
    Record,
    RequestRecord,
    SiteDiff,
)

__all__ = ["MAX_LINE_BYTES", "LineParser", "ReadCounters", "decode_line", "read_path_lines"]
# Kept importable from here, where they were first.
_REEXPORTED = (_bounded_lines, ReadCounters)

REQUEST_LOGGER = "memwarden.request"
ALLOCATION_LOGGER = "memwarden.tracemalloc"
RECYCLE_LOGGER = "memwarden.recycle"

# Bounds on what one log may make the analysis hold: beyond them the extra
# names are folded together rather than growing memory without limit.
MAX_TEXT = 300
MAX_CENSUS_KINDS_PER_LINE = 256
MAX_DISTINCT_KINDS = 512
MAX_DISTINCT_ROUTES = 500
# Routes are counted in this many counters (space-saving): any route with more
# than 1/ROUTE_COUNTERS of the requests is certain to be among them.
ROUTE_COUNTERS = 2 * MAX_DISTINCT_ROUTES
MAX_SITES_PER_LINE = 1000
MAX_DISTINCT_SITES = 5000
OTHER_ROUTES = "(other routes)"
# Anything larger is not a byte count or a request number from this planet,
# and keeping magnitudes below 2**62 keeps every later sum exact enough.
MAX_MAGNITUDE = float(2**62)
_R = TypeVar("_R", bound=Record)




class _InvalidRecord(Exception):
    """A required field is missing or wrong: the whole line is unusable."""


def _clean_text(value: str) -> str:
    if len(value) > MAX_TEXT:
        value = value[:MAX_TEXT] + "..."
    if not value.isprintable():
        # Names reach the terminal: no escape sequences from a hostile log.
        value = "".join(ch if ch.isprintable() else "?" for ch in value)
    return value


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        return None
    return number


def _as_int(value: Any) -> int | None:
    number = _as_number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _reject_constant(_name: str) -> None:
    # NaN and Infinity are not JSON; Python's encoder writes them anyway.
    # Mapping them to None makes the field invalid rather than the line.
    return None


# One decoder for every line, rather than json.loads building one per call.
_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode


def decode_line(raw: str | bytes) -> Any:
    """The line's JSON value; ValueError or RecursionError when it is not JSON.

    msgspec, when installed, reads the line straight from bytes. What it
    refuses (NaN, a number out of range, bad UTF-8, a byte-order mark) goes
    to json, whose reading is the contract: msgspec only answers where both agree.
    """
    if fast_decode is not None and type(raw) is bytes:
        try:
            return fast_decode(raw)
        except DECODE_ERRORS:
            pass
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return _DECODE(text.strip().lstrip("\ufeff"))


class _Fields:
    """Typed access to one parsed line, counting what had to be dropped."""

    __slots__ = ("_counters", "_obj")

    def __init__(self, obj: Mapping[str, Any], counters: ReadCounters) -> None:
        self._obj = obj
        self._counters = counters

    def _drop(self, key: str) -> None:
        if key in self._obj:
            self._counters.invalid_fields += 1

    def number(self, key: str, *, minimum: float | None = None) -> float | None:
        value = _as_number(self._obj.get(key))
        if value is None or (minimum is not None and value < minimum):
            self._drop(key)
            return None
        return value

    def integer(self, key: str, *, minimum: int = 0) -> int | None:
        value = _as_int(self._obj.get(key))
        if value is None or value < minimum:
            self._drop(key)
            return None
        return value

    def required_integer(self, key: str, *, minimum: int = 0) -> int:
        value = _as_int(self._obj.get(key))
        if value is None or value < minimum:
            raise _InvalidRecord(key)
        return value

    def text(self, key: str) -> str | None:
        value = self._obj.get(key)
        if isinstance(value, str) and value:
            return _clean_text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A signal logged as 9 rather than "SIGKILL" is still a signal.
            return _clean_text(str(value))
        self._drop(key)
        return None

    def flag(self, key: str) -> bool | None:
        value = self._obj.get(key)
        if isinstance(value, bool):
            return value
        self._drop(key)
        return None

    def raw(self, key: str) -> Any:
        return self._obj.get(key)


class LineParser:
    """Turns raw lines into records, counting everything it rejects.

    Holds the caps on distinct names, so use one parser per analysis, and
    pass the request records through :meth:`fold_routes` at the end.
    """

    def __init__(self) -> None:
        self.counters = ReadCounters()
        self._kinds: set[str] = set()
        self._routes = RouteCounts(ROUTE_COUNTERS)
        self._sites: set[str] = set()

    def oversized(self) -> None:
        """Count a line the caller refused to read in full."""
        self.counters.lines += 1
        self.counters.oversized_lines += 1

    def parse(self, raw: str | bytes) -> Record | None:
        counters = self.counters
        counters.lines += 1
        if len(raw) > MAX_LINE_BYTES:
            counters.oversized_lines += 1
            return None
        if not (raw[:1] == b"{" if type(raw) is bytes else raw[:1] == "{"):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            if not text.strip().lstrip("\ufeff").startswith("{"):
                counters.skipped_lines += 1
                return None
        try:
            obj = decode_line(raw)
        except (ValueError, RecursionError):
            counters.malformed_lines += 1
            return None
        if not isinstance(obj, dict):
            counters.malformed_lines += 1
            return None
        return self.parse_object(obj)

    def parse_object(self, obj: Mapping[str, Any]) -> Record | None:
        """The record of one decoded line (already counted in ``lines``)."""
        counters = self.counters
        logger, message = obj.get("logger"), obj.get("message")
        try:
            if logger == REQUEST_LOGGER and message == "request":
                record: Record = self._request(_Fields(obj, counters))
                counters.request_lines += 1
            elif logger == ALLOCATION_LOGGER and message == "allocation_sites":
                record = self._allocation(_Fields(obj, counters))
                counters.allocation_lines += 1
            elif logger == RECYCLE_LOGGER and message in ("recycle", "worker_killed"):
                record = self._lifecycle(_Fields(obj, counters), message)
                counters.lifecycle_lines += 1
            elif logger == RECYCLE_LOGGER and message == "death_in_flight":
                record = self._death(_Fields(obj, counters))
                counters.death_lines += 1
            elif type(message) is str and (found := ACTION_LINES.get(message)) is not None \
                    and found[0].logger == logger:
                record = self._action(_Fields(obj, counters), *found)
                counters.action_lines += 1
            else:
                counters.skipped_lines += 1
                return None
        except _InvalidRecord:
            counters.invalid_records += 1
            return None
        return record

    def fold_routes(self, records: Sequence[_R]) -> list[_R]:
        """The records, with the routes beyond the MAX_DISTINCT_ROUTES busiest as OTHER_ROUTES.

        The busiest are known only at the end, so the cut is made here: a
        kept route keeps every one of its requests, whenever they came.
        """
        if len(self._routes) <= MAX_DISTINCT_ROUTES:  # then no counter was ever taken over
            return list(records)
        kept = self._routes.top(MAX_DISTINCT_ROUTES)
        return [cast(_R, dataclasses.replace(record, route=OTHER_ROUTES, method=None))
                if isinstance(record, RequestRecord) and record.route_key not in kept else record
                for record in records]

    def _bounded_name(self, name: str, seen: set[str], limit: int, overflow: str) -> str:
        if name in seen:
            return name
        if len(seen) >= limit:
            self.counters.invalid_fields += 1
            return overflow
        seen.add(name)
        return name

    def census_of(self, obj: Mapping[str, Any]) -> dict[str, float] | None:
        """A request line's census, within the caps on census names."""
        return self._census(_Fields(obj, self.counters))

    def census_dict(self, census: Mapping[str, Any]) -> dict[str, float] | None:
        return self._census(_Fields({"census": census}, self.counters))

    def count_route(self, key: str) -> None:
        self._routes.add(key)

    @property
    def route_counter(self) -> Callable[[str], None]:
        """``count_route`` without its own call: for the per-line path."""
        return self._routes.add

    def kept_routes(self) -> set[str] | None:
        """The route names the report keeps (None: all), the others being OTHER_ROUTES."""
        if len(self._routes) <= MAX_DISTINCT_ROUTES:
            return None
        return self._routes.top(MAX_DISTINCT_ROUTES)

    def _census(self, fields: _Fields) -> dict[str, float] | None:
        raw = fields.raw("census")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.counters.invalid_fields += 1
            return None
        census: dict[str, float] = {}
        for index, (kind, value) in enumerate(raw.items()):
            number = _as_number(value)
            if index >= MAX_CENSUS_KINDS_PER_LINE or not isinstance(kind, str) or not kind \
                    or number is None:
                self.counters.invalid_fields += 1
                continue
            kind = _clean_text(kind)
            if kind not in self._kinds:
                if len(self._kinds) >= MAX_DISTINCT_KINDS:
                    self.counters.invalid_fields += 1
                    continue
                self._kinds.add(kind)
            census[kind] = number
        return census or None

    def _request(self, fields: _Fields) -> RequestRecord:
        pid = fields.required_integer("pid")
        seq = fields.required_integer("seq")
        route = fields.text("route") or fields.text("path") or "?"
        method = fields.text("method")
        key = f"{method} {route}" if method else route
        self._routes.add(key)
        return RequestRecord(
            pid=pid,
            seq=seq,
            route=route,
            method=method,
            status=fields.integer("status"),
            duration_ms=fields.number("duration_ms", minimum=0.0),
            rss_bytes=fields.number("rss_bytes", minimum=0.0),
            rss_delta_bytes=fields.number("rss_delta_bytes"),
            blocks_delta=fields.number("blocks_delta"),
            blocks=fields.number("blocks", minimum=0.0),
            pss_bytes=fields.number("pss_bytes", minimum=0.0),
            uss_bytes=fields.number("uss_bytes", minimum=0.0),
            census=self._census(fields),
            timestamp=fields.text("timestamp"),
        )

    def _allocation(self, fields: _Fields) -> AllocationWindow:
        pid = fields.required_integer("pid")
        window = fields.required_integer("window_requests", minimum=1)
        raw_sites = fields.raw("sites")
        if not isinstance(raw_sites, list):
            raise _InvalidRecord("sites")
        sites: list[SiteDiff] = []
        for item in raw_sites[:MAX_SITES_PER_LINE]:
            site = item.get("site") if isinstance(item, dict) else None
            size = _as_number(item.get("size_diff_bytes")) if isinstance(item, dict) else None
            count = _as_number(item.get("count_diff")) if isinstance(item, dict) else None
            if not isinstance(site, str) or not site or size is None:
                self.counters.invalid_fields += 1
                continue
            name = self._bounded_name(_clean_text(site), self._sites, MAX_DISTINCT_SITES, "")
            if not name:
                continue
            sites.append(SiteDiff(name, size, count if count is not None else 0.0))
        self.counters.invalid_fields += max(0, len(raw_sites) - MAX_SITES_PER_LINE)
        return AllocationWindow(pid=pid, seq=fields.integer("seq"), window_requests=window,
                                sites=tuple(sites))

    def _lifecycle(self, fields: _Fields, message: str) -> LifecycleEvent:
        pid = fields.required_integer("pid")
        if message == "recycle":
            return LifecycleEvent(
                pid=pid, kind="recycle", reason=fields.text("reason"),
                footprint_bytes=fields.number("footprint_bytes", minimum=0.0),
                limit_bytes=fields.number("limit_bytes", minimum=0.0),
                requests=fields.integer("requests"), timestamp=fields.text("timestamp"))
        return LifecycleEvent(
            pid=pid, kind="worker_killed", signal=fields.text("signal"),
            oom_kill=fields.flag("oom_kill"), timestamp=fields.text("timestamp"),
            killed_by=fields.text("killed_by"))

    def _death(self, fields: _Fields) -> DeathInFlight:
        pid = fields.required_integer("pid")
        cause = fields.text("cause")
        if cause is None:
            raise _InvalidRecord("cause")
        route = fields.text("route") or "?"
        return DeathInFlight(
            pid=pid, cause=cause, route=route, method=fields.text("method"),
            signal=fields.text("signal") if fields.raw("signal") is not None else None,
            request_id=fields.text("request_id"),
            seconds=fields.number("seconds", minimum=0.0),
            footprint_start_bytes=fields.number("footprint_start_bytes", minimum=0.0),
            footprint_last_bytes=fields.number("footprint_last_bytes", minimum=0.0),
            timestamp=fields.text("timestamp"))

    def _action(self, fields: _Fields, kind: ActionKind, would: bool) -> ActionEvent:
        pid = fields.required_integer("pid")
        figures = []
        for name in kind.figures:
            value = fields.number(name, minimum=0.0)
            if value is not None:
                figures.append((name, value))
        return ActionEvent(pid=pid, action=kind.name, would=would,
                           detail=fields.text(kind.by) if kind.by is not None else None,
                           figures=tuple(figures), timestamp=fields.text("timestamp"))
