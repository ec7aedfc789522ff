"""The Grafana dashboard: loads, fits Grafana's dashboard model, queries parse and use
only metrics the exporter exposes. (test_prometheus runs every query on a real server.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import REPO

from memwarden.export.prometheus import METRICS

from .prom_support import tool

DASHBOARD = REPO / "deploy" / "grafana" / "memwarden.json"
BUILTINS = {"__rate_interval", "__interval", "__range"}
# Each action's real counter and its dry-run counter, shown side by side.
DRY_RUN_PAIRS = [
    ("memwarden_recycles_total", "memwarden_would_recycles_total"),
    ("memwarden_shed_requests_total", "memwarden_would_shed_requests_total"),
    ("memwarden_pool_refusals_total", "memwarden_would_pool_refusals_total"),
]

_DATASOURCE = {
    "type": "object", "required": ["type", "uid"],
    "properties": {"type": {"type": "string"}, "uid": {"type": "string"}},
}
# The parts of Grafana's dashboard JSON model (schemaVersion 39) that this file uses,
# with Grafana's own constraints: a 24-column grid, refIds, typed variables.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time", "editable",
                 "graphTooltip", "tags"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "timezone": {"type": "string"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "version": {"type": "integer", "minimum": 0},
        "refresh": {"type": "string"},
        "time": {"type": "object", "required": ["from", "to"],
                 "properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
        "annotations": {"type": "object", "required": ["list"],
                        "properties": {"list": {"type": "array"}}},
        "links": {"type": "array"},
        "templating": {
            "type": "object", "required": ["list"],
            "properties": {"list": {"type": "array", "items": {
                "type": "object", "required": ["name", "type"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                    "type": {"enum": ["query", "datasource", "custom", "constant", "interval",
                                      "textbox", "adhoc"]},
                    "multi": {"type": "boolean"}, "includeAll": {"type": "boolean"},
                    "refresh": {"enum": [0, 1, 2]},
                },
            }}},
        },
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "type": {"enum": ["timeseries", "stat", "gauge", "bargauge", "table", "text",
                                  "row", "heatmap", "alertlist"]},
                "title": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "datasource": _DATASOURCE,
                "gridPos": {
                    "type": "object", "required": ["h", "w", "x", "y"],
                    "properties": {
                        "h": {"type": "integer", "minimum": 1},
                        "w": {"type": "integer", "minimum": 1, "maximum": 24},
                        "x": {"type": "integer", "minimum": 0, "maximum": 23},
                        "y": {"type": "integer", "minimum": 0},
                    },
                },
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr", "datasource"],
                    "properties": {
                        "refId": {"type": "string", "pattern": "^[A-Z]$"},
                        "expr": {"type": "string", "minLength": 1},
                        "legendFormat": {"type": "string"},
                        "datasource": _DATASOURCE,
                        "instant": {"type": "boolean"}, "range": {"type": "boolean"},
                    },
                }},
                "fieldConfig": {"type": "object", "required": ["defaults", "overrides"]},
                "options": {"type": "object"},
            },
        }},
    },
}


def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def exprs() -> list[str]:
    return [t["expr"] for p in board()["panels"] for t in p["targets"]]


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bmemwarden_[a-z_]+", expr))


def test_dashboard_matches_grafanas_dashboard_model() -> None:
    jsonschema.validate(board(), SCHEMA, cls=jsonschema.Draft202012Validator)


def test_panels_fit_the_grid_without_overlap_and_have_unique_ids() -> None:
    panels = board()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({p["title"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in panels:
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])


def test_queries_use_the_datasource_variable_and_defined_variables() -> None:
    b = board()
    defined = {v["name"] for v in b["templating"]["list"]} | BUILTINS
    assert "datasource" in defined
    for p in b["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$\{?(\w+)", t["expr"]))
            assert used <= defined, (p["title"], used - defined)


def test_the_fleet_is_on_the_dashboard() -> None:
    """Footprint per worker, recycles, shedding, deaths, census counts and bytes."""
    used = {m for e in exprs() for m in metrics_in(e)}
    assert {"memwarden_worker_footprint_bytes", "memwarden_worker_limit_bytes",
            "memwarden_recycles_total", "memwarden_shed_requests_total",
            "memwarden_worker_census_count", "memwarden_worker_census_bytes",
            "memwarden_oom_kills_total", "memwarden_worker_deaths_total"} <= used
    footprint = next(p for p in board()["panels"] if p["title"] == "Footprint per worker")
    assert "{{slot}}" in footprint["targets"][0]["legendFormat"]
    # Deaths in flight (timeout, signal) apart from OOM kills: the counter by its cause.
    deaths = [e for e in exprs() if "memwarden_worker_deaths_total" in metrics_in(e)]
    assert deaths and all(re.search(r"sum by \([^)]*\bcause\b", e) for e in deaths), deaths


def check_metrics(expr: str) -> None:
    """Fail (AssertionError) unless ``expr`` names at least one metric, all of them among
    the exporter's definitions (prom_metrics.METRICS, exposition names)."""
    used = metrics_in(expr)
    assert used, expr
    assert used <= set(METRICS), (expr, used - set(METRICS))


