"""The routes a soak sends: the routes file, its checks and its placeholders.

A routes file is JSON: ``{"routes": [{"method", "path", "weight", "json" or
"body", "headers"}, ...]}``; paths, bodies, header values and strings in
``json`` may hold ``{rand}`` and ``{seq}``. Every mistake is reported with
the file and the entry it is in, before anything is sent.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ROUTES", "Route", "RoutesError", "SoakError", "load_routes",
           "parse_routes"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ROUTE_KEYS = frozenset({"method", "path", "weight", "json", "body", "headers"})
# Headers the driver owns: the target, the framing and the per-user cookies.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "cookie",
                               "connection"})
_PLACEHOLDERS = frozenset({"rand", "seq"})


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
    """Read and validate a routes file (docs/contracts.md)."""
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
