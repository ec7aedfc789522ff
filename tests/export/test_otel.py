"""OpenTelemetry exporter: real OTLP/HTTP protobuf from two gunicorn workers, received
and decoded on 127.0.0.1."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import REPO, gunicorn, proc_pss, proc_rss, proc_threads, wait_for

from memwarden.events import DEATH_CAUSES
from memwarden.export import RECYCLE_REASONS
from memwarden.export.otel import INSTRUMENTS
from memwarden.export.prometheus import footprint_kind
from memwarden.settings import Settings

from .pool_script import pool_refusals_script

KIND = footprint_kind(Settings())[0]
OTEL_CONF = str(REPO / "tests" / "export" / "otel_conf.py")  # adds a census gauge in bytes


@dataclass
class Point:
    resource: dict[str, Any]
    name: str
    unit: str
    kind: str  # gauge | sum
    monotonic: bool | None
    temporality: int | None
    attributes: dict[str, Any]
    value: float
    received: float = field(default_factory=time.monotonic)


def _any(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """A minimal OTLP/HTTP metrics endpoint that decodes every export."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

        self.points: list[Point] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = metrics_service_pb2.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                receiver._add(self.path, dict(self.headers.items()), request)
                reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _add(self, path: str, headers: dict[str, str], request: Any) -> None:
        points = []
        for rm in request.resource_metrics:
            resource = {kv.key: _any(kv.value) for kv in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for p in data.data_points:
                        points.append(Point(
                            resource, metric.name, metric.unit, kind,
                            data.is_monotonic if kind == "sum" else None,
                            data.aggregation_temporality if kind == "sum" else None,
                            {kv.key: _any(kv.value) for kv in p.attributes},
                            float(getattr(p, p.WhichOneof("value")))))
        with self._lock:
            self.paths.append(path)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self.points.extend(points)

    def snapshot(self) -> list[Point]:
        with self._lock:
            return list(self.points)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    rx = OtlpReceiver()
    try:
        yield rx
    finally:
        rx.stop()


def latest(points: list[Point], name: str, pid: int) -> Point | None:
    found = [p for p in points if p.name == name and p.resource.get("process.pid") == pid]
    return found[-1] if found else None


@pytest.mark.timeout(120)
def test_two_workers_export_otlp_with_their_own_identity_names_units_and_values(
        tmp_path: Path, receiver: OtlpReceiver) -> None:
    """Each worker is its own service instance; names and units follow the conventions;
    values match /proc; New Relic's api-key header and temporality rules hold."""
    endpoint = f"http://127.0.0.1:{receiver.port}"
    env = {
        "MEMWARDEN_OTEL": "1", "MEMWARDEN_CENSUS_EVERY": "1",
        # Both variables, so that nothing set outside the test sends anywhere else.
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{endpoint}/v1/metrics",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=test-license-key",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=test-license-key",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",  # New Relic's advice
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_SERVICE_NAME": "memwarden-otel-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    with gunicorn("export_app:app", tmp_path, env=env, args=["-w", "2"],
                  config=OTEL_CONF) as g:
        pids = set(g.worker_pids(expect=2))
        served: set[int] = set()
        sent = 0
        deadline = time.monotonic() + 30
        replies: list[int] = []

        def ask() -> None:
            replies.append(json.loads(g.request("GET", "/slow")[2])["pid"])
        while served != pids and time.monotonic() < deadline:
            threads = [threading.Thread(target=ask) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            served |= set(replies)
            sent += 2
        assert served == pids
        for path in ("/events/shed", "/events/recycle/memory", "/events/limit/987654321"):
            assert g.request("POST", path)[0] == 200
            sent += 1

        def census_from_both() -> bool:
            points = receiver.snapshot()
            return all(latest(points, "memwarden.census.count", pid) for pid in pids)
        wait_for(census_from_both, 30, "census points from both workers")
        time.sleep(1.2)  # an export or two from idle workers

        points = receiver.snapshot()
        workers = {p.resource["process.pid"]: p.resource for p in points
                   if p.resource.get("memwarden.process.role") == "worker"}
        assert set(workers) == pids
        ids = {r["service.instance.id"] for r in workers.values()}
        assert len(ids) == 2  # one instance per worker
        for resource in workers.values():
            assert resource["service.name"] == "memwarden-otel-test"
            assert resource["deployment.environment"] == "test"
            assert resource["process.parent_pid"] == g.proc.pid
        master = [p for p in points if p.resource.get("memwarden.process.role") == "master"]
        assert master and {p.resource["process.pid"] for p in master} == {g.proc.pid}

        names = {p.name for p in points}
        assert names >= set(INSTRUMENTS)
        for p in points:
            if p.name in INSTRUMENTS:
                assert p.unit == INSTRUMENTS[p.name][1], p.name
        for p in points:
            if INSTRUMENTS.get(p.name, ("",))[0] == "updowncounter":
                # Non-monotonic and cumulative even though delta is preferred:
                # New Relic drops non-monotonic delta sums.
                assert (p.kind, p.monotonic, p.temporality) == ("sum", False, 2), p
            elif INSTRUMENTS.get(p.name, ("",))[0] == "gauge":
                assert p.kind == "gauge", p
            elif INSTRUMENTS.get(p.name, ("",))[0] == "counter":
                assert (p.kind, p.monotonic, p.temporality) == ("sum", True, 1), p

        for pid in pids:
            rss = latest(points, "process.memory.usage", pid)
            pss = latest(points, "memwarden.memory.pss", pid)
            desc = latest(points, "memwarden.memory.descendants.pss", pid)
            foot = latest(points, "memwarden.memory.footprint", pid)
            threads_now = latest(points, "process.thread.count", pid)
            assert rss and pss and desc and foot and threads_now
            assert abs(rss.value - proc_rss(pid)) <= max(1 << 20, 0.02 * rss.value), pid
            assert abs(pss.value - proc_pss(pid)) <= max(2 << 20, 0.05 * pss.value), pid
            own = pss.value if KIND == "pss" else rss.value
            assert foot.value == own + desc.value
            assert threads_now.value >= 1 and threads_now.value == proc_threads(pid)
            kinds = {p.attributes["memwarden.census.kind"] for p in points
                     if p.name == "memwarden.census.count" and p.resource["process.pid"] == pid}
            assert {"threads", "fds", "children"} <= kinds
            # Bytes apart from counts: the config's census gauge in bytes, and only it.
            assert not [k for k in kinds if k.endswith("_bytes")], kinds
            in_bytes = {(p.attributes["memwarden.census.kind"], p.value) for p in points
                        if p.name == "memwarden.census.bytes"
                        and p.resource["process.pid"] == pid}
            assert in_bytes == {("cache_bytes", 4096.0)}
        # Every worker exports each recycle reason from its start, done and dry-run.
        for name in ("memwarden.recycles", "memwarden.would_recycles"):
            seen = {(p.resource["process.pid"], p.attributes.get("memwarden.recycle.reason"))
                    for p in points if p.name == name}
            assert {(pid, reason) for pid in pids for reason in RECYCLE_REASONS} <= seen
        # Deaths are seen by the master: each cause at 0 there, in no worker.
        deaths = {(p.resource["memwarden.process.role"], p.attributes.get("memwarden.death.cause"))
                  for p in points if p.name == "memwarden.worker.deaths"}
        assert deaths == {("master", cause) for cause in DEATH_CAUSES}
        limits = {p.resource["process.pid"]: p.value for p in points
                  if p.name == "memwarden.memory.limit"}
        assert list(limits.values()) == [987654321.0]

        assert all(h.get("api-key") == "test-license-key" for h in receiver.headers)
        assert set(receiver.paths) == {"/v1/metrics"}
        assert all(h.get("content-type") == "application/x-protobuf" for h in receiver.headers)

    # Workers flushed their last export on exit: the delta counts add up exactly.
    def total(name: str, **attrs: str) -> float:
        return sum(p.value for p in receiver.snapshot() if p.name == name
                   and all(p.attributes.get(k) == v for k, v in attrs.items()))
    wait_for(lambda: total("memwarden.requests") == sent, 10,
             f"memwarden.requests to add up to {sent}")
    assert total("memwarden.shed.requests") == 1
    assert total("memwarden.recycles", **{"memwarden.recycle.reason": "memory"}) == 1
    for reason in RECYCLE_REASONS:
        assert total("memwarden.would_recycles", **{"memwarden.recycle.reason": reason}) == 0
    assert total("memwarden.oom_kills") == 0
    assert total("memwarden.worker.deaths") == 0


@pytest.mark.timeout(120)
def test_workers_dying_mid_request_are_counted_by_cause_in_the_master(
        tmp_path: Path, receiver: OtlpReceiver) -> None:
    """A worker SIGKILLed mid-request, then one gunicorn times out: the master sees each
    die with its request in flight and exports memwarden.worker.deaths by cause at once."""
    endpoint = f"http://127.0.0.1:{receiver.port}"
    env = {"MEMWARDEN_OTEL": "1",
           "MEMWARDEN_SOFT_LIMIT": "off", "MEMWARDEN_IDLE_LIMIT": "off",
           "MEMWARDEN_HARD_LIMIT": "off",
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{endpoint}/v1/metrics",
           "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "cumulative",
           "OTEL_METRIC_EXPORT_INTERVAL": "60000"}

    def deaths() -> dict[str, float]:
        """The master's cumulative count of each cause, as last exported."""
        return {p.attributes["memwarden.death.cause"]: p.value for p in receiver.snapshot()
                if p.name == "memwarden.worker.deaths"
                and p.resource.get("memwarden.process.role") == "master"}

    def stuck(g: Any) -> threading.Thread:
        def send() -> None:
            with contextlib.suppress(Exception):
                g.request("GET", "/sleep?s=30", timeout=30)
        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    with gunicorn("hold_app:app", tmp_path, env=env, args=["-w", "1", "--timeout", "3"],
                  config=OTEL_CONF) as g:
        [victim] = g.worker_pids(expect=1)
        assert g.request("GET", "/pid")[0] == 200
        wait_for(lambda: deaths() == dict.fromkeys(DEATH_CAUSES, 0.0), 30,
                 "each cause at 0 from the master")
        thread = stuck(g)
        time.sleep(1.0)  # in the app by now
        os.kill(victim, signal.SIGKILL)
        thread.join(30)
        wait_for(lambda: deaths().get("signal") == 1, 30, "a death by signal")
        wait_for(lambda: [p for p in g.worker_pids(expect=1) if p != victim], 30,
                 "the next worker")
        assert g.request("GET", "/pid")[0] == 200
        stuck(g).join(30)  # gunicorn's timeout aborts the worker serving it
        wait_for(lambda: deaths().get("timeout") == 1, 30, "a death by timeout")
        time.sleep(0.5)
        assert deaths() == {"signal": 1, "timeout": 1, "oom_kill": 0}


# The master's provider: one export per event and per pool made.
POOL_REFUSALS = pool_refusals_script(
    "from memwarden.export import otel\notel.setup_master()",
    start='otel.start_master("memwarden-pool-test")', end="otel.shutdown()")


@pytest.mark.timeout(60)
def test_pool_refusals_are_counted_per_pool_and_dry_run_ones_under_their_own_name(
        receiver: OtlpReceiver) -> None:
    """Counted per pool, dry-run ones under their own name; each pool's two counters
    are exported at 0 from when it is made (or the provider starts), before any refusal."""
    endpoint = f"http://127.0.0.1:{receiver.port}"
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{endpoint}/v1/metrics",
           "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "cumulative"}
    subprocess.run([sys.executable, "-c", POOL_REFUSALS], env=env, capture_output=True,
                   text=True, timeout=30, check=True)

    def values(name: str, pool: str) -> list[float]:
        return [p.value for p in receiver.snapshot()
                if p.name == name and p.attributes.get("memwarden.pool.name") == pool]
    # Cumulative: the first point is the 0, the last is the total.
    browser = values("memwarden.pool.refusals", "browser")
    assert (browser[0], browser[-1]) == (0, 2)
    mcp = values("memwarden.would_pool.refusals", "mcp")
    assert (mcp[0], mcp[-1]) == (0, 1)
    assert set(values("memwarden.pool.refusals", "mcp")) == {0}
    assert set(values("memwarden.would_pool.refusals", "browser")) == {0}
    assert set(values("memwarden.pool.refusals", "spare")) == {0}
    assert set(values("memwarden.would_pool.refusals", "spare")) == {0}


@pytest.mark.timeout(60)
def test_otel_off_sends_nothing(tmp_path: Path, receiver: OtlpReceiver) -> None:
    """Without MEMWARDEN_OTEL no worker exports, even with an endpoint configured."""
    endpoint = f"http://127.0.0.1:{receiver.port}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{endpoint}/v1/metrics",
           "OTEL_METRIC_EXPORT_INTERVAL": "200"}
    with gunicorn("export_app:app", tmp_path, env=env, args=["-w", "1"]) as g:
        assert g.request("GET", "/pid")[0] == 200
        time.sleep(1.0)
    assert receiver.snapshot() == []
