"""Ground truth: small apps with known answers, audited for real under gunicorn.

Each scenario is an app in ``apps/`` run by ``memwarden.find.audit.run_audit``
(real gunicorn on 127.0.0.1, one worker, soak traffic with cookie jars and
new users arriving, no idle gaps) with the live heap counted after a
collection at every 5th request (``MEMWARDEN_CENSUS_COLLECT=1``). A leak
must read as "leak" with the top suspect of each kind naming the leaking
route and resource; a trap must read as "no_leak". "inconclusive" is wrong
for both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from find.analysis.parts import differences, shifted_copy

from memwarden.find.analysis import analyze_paths
from memwarden.find.audit import run_audit

APPS = Path(__file__).resolve().parent / "apps"
MARKER_VAR = "MEMWARDEN_SCENARIO_MARKER"


@dataclass(frozen=True)
class Scenario:
    app: str
    routes: tuple[dict[str, Any], ...]
    verdict: str
    route: str | None = None      # the top route suspect, for a leak
    resource: str | None = None   # the top resource suspect, when the leak has one
    requests: int = 300
    concurrency: tuple[int, int] = (1, 6)
    new_users: float = 0.3
    worker_class: str | None = None
    gunicorn_args: tuple[str, ...] = ()
    failures_expected: bool = False
    seed: int = 1
    env: dict[str, str] = field(default_factory=dict)


def _get(path: str, weight: float = 1.0) -> dict[str, Any]:
    return {"method": "GET", "path": path, "weight": weight}


def _post(path: str, weight: float = 1.0, body: Any = None) -> dict[str, Any]:
    route: dict[str, Any] = {"method": "POST", "path": path, "weight": weight}
    if body is not None:
        route["json"] = body
    return route


SCENARIOS = (
    # Leaks.
    Scenario("leak_module_list",
             (_get("/items/{rand}", 2), _post("/remember", 1, {"user": "u{rand}"})),
             "leak", route="POST /remember"),
    Scenario("leak_lru_cache", (_get("/render/{rand}", 2), _get("/search")),
             "leak", route="GET /render/<int:item_id>"),
    Scenario("leak_sessions", (_post("/login"), _get("/profile", 2)),
             "leak", route="POST /login", resource="sessions", new_users=0.5, requests=400),
    Scenario("leak_threads", (_post("/jobs"), _get("/status", 2)),
             "leak", route="POST /jobs", resource="threads"),
    Scenario("leak_fds", (_post("/upload"), _get("/files", 2)),
             "leak", route="POST /upload", resource="fds"),
    Scenario("leak_children", (_post("/convert"), _get("/formats", 3)),
             "leak", route="POST /convert", resource="children"),
    Scenario("leak_event_loops", (_post("/fetch"), _get("/cached", 2)),
             "leak", route="POST /fetch", resource="asyncio.loops"),
    Scenario("leak_error_path", (_post("/orders/{rand}"), _get("/orders/{rand}")),
             "leak", route="POST /orders/<int:order_id>", failures_expected=True),
    Scenario("leak_slow_one_route",
             (_post("/events"), _get("/items/{rand}"), _get("/search")),
             "leak", route="POST /events", requests=800),
    # Traps: growth that is not a leak.
    Scenario("trap_bounded_cache", (_get("/price/{rand}", 2), _get("/items/{rand}")),
             "no_leak", requests=400),
    Scenario("trap_large_temporary", (_get("/report"), _get("/items/{rand}", 12)),
             "no_leak"),
    Scenario("trap_lazy_imports",
             (_get("/items/{rand}", 40), _get("/export"), _get("/stats"), _get("/config")),
             "no_leak"),
    Scenario("trap_clean_threaded",
             (_post("/chat", 1, {"message": "hello there {rand}"}), _get("/items/{rand}", 2)),
             "no_leak", worker_class="gthread", gunicorn_args=("--threads", "4"),
             concurrency=(2, 8)),
    Scenario("trap_clean_fastapi",
             (_post("/chat", 1, {"message": "hello there {rand}"}), _get("/items/{rand}", 2)),
             "no_leak", concurrency=(2, 8)),
)


def _marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries the scenario's marker."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found.append(int(entry))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A mark for every process the app starts, and a sweep that kills them at the end."""
    mark = uuid.uuid4().hex
    try:
        yield mark
    finally:
        for pid in _marked_pids(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _top(report: dict[str, Any], kind: str) -> str | None:
    return next((s["name"] for s in report["suspects"] if s["kind"] == kind), None)


def _explain(report: dict[str, Any]) -> str:
    lines = [f"verdict {report['verdict']}: {report['reason']}"]
    lines += [f"  {s['kind']} {s['name']} ({s['confidence']}): {s['evidence']}"
              for s in report["suspects"][:6]]
    return "\n".join(lines)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.app)
def test_scenario(scenario: Scenario, tmp_path: Path, marker: str) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": list(scenario.routes)}))
    env = {"MEMWARDEN_CENSUS_COLLECT": "1", "MEMWARDEN_LOOP_TRACKING": "1",
           MARKER_VAR: marker, **scenario.env}
    result = run_audit(f"{scenario.app}:app", APPS, routes, requests=scenario.requests,
                       workers=1, out=tmp_path / "out", worker_class=scenario.worker_class,
                       env=env, gunicorn_args=scenario.gunicorn_args, census_every=5,
                       concurrency=scenario.concurrency, idle=(0.0, 0.0),
                       new_users=scenario.new_users, seed=scenario.seed, seconds=120.0)
    report = result.report
    print(f"\n{scenario.app}: {report['verdict']}; top route {_top(report, 'route')}; "
          f"top resource {_top(report, 'resource')}; {report['reason']}")
    assert result.soak.requests == scenario.requests, result.notes
    if not scenario.failures_expected:
        assert report["failed_requests"] == 0, report["soak"]["statuses"]
    assert report["verdict"] == scenario.verdict, _explain(report)
    if scenario.route is not None:
        assert _top(report, "route") == scenario.route, _explain(report)
    if scenario.resource is not None:
        assert _top(report, "resource") == scenario.resource, _explain(report)
    # The same log as two hosts' (other pids): one pass over both, their partial
    # summaries merged, and --jobs give one answer, and the verdict stays.
    second = tmp_path / "second_host.jsonl"
    shifted_copy(result.requests_log, second, pid_shift=5_000_000)
    hosts = [result.requests_log, second]
    assert differences(hosts) == {"merge": [], "jobs": []}
    assert analyze_paths(hosts).verdict == scenario.verdict
