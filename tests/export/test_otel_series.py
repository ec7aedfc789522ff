"""OTLP instruments as the Prometheus ones: census counts apart from bytes, and
workers' deaths by cause from the event bus.

Each test runs the exporter's sink in a subprocess of its own (the sink and
the bus are process-wide), read by the OpenTelemetry SDK's in-memory reader.
(test_otel checks the same against a real gunicorn and an OTLP receiver.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from memwarden.events import DEATH_CAUSES
from memwarden.export.otel import INSTRUMENTS

from .death_script import DEATHS_COUNTED, DEATHS_PUBLISHED

# Every point the reader collects: [name, unit, data type, attributes, value].
_DUMP = """
import json
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from memwarden import events
from memwarden.export import otel

reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])

def dump():
    out = []
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    out.append([m.name, m.unit, type(m.data).__name__, dict(p.attributes),
                                p.value])
    print(json.dumps(out))
"""

# A worker: its sink started on the provider, a census with counts and bytes.
WORKER = _DUMP + """
from memwarden.export.otel_readings import Readings
from memwarden.settings import Settings
readings = Readings(Settings())
otel._sink.start(provider, readings)
readings.observe({"census": {"threads": 3, "fds": 9, "cache_bytes": 4096,
                             "children_pss_bytes": 77, "gc.dict": 5, "blocks": 100}})
dump()
"""

# The master: publishes deaths on the bus as hold and the watchdog do.
MASTER = _DUMP + """
otel.setup_master()
otel._sink.start(provider, None)
""" + DEATHS_PUBLISHED + "dump()\n"

# The master before any death: each cause is there at 0.
MASTER_IDLE = _DUMP + """
otel.setup_master()
otel._sink.start(provider, None)
dump()
"""

Point = tuple[str, str, str, dict[str, Any], float]


def run(script: str) -> list[Point]:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return [(n, u, d, a, v) for n, u, d, a, v in json.loads(out)]


def named(points: list[Point], name: str) -> list[Point]:
    return [p for p in points if p[0] == name]


@pytest.mark.timeout(60)
def test_census_counts_and_bytes_are_apart() -> None:
    """No instrument carries two units: counts in memwarden.census.count ({object}),
    census keys ending in _bytes in memwarden.census.bytes (By)."""
    points = run(WORKER)
    counts = {a["memwarden.census.kind"]: v for n, u, d, a, v in named(
        points, "memwarden.census.count")}
    in_bytes = {a["memwarden.census.kind"]: v for n, u, d, a, v in named(
        points, "memwarden.census.bytes")}
    assert counts == {"threads": 3, "fds": 9}
    assert in_bytes == {"cache_bytes": 4096}
    assert {u for n, u, *_ in named(points, "memwarden.census.count")} == {"{object}"}
    assert {u for n, u, *_ in named(points, "memwarden.census.bytes")} == {"By"}
    assert {d for n, u, d, *_ in named(points, "memwarden.census.bytes")} == {"Gauge"}
    assert not named(points, "memwarden.census")  # the old name is gone, not kept beside
    assert (INSTRUMENTS["memwarden.census.count"][:2], INSTRUMENTS["memwarden.census.bytes"][:2]
            ) == (("gauge", "{object}"), ("gauge", "By"))
    # The blocks and the descendants' PSS have gauges of their own; gc.* names churn.
    assert not {"blocks", "children_pss_bytes", "gc.dict"} & (set(counts) | set(in_bytes))


@pytest.mark.timeout(60)
def test_deaths_are_counted_by_cause_from_the_bus() -> None:
    """OomKill counts under oom_kill; a death in flight under its cause, except an
    OOM kill's (counted once, by its OomKill) and a cause memwarden does not know."""
    points = run(MASTER)
    deaths = {a["memwarden.death.cause"]: v for n, u, d, a, v in named(
        points, "memwarden.worker.deaths")}
    assert deaths == DEATHS_COUNTED
    assert {(u, d) for n, u, d, *_ in named(points, "memwarden.worker.deaths")} == {
        ("{death}", "Sum")}
    assert INSTRUMENTS["memwarden.worker.deaths"][:2] == ("counter", "{death}")
    assert sum(v for *_, v in named(points, "memwarden.oom_kills")) == DEATHS_COUNTED["oom_kill"]
    assert set(DEATH_CAUSES) == {"timeout", "oom_kill", "signal"}


@pytest.mark.timeout(60)
def test_every_cause_starts_at_zero_in_the_master() -> None:
    """So that a backend sees the first death of each cause as an increase."""
    points = run(MASTER_IDLE)
    assert [(a, v) for n, u, d, a, v in named(points, "memwarden.worker.deaths")] == [
        ({"memwarden.death.cause": cause}, 0) for cause in DEATH_CAUSES]


def test_the_otlp_death_alerts_filter_on_the_attribute_and_causes_sent() -> None:
    """A rule on a label the exporter never sends, or a cause it never writes, is
    silently empty: docs/exporters.md's OTLP rules use memwarden.death.cause as
    Prometheus's OTLP receiver names it, and only causes memwarden counts."""
    import re

    from support import REPO

    text = (REPO / "docs" / "exporters.md").read_text()
    rules = text.split("### The same alerts on OTLP metrics", 1)[1].split(
        "```yaml\n", 1)[1].split("```", 1)[0]
    filters = re.findall(r"memwarden_worker_deaths_total\{(\w+)=\"(\w+)\"\}", rules)
    assert {label for label, _ in filters} == {"memwarden.death.cause".replace(".", "_")}
    assert {cause for _, cause in filters} == {"timeout", "signal"} <= set(DEATH_CAUSES)
    assert "memwarden.death.cause" in text and "memwarden.census.count" in text
    assert "| `memwarden.census` |" not in text  # the old instrument's row is gone
