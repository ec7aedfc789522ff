"""deploy/newrelic: the alert conditions (NerdGraph ``alertsNrqlConditionStaticCreate``
input) and the dashboard (``dashboardCreate`` input), checked against JSON schemas of
those inputs, and every NRQL query against the names memwarden really sends."""

from __future__ import annotations

import inspect
import json
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
    CENSUS_PREFIX,
    EVENT_ACTIONS,
    EVENT_ATTRIBUTES,
    EVENT_TYPE,
    HANDED_ACTIONS,
    METRICS,
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


# Prometheus alerts without a condition here: NRQL has no linear prediction (New Relic
# warns at 90% of the limit instead, MemwardenWorkerFootprintNearLimit), the cgroup's
# gauges are exported to Prometheus only, and growth without a limit has none written.
_NO_NRQL_TWIN = {"MemwardenWorkerFootprintPredictedOverLimit", "MemwardenWorkerFootprintGrowing",
                 "MemwardenCgroupMemoryPredictedFull"}


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
    "count", "max", "min", "average", "sum", "filter", "uniqueCount", "latest", "minute",
    "minutes", "hour", "hours", "day", "days"))
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