def test_every_query_names_only_metrics_memwarden_exports() -> None:
    """Every panel's query and every variable's definition passes check_metrics."""
    queries = exprs() + [v["definition"] for v in board()["templating"]["list"]
                         if v["type"] == "query"]
    for expr in queries:
        check_metrics(expr)


def test_a_query_for_a_metric_memwarden_does_not_export_fails() -> None:
    """A panel on a name the exporter never exposes would stay empty: the check refuses it."""
    for expr in ('sum by (instance) (increase(memwarden_deaths_in_flight_total[5m]))',
                 'memwarden_worker_deaths{cause="timeout"}',
                 'up{job=~"$job"}'):
        with pytest.raises(AssertionError):
            check_metrics(expr)


def test_workers_are_named_by_slot_never_by_pid() -> None:
    """A pid changes at every recycle: no query or legend may key a series on it."""
    for p in board()["panels"]:
        for t in p["targets"]:
            assert "pid" not in t["expr"] + t.get("legendFormat", ""), (p["title"], t)


def test_the_footprint_is_described_as_memwarden_measures_it_by_default() -> None:
    """RSS by default (MEMWARDEN_FOOTPRINT), PSS only when asked: the board says so."""
    from memwarden.settings import Settings

    assert Settings().footprint == "rss"
    footprint = next(p for p in board()["panels"] if p["title"] == "Footprint per worker")
    for text in (footprint["description"], board()["description"]):
        assert "RSS" in text and "MEMWARDEN_FOOTPRINT=pss" in text, text
        assert "PSS of each worker" not in text


def test_every_panel_says_what_it_shows_and_in_what_unit() -> None:
    """A description (what to look for) and a unit on every panel."""
    for p in board()["panels"]:
        assert p.get("description", "").strip(), p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]


def test_real_and_dry_run_decisions_are_side_by_side() -> None:
    """Each action's real and dry-run counters share a panel (over time), and the
    range-totals panel has both, with legends that tell them apart."""
    panels = board()["panels"]
    for real, would in DRY_RUN_PAIRS:
        together = [p for p in panels
                    if {real, would} <= {m for t in p["targets"] for m in metrics_in(t["expr"])}]
        assert len(together) >= 2, (real, would)  # one over time, one over the range
        for p in together:
            for t in p["targets"]:
                used = metrics_in(t["expr"])
                if would in used:
                    assert "would" in t["legendFormat"], (p["title"], t["refId"])
                elif real in used:
                    assert "would" not in t["legendFormat"], (p["title"], t["refId"])
        assert any("$__range" in t["expr"] for p in together for t in p["targets"]
                   if would in metrics_in(t["expr"])), would
    # The grouping labels each counter carries stay in the query.
    by = {"memwarden_would_recycles_total": "reason",
          "memwarden_would_pool_refusals_total": "pool",
          "memwarden_pool_refusals_total": "pool"}
    for metric, label in by.items():
        for e in exprs():
            if metric in metrics_in(e):
                assert re.search(rf"sum by \([^)]*\b{label}\b", e), e


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query, variables filled in, parses (promtool checks it as a recording rule)."""
    promtool = tool("promtool")
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs()):
        concrete = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
        concrete = re.sub(r"\$\{?(\w+)\}?", ".+", concrete)
        rules += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
