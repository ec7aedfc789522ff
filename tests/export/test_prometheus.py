"""Prometheus exporter: multiprocess files done right, checked with a real Prometheus.

The end-to-end test runs Debian's prometheus server on 127.0.0.1, scraping a
real gunicorn (2 workers, max_requests so that every worker is recycled).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    REPO,
    free_port,
    gunicorn,
    proc_pss,
    proc_rss,
    proc_threads,
    wait_for,
    wait_for_port,
)

from memwarden.events import DEATH_CAUSES
from memwarden.export import RECYCLE_REASONS
from memwarden.export.prometheus import footprint_kind
from memwarden.settings import Settings

from .pool_script import pool_refusals_script
from .prom_support import sample, tool

RULES = REPO / "deploy" / "prometheus" / "memwarden.rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "memwarden.json"
ZEROS = dict.fromkeys(RECYCLE_REASONS, 0.0)  # every reason's series, before any recycle
SLOTS = {"0", "1"}  # the slots of a server of two workers, whatever its recycles
# What the footprint counts by default (recycling's setting, MEMWARDEN_FOOTPRINT).
KIND = footprint_kind(Settings())[0]


class PrometheusServer:
    """A real prometheus on 127.0.0.1 with its own config and data directory."""

    def __init__(self, tmp: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        rules = "\n".join(f"  - {p}" for p in rule_files)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n{rules}\n"
            "scrape_configs:\n  - job_name: memwarden\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n")
        self.log_path = tmp / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.port, proc=self.proc)
            wait_for(self._ready, 30, "prometheus to be ready")
        except Exception:
            self.stop()
            raise AssertionError(f"prometheus did not start:\n{self.log_path.read_text()}"
                                 ) from None

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/-/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
        return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def by_slot(self, expr: str) -> dict[str, float]:
        """One value per worker slot; fails if a slot has two series or one has a pid."""
        found = [(s["metric"]["slot"], float(s["value"][1])) for s in self.query(expr)]
        assert len(found) == len(dict(found)), found
        assert not [s for s in self.query(expr) if "pid" in s["metric"]], expr
        return dict(found)

    def slot_pids(self) -> dict[str, int]:
        return {slot: int(pid) for slot, pid in self.by_slot("memwarden_worker_pid").items()}

    def series(self, match: str, start: float) -> list[dict[str, str]]:
        """Every series of ``match`` seen since ``start`` (a Unix time), live or not."""
        found: list[dict[str, str]] = self.api("series", **{"match[]": match,
                                                             "start": f"{start:.3f}"})
        return found

    def by_reason(self, expr: str) -> dict[str, float]:
        """One value per reason; fails if a reason has two series."""
        found = [(s["metric"]["reason"], float(s["value"][1])) for s in self.query(expr)]
        assert len(found) == len(dict(found)), found
        return dict(found)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@contextlib.contextmanager
def prometheus(tmp: Path, targets: list[str], rule_files: list[Path]
               ) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp, targets, rule_files)
    try:
        yield server
    finally:
        server.stop()


def close(a: float, b: float, rel: float, floor: float) -> bool:
    return abs(a - b) <= max(floor, rel * max(abs(a), abs(b)))


def check_against_proc(prom: PrometheusServer, pids: set[int]) -> None:
    """Every live worker has exactly one series, under its slot, and its values are its
    /proc's."""
    # Two scrapes after the traffic stopped: the latest samples are from idle workers.
    time.sleep(2.5)
    holder = prom.slot_pids()
    assert set(holder.values()) == pids and set(holder) == SLOTS, holder
    rss = prom.by_slot("memwarden_worker_rss_bytes")
    pss = prom.by_slot("memwarden_worker_pss_bytes")
    desc = prom.by_slot("memwarden_worker_descendants_pss_bytes")
    foot = prom.by_slot("memwarden_worker_footprint_bytes")
    threads = prom.by_slot('memwarden_worker_census_count{kind="threads"}')
    assert set(rss) == set(pss) == set(foot) == set(threads) == SLOTS
    assert len(prom.query("memwarden_worker_rss_bytes")) == len(pids)
    for slot, pid in holder.items():
        assert close(rss[slot], proc_rss(pid), 0.02, 1 << 20), (pid, rss[slot], proc_rss(pid))
        assert close(pss[slot], proc_pss(pid), 0.05, 2 << 20), (pid, pss[slot])
        own = pss[slot] if KIND == "pss" else rss[slot]
        assert foot[slot] == own + desc[slot]
        assert threads[slot] == proc_threads(pid)


