"""Prometheus alerting rules: valid, unit-tested with promtool, on exported metrics only."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from support import REPO

from memwarden.exporters.prometheus import METRICS

DEPLOY = REPO / "deploy" / "prometheus"
RULES = DEPLOY / "memwarden.rules.yml"
TESTS = DEPLOY / "memwarden.rules.test.yml"
INSTALL_HINT = ("apt-get install -y prometheus (Debian's package provides promtool; "
                "the Makefile's `prometheus` target installs it)")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool is not installed: {INSTALL_HINT}")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=60)


def test_rules_file_is_valid() -> None:
    """promtool check rules: YAML, PromQL and templates all parse."""
    result = run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


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
                      "MemwardenCgroupMemoryPredictedFull", "MemwardenRecycleRateRising",
                      "MemwardenOOMKill", "MemwardenShedding"}


def test_rules_use_only_metrics_the_exporter_exposes() -> None:
    code = "\n".join(line.split("#", 1)[0] for line in RULES.read_text().splitlines())
    used = set(re.findall(r"\bmemwarden_[a-z_]+", code))
    assert used <= set(METRICS), used - set(METRICS)
