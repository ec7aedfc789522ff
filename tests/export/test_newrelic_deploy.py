"""deploy/newrelic: the alert conditions (NerdGraph ``alertsNrqlConditionStaticCreate``
input) and the dashboard (``dashboardCreate`` input), checked against JSON schemas of
those inputs, and every NRQL query against the names memwarden really sends."""

from __future__ import annotations

import inspect
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import REPO

from memwarden.events import DEATH_CAUSES
from memwarden.export import RECYCLE_REASONS
from memwarden.export.newrelic import (
    ALL_ATTRIBUTES,
    ATTRIBUTES,
    CENSUS_PREFIX,
    EVENT_ACTIONS,
    EVENT_ATTRIBUTES,
    EVENT_TYPE,
    FOOTPRINT_ATTRIBUTE,
    HANDED_ACTIONS,
    METRICS,
    UPTIME_ATTRIBUTE,
)
from memwarden.hold import watchdog

DEPLOY = REPO / "deploy" / "newrelic"

_PRIORITY = {"enum": ["CRITICAL", "WARNING"]}
_OPERATOR = {"enum": ["ABOVE", "ABOVE_OR_EQUALS", "BELOW", "BELOW_OR_EQUALS", "EQUALS",
                      "NOT_EQUALS"]}

# AlertsNrqlConditionStaticInput, the fields these conditions use; nothing else allowed.
CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["description", "mutation", "conditions"],
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "mutation": {"const": "alertsNrqlConditionStaticCreate"},
        "conditions": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["name", "enabled", "nrql", "signal", "terms",
                         "violationTimeLimitSeconds"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^Memwarden[A-Za-z]+$"},
                "description": {"type": "string", "minLength": 20},
                "enabled": {"type": "boolean"},
                "nrql": {"type": "object", "required": ["query"], "additionalProperties": False,
                         "properties": {"query": {"type": "string", "pattern": "^SELECT "}}},
                "signal": {
                    "type": "object", "required": ["aggregationWindow", "aggregationMethod"],
                    "additionalProperties": False,
                    "properties": {
                        "aggregationWindow": {"type": "integer", "minimum": 30,
                                              "maximum": 7200},
                        "aggregationMethod": {"enum": ["EVENT_FLOW", "EVENT_TIMER",
                                                       "CADENCE"]},
                        "aggregationDelay": {"type": "integer", "minimum": 0,
                                             "maximum": 1200},
                        "fillOption": {"enum": ["NONE", "LAST_VALUE", "STATIC"]},
                    }},
                "terms": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["priority", "operator", "threshold", "thresholdDuration",
                                 "thresholdOccurrences"],
                    "additionalProperties": False,
                    "properties": {
                        "priority": _PRIORITY,
                        "operator": _OPERATOR,
                        "threshold": {"type": "number"},
                        "thresholdDuration": {"type": "integer", "minimum": 60,
                                              "maximum": 86400},
                        "thresholdOccurrences": {"enum": ["ALL", "AT_LEAST_ONCE"]},
                    }}},
                "violationTimeLimitSeconds": {"type": "integer", "minimum": 300,
                                              "maximum": 2592000},
                "expiration": {
                    "type": "object", "additionalProperties": False,
                    "required": ["expirationDuration"],
                    "properties": {
                        "expirationDuration": {"type": "integer", "minimum": 30},
                        "closeViolationsOnExpiration": {"type": "boolean"},
                        "openViolationOnExpiration": {"type": "boolean"},
                    }},
            }}},
    },
}