def send_pairs(port_request: Callable[[], object], pairs: int) -> int:
    """Two requests at a time, so that both sync workers are kept busy."""
    sent = 0
    for _ in range(pairs):
        threads = [threading.Thread(target=port_request) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        sent += 2
    return sent


@pytest.mark.timeout(180)
def test_real_prometheus_sees_one_series_per_live_worker_across_recycles(tmp_path: Path) -> None:
    """One series per worker slot with its live worker's /proc values; a recycled
    worker's replacement continues its slot's series (no series per pid), counts stay."""
    tool("prometheus")
    metrics_port = free_port()
    directory = tmp_path / "multiproc"
    env = {"MEMWARDEN_PROMETHEUS": "1", "MEMWARDEN_PROMETHEUS_DIR": str(directory),
           "MEMWARDEN_PROMETHEUS_PORT": str(metrics_port), "MEMWARDEN_CENSUS_EVERY": "1",
           "MEMWARDEN_PROMETHEUS_PATH": "/metrics"}
    max_requests = 8
    with gunicorn("export_app:app", tmp_path, env=env,
                  args=["-w", "2", "--max-requests", str(max_requests)]) as g:
        wait_for_port(metrics_port, proc=g.proc)
        with prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"], [RULES]) as prom:
            started = time.time() - 60
            first = set(g.worker_pids(expect=2))
            # Before any recycle, every reason's series is there at 0, done and dry-run.
            wait_for(lambda: prom.by_reason("memwarden_recycles_total")
                     == prom.by_reason("memwarden_would_recycles_total") == ZEROS, 30,
                     "every reason's series at 0")
            sent = send_pairs(lambda: g.request("GET", "/slow"), 1)
            for path in ("/events/shed", "/events/recycle/memory", "/events/recycle/memory",
                         "/events/recycle/soft_limit"):
                assert g.request("POST", path)[0] == 200
                sent += 1
            # The first recycle of a reason is an increase: its series was at 0 before.
            wait_for(lambda: prom.query(
                'increase(memwarden_recycles_total{reason="soft_limit"}[1m]) > 0'), 15,
                "increase() to see the first soft_limit recycle")
            wait_for(lambda: set(prom.slot_pids().values()) == first, 30,
                     "a series for both workers")
            # Every cause of death is there at 0 before the first death.
            assert {s["metric"]["cause"]: float(s["value"][1]) for s in prom.query(
                "memwarden_worker_deaths_total")} == dict.fromkeys(DEATH_CAUSES, 0.0)
            check_against_proc(prom, first)

            # Recycle every worker (gunicorn's max_requests), then check again.
            deadline = time.monotonic() + 60
            while set(g.worker_pids()) & first and time.monotonic() < deadline:
                sent += send_pairs(lambda: g.request("GET", "/slow"), 1)
            second = set(g.worker_pids(expect=2))
            assert not second & first, "every worker should have been recycled"
            wait_for(lambda: set(prom.slot_pids().values()) == second, 30,
                     "the new workers to hold the slots")
            check_against_proc(prom, second)
            # Four worker processes over the run, two series: one per slot, none per pid.
            for name in ("memwarden_worker_rss_bytes", "memwarden_worker_footprint_bytes",
                         'memwarden_worker_census_count{kind="threads"}'):
                seen = prom.series(name, started)
                assert sorted(s["slot"] for s in seen) == sorted(SLOTS), seen
                assert not [s for s in seen if "pid" in s], seen

            # Counters of dead workers were folded, not lost: the totals still add up.
            def totals() -> bool:
                return tuple(sum(float(s["value"][1]) for s in prom.query(q)) for q in (
                    "memwarden_requests_total", "memwarden_shed_requests_total",
                    'memwarden_recycles_total{reason="memory"}')) == (sent, 1.0, 2.0)
            wait_for(totals, 15, f"memwarden_requests_total == {sent}")
            # The zero series survive the fold too, each once: no reason counted twice.
            assert prom.by_reason("memwarden_recycles_total") == {
                **ZEROS, "soft_limit": 1.0, "memory": 2.0}
            assert prom.by_reason("memwarden_would_recycles_total") == ZEROS

            # No files of dead workers pile up: live workers, the master, the archives.
            master = g.proc.pid
            for path in glob.glob(str(directory / "*.db")):
                owner = Path(path).stem.rsplit("_", 1)[1]
                assert owner == "archive" or int(owner) in second | {master}, path

            # Asked to, the app serves the same metrics itself, outside the request tracker.
            status, headers, body = g.request("GET", "/metrics")
            assert status == 200 and headers["content-type"].startswith("text/plain")
            slots = set(re.findall(r'memwarden_worker_rss_bytes\{slot="(\d+)"\}',
                                   body.decode()))
            assert slots and slots <= SLOTS, body.decode()
            assert not [x for x in g.lines("memwarden.request") if x.get("route") == "/metrics"]

            # The rules load and evaluate on the real server.
            groups = prom.api("rules")["groups"]
            assert {r["name"] for grp in groups for r in grp["rules"]} >= {
                "MemwardenWorkerFootprintPredictedOverLimit", "MemwardenOOMKill",
                "MemwardenRecycleRateRising", "MemwardenShedding"}
            wait_for(lambda: all(r["health"] == "ok" for grp in prom.api("rules")["groups"]
                                 for r in grp["rules"]), 30, "every rule evaluated")

            # Every dashboard query runs on the real server; the fleet panels have data.
            for expr in dashboard_queries():
                prom.query(expr)
            assert prom.query(dashboard_expr("Footprint per worker"))


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"]
            for target in panel.get("targets", [])]


