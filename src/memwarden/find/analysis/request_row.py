"""The request line's fast path: a decoded line straight to a row of numbers.

Nearly every line of a week of logs is a request line; building a frozen
record object for each costs more than decoding it. This reads the same
fields with the same checks as ``reader.LineParser`` (the same values are
kept, the same ones dropped and counted) into the tuple ``life_buffer``
stores, with NaN for an absent number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from memwarden.find.analysis.counters import ReadCounters
from memwarden.find.analysis.life_buffer import Row
from memwarden.find.analysis.reader import MAX_MAGNITUDE, _clean_text, _InvalidRecord

__all__ = ["RouteNames", "request_row"]

NAN = math.nan
_INF = math.inf
OTHER_ROUTES = "(other routes)"
# Distinct (route, method) names held by id; more than the reader's route
# counters ever keep, so an overflow only hits logs the report folds anyway.
MAX_ROUTE_NAMES = 4000


class RouteNames:
    """(route, method) pairs by id, bounded; the last id collects the overflow."""

    __slots__ = ("_entries", "_ids", "keys", "known", "names")

    def __init__(self) -> None:
        self.names: list[tuple[str, str | None]] = []
        self.keys: list[str] = []  # "METHOD route" of each id
        self._ids: dict[tuple[str, str | None], int] = {}
        self._entries: dict[tuple[str, str | None], tuple[int, str]] = {}
        # (route, method) -> what ``entry`` gave it before, else None: one dict look-up.
        self.known = self._entries.get

    def entry(self, route: str, method: str | None) -> tuple[int, str]:
        """(id, "METHOD route") in one look-up: the request path's way in."""
        found = self._entries.get((route, method))
        if found is None:
            rid = self.id(route, method)
            found = (rid, self.keys[rid])
            if len(self._entries) < MAX_ROUTE_NAMES:
                self._entries[(route, method)] = found
        return found

    def id(self, route: str, method: str | None) -> int:
        key = (route, method)
        found = self._ids.get(key)
        if found is not None:
            return found
        if len(self.names) >= MAX_ROUTE_NAMES:
            key = (OTHER_ROUTES, None)
            found = self._ids.get(key)
            if found is not None:
                return found
        self._ids[key] = len(self.names)
        self.names.append(key)
        self.keys.append(self.key(key))
        return self._ids[key]

    @staticmethod
    def key(name: tuple[str, str | None]) -> str:
        route, method = name
        return f"{method} {route}" if method else route


def _number(obj: Mapping[str, Any], key: str, minimum: float, counters: ReadCounters) -> float:
    value = obj.get(key)
    kind = type(value)
    if kind is int or kind is float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            number = _INF
        if -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE and number >= minimum:
            return number
        counters.invalid_fields += 1
        return NAN
    if value is not None or key in obj:
        counters.invalid_fields += 1
    return NAN


def _integer(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    kind = type(value)
    if kind is not int and kind is not float:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # as the reader does: through a float
    except OverflowError:
        return None
    if 0 <= number <= MAX_MAGNITUDE and number.is_integer():
        return int(number)
    return None


def _text(obj: Mapping[str, Any], key: str, counters: ReadCounters) -> str | None:
    value = obj.get(key)
    if type(value) is str and value:
        return value if len(value) <= 300 and value.isprintable() else _clean_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _clean_text(str(value))
    if key in obj:
        counters.invalid_fields += 1
    return None


# The numeric fields in row order after status, with their lowest valid value.
_NUMBERS = (("duration_ms", 0.0), ("rss_bytes", 0.0), ("rss_delta_bytes", -_INF),
            ("blocks_delta", -_INF), ("blocks", 0.0), ("pss_bytes", 0.0), ("uss_bytes", 0.0))


def request_row(obj: Mapping[str, Any], counters: ReadCounters, names: RouteNames,
                read_census: Callable[[Mapping[str, Any]], Mapping[str, float] | None]
                ) -> tuple[int, Row, str, str | None]:
    """(pid, row, route key, timestamp) of a request line; _InvalidRecord when unusable.

    ``read_census`` is the parser's (it holds the caps on census names).
    """
    get = obj.get
    pid, seq = get("pid"), get("seq")
    # The common line: plain integers in range, checked inline (no calls).
    if not (type(pid) is int and 0 <= pid <= MAX_MAGNITUDE):
        pid = _integer(obj, "pid")
        if pid is None:
            raise _InvalidRecord("pid")
    if not (type(seq) is int and 0 <= seq <= MAX_MAGNITUDE):
        seq = _integer(obj, "seq")
        if seq is None:
            raise _InvalidRecord("seq")
    route = get("route")
    if not (type(route) is str and route and len(route) <= 300 and route.isprintable()):
        route = _text(obj, "route", counters) or _text(obj, "path", counters) or "?"
    method = get("method")
    if not (type(method) is str and method and len(method) <= 300 and method.isprintable()):
        method = _text(obj, "method", counters)
    status_value = get("status")
    if type(status_value) is int and 0 <= status_value <= MAX_MAGNITUDE:
        status = float(status_value)
    else:
        found = _integer(obj, "status")
        if found is None and "status" in obj:
            counters.invalid_fields += 1
        status = NAN if found is None else float(found)
    values = [status]
    for key, minimum in _NUMBERS:
        value = get(key)
        if value is None and key not in obj:
            values.append(NAN)
        elif type(value) is int and minimum <= value and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            values.append(float(value))
        else:
            values.append(_number(obj, key, minimum, counters))
    row: Row = (seq, names.id(route, method), *values,  # type: ignore[assignment]
                read_census(obj) if "census" in obj else None)
    timestamp = get("timestamp")
    if not (type(timestamp) is str and timestamp and len(timestamp) <= 300):
        timestamp = _text(obj, "timestamp", counters)
    return pid, row, f"{method} {route}" if method else route, timestamp