# DashboardInput, with its pages and widgets.
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "permissions", "pages"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "permissions": {"enum": ["PRIVATE", "PUBLIC_READ_ONLY", "PUBLIC_READ_WRITE"]},
        "pages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "widgets"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "widgets": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["title", "layout", "visualization", "rawConfiguration"],
                    "additionalProperties": False,
                    "properties": {
                        "title": {"type": "string", "minLength": 1},
                        "layout": {
                            "type": "object", "additionalProperties": False,
                            "required": ["column", "row", "width", "height"],
                            "properties": {
                                "column": {"type": "integer", "minimum": 1, "maximum": 12},
                                "row": {"type": "integer", "minimum": 1},
                                "width": {"type": "integer", "minimum": 1, "maximum": 12},
                                "height": {"type": "integer", "minimum": 1},
                            }},
                        "visualization": {
                            "type": "object", "required": ["id"], "additionalProperties": False,
                            "properties": {"id": {"enum": [
                                "viz.line", "viz.area", "viz.bar", "viz.billboard",
                                "viz.table", "viz.pie", "viz.stacked-bar"]}}},
                        "rawConfiguration": {
                            "type": "object", "required": ["nrqlQueries"],
                            "properties": {"nrqlQueries": {
                                "type": "array", "minItems": 1, "items": {
                                    "type": "object", "required": ["accountIds", "query"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "accountIds": {"type": "array", "minItems": 1,
                                                       "items": {"type": "integer"}},
                                        "query": {"type": "string", "pattern": "^SELECT "},
                                    }}}}},
                    }}},
            }}},
    },
}


def _load(name: str) -> Any:
    return json.loads((DEPLOY / name).read_text())


def _queries() -> list[tuple[str, str]]:
    out = [(c["name"], c["nrql"]["query"]) for c in _load("alert_conditions.json")["conditions"]]
    for page in _load("dashboard.json")["pages"]:
        for widget in page["widgets"]:
            out += [(widget["title"], q["query"])
                    for q in widget["rawConfiguration"]["nrqlQueries"]]
    return out


def test_alert_conditions_match_the_schema() -> None:
    doc = _load("alert_conditions.json")
    jsonschema.validate(doc, CONDITION_SCHEMA)
    names = [c["name"] for c in doc["conditions"]]
    assert len(names) == len(set(names))
    for condition in doc["conditions"]:
        window = condition["signal"]["aggregationWindow"]
        for term in condition["terms"]:
            # New Relic refuses a duration that is not a whole number of windows.
            assert term["thresholdDuration"] % window == 0, condition["name"]


# Prometheus alerts without a condition here: the limit is sent only as a custom metric,
# per host over all workers, so no query sets one worker's predicted footprint against
# it (New Relic warns at 90% of the limit instead, MemwardenWorkerFootprintNearLimit),
# and the cgroup's gauges are exported to Prometheus only.
_NO_NRQL_TWIN = {"MemwardenWorkerFootprintPredictedOverLimit", "MemwardenCgroupMemoryPredictedFull"}


def test_each_prometheus_alert_has_a_condition_of_its_name() -> None:
    """The conditions mirror deploy/prometheus's rules, deaths in flight included."""
    rules = (REPO / "deploy" / "prometheus" / "memwarden.rules.yml").read_text()
    alerts = set(re.findall(r"^\s*- alert: (\w+)\s*$", rules, re.MULTILINE))
    assert "MemwardenWorkerTimeouts" in alerts
    conditions = {c["name"] for c in _load("alert_conditions.json")["conditions"]}
    assert alerts - _NO_NRQL_TWIN <= conditions, alerts - _NO_NRQL_TWIN - conditions


def test_dashboard_matches_the_schema() -> None:
    doc = _load("dashboard.json")
    jsonschema.validate(doc, DASHBOARD_SCHEMA)
    for page in doc["pages"]:
        for widget in page["widgets"]:
            layout = widget["layout"]
            assert layout["column"] + layout["width"] - 1 <= 12, widget["title"]


def test_a_wrong_input_fails_the_schemas() -> None:
    doc = _load("alert_conditions.json")
    doc["conditions"][0]["terms"][0]["operator"] = "GREATER"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, CONDITION_SCHEMA)
    dash = _load("dashboard.json")
    dash["pages"][0]["widgets"][0]["visualization"] = {"id": "line"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dash, DASHBOARD_SCHEMA)


# -- NRQL names --------------------------------------------------------------------------

