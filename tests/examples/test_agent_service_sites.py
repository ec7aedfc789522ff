"""Allocation sites on the reference service as found: with MEMWARDEN_TRACEMALLOC on,
an audit names the session-context leak at its line in api/context_manager.py."""

from __future__ import annotations

import json
from pathlib import Path

from memwarden.find.audit import run_audit

from .agent_service_harness import SERVICE, free_port

CONFIG = SERVICE / "gunicorn_conf.py"


def test_audit_names_the_context_leak_at_its_source_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [
        {"method": "POST", "path": "/chat", "json": {"message": "add {rand} 3; weather paris"}}]}))
    result = run_audit(
        "api.app:app", SERVICE, routes, 90, 1, tmp_path / "audit",
        env={"AGENT_SERVICE_MODE": "as-found",
             # The session-context leak alone: the other four would only slow a traced worker.
             "AGENT_SERVICE_LEAKS": "context",
             "MEMWARDEN_TRACEMALLOC": "25", "MEMWARDEN_TRACEMALLOC_EVERY": "20",
             **{f"AGENT_SERVICE_{name}_PORT": str(free_port())
                for name in ("MCP", "SITE", "MODEL")}},
        gunicorn_args=["-c", str(CONFIG), "--timeout", "120"],
        seed=7, idle=(0.0, 0.02), new_users=0.5)
    report = result.report
    assert report["input"]["allocation_lines"] >= 3, report["input"]
    sites = [s for s in report["suspects"] if s["kind"] == "allocation"]
    assert sites, report["suspects"]
    # The top site of the app's own code is the line that adds each turn to Mem0.
    top_app = next(s for s in sites if s["name"].startswith("api/"))
    assert top_app["name"].startswith("api/context_manager.py:"), [s["name"] for s in sites]
    assert top_app["bytes_per_request"] > 0
    # memwarden's own allocations are never named.
    assert not any("memwarden" in s["name"] for s in sites), sites