def concrete(expr: str) -> str:
    expr = (expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            .replace("$__range", "1h"))
    return re.sub(r"\$\{?(\w+)\}?", ".+", expr)


def dashboard_queries() -> list[str]:
    return [concrete(expr) for _, expr in dashboard_exprs()]


def dashboard_expr(title: str) -> str:
    return next(concrete(expr) for t, expr in dashboard_exprs() if t == title)


@pytest.mark.timeout(60)
def test_asgi_workers_serve_the_metrics_route(tmp_path: Path) -> None:
    """Under uvicorn workers the route answers from the event loop, for both workers."""
    env = {"MEMWARDEN_PROMETHEUS": "1", "MEMWARDEN_PROMETHEUS_DIR": str(tmp_path / "mp"),
           "MEMWARDEN_PROMETHEUS_PATH": "/internal/metrics", "MEMWARDEN_PROMETHEUS_PORT": "0"}
    with gunicorn("fastapi_app:app", tmp_path, env=env,
                  args=["-w", "2", "-k", "uvicorn_worker.UvicornWorker"]) as g:
        pids = set(g.worker_pids(expect=2))

        def both() -> str | None:
            status, _, body = g.request("GET", "/internal/metrics")
            assert status == 200
            text = body.decode()
            seen = {int(pid) for pid in re.findall(
                r'memwarden_worker_pid\{slot="[01]"\} (\d+)(?:\.0)?$', text, re.M)}
            return text if seen == pids else None
        text = wait_for(both, 20, "both workers in the scrape")
        assert "memwarden_requests_total" in text
        assert g.request("GET", "/items/3")[0] == 200
        assert not [x for x in g.lines("memwarden.request")
                    if x.get("route") == "/internal/metrics"]


# -- the multiprocess directory without gunicorn ------------------------------------------

# memwarden's counters (every recycle reason at 0), one recycle, a gauge, a histogram.
WRITER = """
import os, sys
from prometheus_client import Gauge, Histogram
from memwarden.export.prometheus import REQUESTS, _sink
g = Gauge("memwarden_worker_rss_bytes", "RSS", multiprocess_mode="liveall", registry=None)
h = Histogram("app_seconds", "latency", registry=None)
_sink.ensure_counters()[REQUESTS].inc(int(sys.argv[1])); _sink.record_recycle("memory")
g.set(123); h.observe(0.2)
"""


def write_as_dead_process(directory: Path, requests: int) -> int:
    """Run a short-lived writer process; returns its (now dead) pid."""
    proc = subprocess.run([sys.executable, "-c", WRITER + "print(os.getpid())", str(requests)],
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
                          capture_output=True, text=True, timeout=30, check=True)
    return int(proc.stdout)


def scrape(directory: Path) -> str:
    from prometheus_client import generate_latest

    from memwarden.export.prometheus import make_registry

    return generate_latest(make_registry(str(directory))).decode()


@pytest.mark.timeout(60)
def test_compaction_folds_dead_processes_into_archives_and_keeps_every_count(
        tmp_path: Path) -> None:
    """Hundreds of dead workers leave two archive files, and the totals are unchanged."""
    from memwarden.export.prometheus import compact

    dead = [write_as_dead_process(tmp_path, n) for n in (1, 2, 3)]
    assert len(glob.glob(str(tmp_path / "*.db"))) == 9
    before = scrape(tmp_path)
    assert 'memwarden_worker_rss_bytes{pid=' not in before  # dead pids are dropped at scrape
    assert compact(str(tmp_path), dead=dead) == 9
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db", "histogram_archive.db"]
    # Fold again with more dead writers: the archive accumulates.
    dead = [write_as_dead_process(tmp_path, 10)]
    compact(str(tmp_path), dead=dead)
    after = scrape(tmp_path)
    assert sample(after, "memwarden_requests_total") == 16
    assert sample(after, 'memwarden_recycles_total{reason="memory"}') == 4
    for reason in RECYCLE_REASONS:  # at 0 in each writer: still there, once, at 0
        for name in ("memwarden_recycles_total", "memwarden_would_recycles_total"):
            line = f'{name}{{reason="{reason}"}}'
            assert sample(before, line) == sample(after, line) == 0
    assert sample(after, "app_seconds_count") == 4
    assert sample(after, 'app_seconds_bucket{le="0.25"}') == 4
    assert sample(after, 'app_seconds_bucket{le="0.1"}') == 0
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db", "histogram_archive.db"]