_KEYWORDS = frozenset(w.lower() for w in (
    "SELECT", "FROM", "WHERE", "FACET", "AND", "OR", "NOT", "IS", "TRUE", "FALSE", "NULL", "IN",
    "LIKE", "AS", "LIMIT", "SINCE", "UNTIL", "AGO", "TIMESERIES", "AUTO", "COMPARE", "WITH",
    "count", "max", "min", "average", "sum", "filter", "uniqueCount", "latest", "derivative",
    "minute", "minutes", "hour", "hours", "day", "days"))
# What New Relic adds to every event or metric of an APM application.
_BUILTIN = {"Metric": {"newrelic.timeslice.value", "metricTimesliceName", "appName", "host"},
            EVENT_TYPE: {"appName", "host", "timestamp"},
            "Transaction": {"appName", "host", "name"},
            # Log: memwarden's JSON keys, and the host name the forwarder adds.
            "Log": {"hostname"}}
# The keys of memwarden's master lines the Log queries read, with the values they compare.
LOG_KEYS = {"logger": {"memwarden.recycle"},
            "message": {"recycle", "worker_killed", "oom_kill"},
            "reason": set(RECYCLE_REASONS),
            "killed_by": {"oom_killer", "memwarden_hard_limit", "gunicorn_timeout", "unknown"}}


def _parse(query: str) -> tuple[str, set[str], list[tuple[str | None, str]]]:
    """(event type, identifiers, [(identifier compared, string literal)])."""
    literals: list[tuple[str | None, str]] = []
    for match in re.finditer(r"([\w.]+)?\s*(?:=|!=|LIKE|IN\s*\()?\s*'([^']*)'", query):
        literals.append((match.group(1), match.group(2)))
    bare = re.sub(r"'[^']*'", "''", query)
    source = re.search(r"\bFROM\s+(\w+)", bare)
    assert source, query
    names = {w for w in re.findall(r"[A-Za-z_][\w.]*", bare)
             if w.lower() not in _KEYWORDS and w != source.group(1)}
    return source.group(1), names, literals


def test_the_parser_sees_names_and_literals() -> None:
    kind, names, literals = _parse(
        "SELECT count(*) FROM MemwardenAction WHERE action = 'shed' AND dry_run IS TRUE "
        "AND reason IN ('idle', 'x') FACET appName")
    assert kind == "MemwardenAction"
    assert names == {"action", "dry_run", "reason", "appName"}
    assert [v for _, v in literals] == ["shed", "idle", "x"]


# The values an event query may compare each attribute with: what memwarden sends.
EVENT_VALUES = {"action": set(EVENT_ACTIONS) | set(HANDED_ACTIONS),
                "reason": set(RECYCLE_REASONS),
                "cause": set(DEATH_CAUSES)}


def _check(query: str) -> None:
    """Fail (AssertionError) when ``query`` reads an event type, attribute, metric or
    value that memwarden does not send."""
    kind, names, literals = _parse(query)
    values = {v for _, v in literals}
    if kind == "Metric":
        assert names <= _BUILTIN["Metric"], names - _BUILTIN["Metric"]
        for value in values:
            assert value in METRICS.values() or value == CENSUS_PREFIX + "%", value
    elif kind == EVENT_TYPE:
        allowed = set(EVENT_ATTRIBUTES) | _BUILTIN[EVENT_TYPE]
        assert names <= allowed, names - allowed
        # Each literal against the values of the attribute it is compared with; one in a
        # list (IN ('a', 'b')) against every attribute's.
        every = set().union(*EVENT_VALUES.values())
        for key, value in literals:
            assert value in EVENT_VALUES.get(key or "", every), (key, value)
    elif kind == "Transaction":
        allowed = set(ALL_ATTRIBUTES) | _BUILTIN["Transaction"]
        assert names <= allowed, names - allowed
        assert not values
    elif kind == "Log":
        assert names <= set(LOG_KEYS) | _BUILTIN["Log"], names
        words = re.findall(r"(\w+)\s*=\s*'([^']*)'", query)
        assert words
        for key, value in words:
            assert value in LOG_KEYS[key], (key, value)
    else:
        raise AssertionError(f"FROM {kind} is nothing memwarden sends")


@pytest.mark.parametrize(("title", "query"), _queries())
def test_each_query_names_only_what_memwarden_sends(title: str, query: str) -> None:
    _check(query)


