"""Prometheus alerting rules: valid, unit-tested with promtool, on exported metrics only."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support import REPO

from memwarden.events import DEATH_CAUSES
from memwarden.export.prometheus import METRICS
from memwarden.hold import policy as recycle

from .prom_support import tool

DEPLOY = REPO / "deploy" / "prometheus"
RULES = DEPLOY / "memwarden.rules.yml"
TESTS = DEPLOY / "memwarden.rules.test.yml"
DRY_RUN_ALERTS = {"MemwardenWouldRecycle", "MemwardenWouldShed", "MemwardenWouldPoolRefuse"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=60)


def test_rules_file_is_valid() -> None:
    """promtool check rules: YAML, PromQL and templates all parse."""
    result = run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """promtool test rules: each alert fires when it should and stays quiet otherwise."""
    result = run("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", TESTS.read_text()))
    assert alerts == tested
    assert alerts == {"MemwardenWorkerFootprintPredictedOverLimit",
                      "MemwardenWorkerFootprintGrowing",
                      "MemwardenCgroupMemoryPredictedFull", "MemwardenRecycleRateRising",
                      "MemwardenOOMKill", "MemwardenWorkerTimeouts",
                      "MemwardenWorkerKilledMidRequest", "MemwardenShedding",
                      "MemwardenPoolRefusing", *DRY_RUN_ALERTS}


def test_rules_use_only_metrics_the_exporter_exposes() -> None:
    code = "\n".join(line.split("#", 1)[0] for line in RULES.read_text().splitlines())
    used = set(re.findall(r"\bmemwarden_[a-z_]+", code))
    assert used <= set(METRICS), used - set(METRICS)
    assert {"memwarden_would_recycles_total", "memwarden_would_shed_requests_total",
            "memwarden_pool_refusals_total", "memwarden_would_pool_refusals_total"} <= used


def test_workers_are_matched_by_slot_never_by_pid() -> None:
    """A pid changes at every recycle; the exporter labels a worker's series by slot."""
    for path in (RULES, TESTS):
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        assert "pid" not in code, path.name
    assert "on (job, instance, slot)" in RULES.read_text()


def test_death_causes_are_the_ones_memwarden_counts() -> None:
    for path in (RULES, TESTS):
        used = set(re.findall(r'cause="(\w+)"', path.read_text()))
        assert used and used <= set(DEATH_CAUSES), (path.name, used - set(DEATH_CAUSES))
    assert {"timeout", "signal"} <= set(re.findall(r'cause="(\w+)"', RULES.read_text()))


def test_the_footprint_is_described_as_memwarden_measures_it_by_default() -> None:
    """RSS by default (MEMWARDEN_FOOTPRINT), PSS only when asked: no rule says PSS alone."""
    from memwarden.settings import Settings

    assert Settings().footprint == "rss"
    text = RULES.read_text()
    assert "PSS with descendants" not in text and "PSS of a worker" not in text
    assert text.count("its own RSS, or PSS with MEMWARDEN_FOOTPRINT=pss") >= 2


def otlp_rules() -> str:
    """The rules docs/exporters.md gives for metrics that arrive over OTLP."""
    text = (REPO / "docs" / "exporters.md").read_text()
    section = text.split("### The same alerts on OTLP metrics", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def otlp_name(name: str, kind: str, unit: str) -> str:
    """Prometheus's OTLP translation: dots to underscores, By as _bytes, no {unit},
    _total on counters."""
    out = name.replace(".", "_") + ("_bytes" if unit == "By" else "")
    return out + ("_total" if kind == "counter" else "")


def test_the_otlp_alert_examples_parse_and_use_the_names_otlp_brings(tmp_path: Path) -> None:
    from memwarden.export.otel import INSTRUMENTS

    path = tmp_path / "otlp.rules.yml"
    path.write_text(otlp_rules())
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    names = {otlp_name(n, kind, unit) for n, (kind, unit, _) in INSTRUMENTS.items()}
    used = set(re.findall(r"\bmemwarden_[a-z_]+(?=[\[{ ])", otlp_rules()))
    assert used and used <= names, used - names
    alerts = set(re.findall(r"- alert: (\w+)", otlp_rules()))
    assert alerts <= set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    assert "pid" not in otlp_rules()


def test_recycle_reasons_are_the_ones_memwarden_records() -> None:
    """A rule that filters on a reason the code never writes silently matches nothing."""
    reasons = {recycle.HARD_LIMIT, recycle.SOFT_LIMIT, recycle.MAX_REQUESTS, recycle.IDLE}
    for path in (RULES, TESTS):
        used = set(re.findall(r'reason!?="(\w+)"', path.read_text()))
        assert used and used <= reasons, (path.name, used - reasons)


def test_dry_run_alerts_are_info_and_name_the_rollout_step() -> None:
    """A dry-run alert informs (nothing was done); it points to the rollout's dry-run step."""
    rules = re.split(r"^\s*- alert: ", RULES.read_text(), flags=re.M)[1:]
    by_name = {rule.split(None, 1)[0]: rule for rule in rules}
    for name in DRY_RUN_ALERTS:
        assert re.search(r"^\s*severity: info$", by_name[name], re.M), name
        assert "docs/rollout.md, Step 2: dry-run" in by_name[name], name
    assert re.search(r"^\s*severity: warning$", by_name["MemwardenPoolRefusing"], re.M)