@pytest.mark.timeout(60)
def test_compaction_leaves_live_processes_alone(tmp_path: Path) -> None:
    """Files of a running process are neither folded nor deleted."""
    from memwarden.export.prometheus import compact

    code = WRITER + "print('ready', flush=True); sys.stdin.read()"
    live = subprocess.Popen([sys.executable, "-c", code, "5"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "ready"
        write_as_dead_process(tmp_path, 1)
        assert compact(str(tmp_path)) == 3
        names = {p.name for p in tmp_path.glob("*.db")}
        assert {f"counter_{live.pid}.db", f"gauge_liveall_{live.pid}.db"} <= names
        text = scrape(tmp_path)
        assert sample(text, f'memwarden_worker_rss_bytes{{pid="{live.pid}"}}') > 0  # fresh
        assert sample(text, "memwarden_requests_total") == 6
    finally:
        live.communicate("", timeout=10)


def test_a_scrape_waits_for_a_fold_in_progress(tmp_path: Path) -> None:
    """The fold holds the directory lock exclusively; a scrape takes it shared."""
    from memwarden.export.prometheus import _locked

    with _locked(str(tmp_path), shared=False) as held:
        assert held
        with _locked(str(tmp_path), shared=True, timeout=0.2) as shared:
            assert not shared
    with _locked(str(tmp_path), shared=True) as a, _locked(str(tmp_path), shared=True) as b:
        assert a and b


POOL_REFUSALS = pool_refusals_script(
    "import sys\nfrom memwarden.export import prometheus\n"
    "from memwarden.settings import Settings\n"
    "prometheus.setup_master(Settings(prometheus_dir=sys.argv[1]))")


@pytest.mark.timeout(60)
def test_pool_refusals_are_counted_per_pool_and_dry_run_ones_under_their_own_name(
        tmp_path: Path) -> None:
    """Each pool's two series exist at 0 from when it is made; a refusal counts under
    its mode's own name only."""
    subprocess.run([sys.executable, "-c", POOL_REFUSALS, str(tmp_path)],
                   capture_output=True, text=True, timeout=30, check=True)
    text = scrape(tmp_path)
    assert sample(text, 'memwarden_pool_refusals_total{pool="browser"}') == 2
    assert sample(text, 'memwarden_would_pool_refusals_total{pool="mcp"}') == 1
    assert sample(text, 'memwarden_pool_refusals_total{pool="mcp"}') == 0
    assert sample(text, 'memwarden_would_pool_refusals_total{pool="browser"}') == 0
    assert sample(text, 'memwarden_pool_refusals_total{pool="spare"}') == 0
    assert sample(text, 'memwarden_would_pool_refusals_total{pool="spare"}') == 0


def test_importing_the_exporters_imports_no_optional_package() -> None:
    """No side effects on import: neither prometheus_client nor opentelemetry is loaded."""
    code = ("import sys, memwarden.export, memwarden.export.prometheus, "
            "memwarden.export.otel; "
            "print([m for m in sys.modules if m.startswith(('prometheus_client', "
            "'opentelemetry'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_extra_is_named_in_the_error() -> None:
    """Without prometheus_client the exporter says which extra to install."""
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from memwarden.export import setup_master\n"
            "from memwarden.settings import Settings\n"
            "setup_master(Settings(prometheus=True))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0
    assert "pip install 'memwarden[prometheus]'" in proc.stderr
    assert "MissingExtraError" in proc.stderr


@pytest.mark.timeout(60)
def test_a_directory_memwarden_made_is_removed_when_the_master_exits(tmp_path: Path) -> None:
    """Without a configured directory the master makes a temporary one, and removes it."""
    env = {"MEMWARDEN_PROMETHEUS": "1", "PROMETHEUS_MULTIPROC_DIR": "",
           "MEMWARDEN_PROMETHEUS_PORT": str(free_port())}
    with gunicorn("export_app:app", tmp_path, env=env, args=["-w", "1"]) as g:
        _, _, body = g.request("GET", "/multiproc-dir")
        directory = Path(json.loads(body)["dir"])
        assert directory.name.startswith("memwarden-prometheus-")
        assert g.request("GET", "/pid")[0] == 200
        assert list(directory.glob("*.db"))
    assert not directory.exists()