@pytest.mark.parametrize("query", [
    "SELECT count(*) FROM MemwardenDeath FACET cause",
    "SELECT count(*) FROM MemwardenAction WHERE action = 'worker_death'",
    "SELECT count(*) FROM MemwardenAction WHERE action = 'soft_limit'",
    "SELECT count(*) FROM MemwardenAction WHERE cause = 'oom'",
    "SELECT count(*) FROM MemwardenAction FACET signal",
    "SELECT max(newrelic.timeslice.value) FROM Metric "
    "WHERE metricTimesliceName = 'Custom/Memwarden/Worker/Deaths'",
    "SELECT max(newrelic.timeslice.value) FROM Metric WHERE metricName = 'x'",
    "SELECT average(memwarden.death_seconds) FROM Transaction",
    "SELECT derivative(memwarden.footprint, 1 hour) FROM Transaction FACET memwarden.pid",
    "SELECT derivative(memwarden.footprint_bytes, 1 hour) FROM Transaction "
    "WHERE memwarden.uptime_s > 900 FACET memwarden.pid",
    "SELECT count(*) FROM Log WHERE message = 'worker_death'",
])
def test_a_query_for_what_memwarden_does_not_send_fails(query: str) -> None:
    """The check above fails a query that reads an event type, attribute, metric or value
    memwarden never sends: such a widget would stay empty."""
    with pytest.raises(AssertionError):
        _check(query)


def test_log_values_are_the_masters() -> None:
    """The Log queries compare values the master's watchdog writes (the keys of a real
    worker_killed line are checked in test_newrelic)."""
    source = inspect.getsource(watchdog)
    assert watchdog._log.name in LOG_KEYS["logger"]
    for value in LOG_KEYS["killed_by"] | {"worker_killed", "oom_kill"}:
        assert f'"{value}"' in source, value
    assert set(RECYCLE_REASONS) >= {"hard_limit"}


def test_every_action_and_metric_is_shown() -> None:
    """The dashboard has a place for each action (deaths in flight among them) and each
    memory metric."""
    text = Path(DEPLOY / "dashboard.json").read_text()
    for action in (*EVENT_ACTIONS, *HANDED_ACTIONS):
        assert f"action = '{action}'" in text, action
    for name in ("footprint", "limit", "rss", "pss", "children_pss", "blocks"):
        assert METRICS[name] in text, name


# -- a footprint that keeps growing ------------------------------------------------------

GROWTH = "MemwardenWorkerFootprintGrowing"
MIB = 1 << 20


def _growth() -> dict[str, Any]:
    (condition,) = [c for c in _load("alert_conditions.json")["conditions"]
                    if c["name"] == GROWTH]
    return condition


def _growth_rule(condition: dict[str, Any]) -> tuple[int, int, int, float]:
    """(warm-up seconds left out, window seconds, windows in a row, bytes an hour)."""
    match = re.fullmatch(
        r"SELECT derivative\((\S+), 1 hour\) FROM Transaction WHERE (.+) FACET (.+)",
        condition["nrql"]["query"])
    assert match, condition["nrql"]["query"]
    assert match.group(1) == FOOTPRINT_ATTRIBUTE
    warm = re.search(rf"\b{re.escape(UPTIME_ATTRIBUTE)} > (\d+)\b", match.group(2))
    assert warm, match.group(2)
    # One signal per worker life: a pid is a life (a recycle forks a new one).
    assert [f.strip() for f in match.group(3).split(",")] == ["appName", "host",
                                                              ATTRIBUTES["pid"]]
    window = condition["signal"]["aggregationWindow"]
    (term,) = condition["terms"]
    assert (term["operator"], term["thresholdOccurrences"]) == ("ABOVE", "ALL")
    assert condition["signal"].get("fillOption", "NONE") == "NONE"  # a gap breaks the run
    return int(warm.group(1)), window, term["thresholdDuration"] // window, term["threshold"]


def test_growth_condition_is_per_worker_life_and_says_its_threshold() -> None:
    """The growth condition reads the per-worker footprint, one signal per pid, leaves out
    the warm-up, asks for growth in two windows in a row at the Prometheus rule's rate, and
    its description gives the same figures."""
    condition = _growth()
    warm, window, windows, per_hour = _growth_rule(condition)
    assert warm >= 600 and windows >= 2
    rules = (REPO / "deploy" / "prometheus" / "memwarden.rules.yml").read_text()
    assert f"deriv(memwarden_worker_footprint_bytes[1h]) * 3600 > {int(per_hour)}" in rules
    text = condition["description"]
    for figure in (f"{per_hour / MIB:g} MiB an hour", f"{window // 60}-minute windows",
                   f"{warm // 60} minutes", f"{UPTIME_ATTRIBUTE} > {warm}"):
        assert figure in text, figure
    doc = (REPO / "docs" / "newrelic.md").read_text()
    assert f"`{GROWTH}`" in doc and f"{per_hour / MIB:g} MiB an hour" in doc


def _slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope, per hour, as NRQL's derivative(); None under two points."""
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (y - mean_y) for t, y in points)
    return cov / var * 3600 if var else None


def _fires(condition: dict[str, Any], life: list[tuple[float, float, float]]) -> bool:
    """Whether the condition opens an incident on one worker life of census points
    (time, uptime, footprint): its windows of the points after warm-up, each window's
    slope above the threshold, so many windows in a row (a window without two points
    breaks the run, as fillOption NONE does)."""
    warm, window, windows, per_hour = _growth_rule(condition)
    buckets: dict[int, list[tuple[float, float]]] = {}
    for t, uptime, footprint in life:
        if uptime > warm:
            buckets.setdefault(int(t // window), []).append((t, footprint))
    run, last = 0, None
    for index in sorted(buckets):
        slope = _slope_per_hour(buckets[index])
        above = slope is not None and slope > per_hour
        run = (run + 1 if last == index - 1 else 1) if above else 0
        last = index
        if run >= windows:
            return True
    return False


def _life(shape: Any, start: float, hours: float = 4, every: int = 60,
          seed: int = 1) -> list[tuple[float, float, float]]:
    """A worker's census points, a minute apart, with 2 MiB of noise."""
    noise = random.Random(seed)
    return [(start + u, u, 200 * MIB + shape(u) + noise.uniform(-2 * MIB, 2 * MIB))
            for u in range(every, int(hours * 3600), every)]


def _warm(mib: float, tau: float) -> Any:
    return lambda u: mib * MIB * (1 - math.exp(-u / tau))


@pytest.mark.parametrize("start", [0, 1234, 1700])  # where the life falls in the windows
@pytest.mark.parametrize(("shape", "fires"), [
    # Caches warming: 250 MiB with a 5- or a 10-minute time constant. The slower one
    # still adds over 100 MiB an hour in the first window after the warm-up, not in two.
    (_warm(250, 300), False),
    (_warm(250, 600), False),
    # A burst whose 40 MiB the allocator keeps: one window, a steep one, then flat.
    (lambda u: 40 * MIB * (u >= 3600), False),
    # A cache that fills 100 MiB over its first 40 minutes and stops.
    (lambda u: 100 * MIB * min(u, 2400) / 2400, False),
    # Slow leaks, far below any limit: 60 MiB an hour fires, 40 does not.
    (lambda u: 60 * MIB * u / 3600, True),
    (lambda u: 40 * MIB * u / 3600, False),
    # The same 60 MiB an hour behind a 250 MiB warm-up.
    (lambda u: _warm(250, 300)(u) + 60 * MIB * u / 3600, True),
], ids=["warm-5min", "warm-10min", "burst-step", "cache-fills-and-stops", "leak-60MiB/h",
        "leak-40MiB/h", "warm-then-leak"])
def test_growth_threshold_on_model_lives(shape: Any, fires: bool, start: int) -> None:
    """The condition's figures, under a model of its evaluation (least-squares slope per
    window, so many windows in a row): warm-up, a burst and a cache that fills stay quiet,
    a slow leak fires. The threshold is what New Relic compares; the model is ours."""
    assert _fires(_growth(), _life(shape, start)) is fires

