"""memwarden finds the reference service's five leak sources, each with its route."""

from __future__ import annotations

from pathlib import Path

from memwarden.find.audit import run_audit

from .agent_service_harness import SERVICE, free_port

ROUTES = SERVICE / "demo_routes.json"
CONFIG = SERVICE / "gunicorn_conf.py"


def test_audit_of_the_as_found_service_names_every_leak_source(tmp_path: Path) -> None:
    """An audit with the production settings names each source's route and resource."""
    result = run_audit("api.app:app", SERVICE, ROUTES, 300, 2, tmp_path / "audit",
                       env={"AGENT_SERVICE_MODE": "as-found", "MEMWARDEN_LOOP_TRACKING": "1",
                            # Free ports: a demo or another service may hold the defaults.
                            **{f"AGENT_SERVICE_{name}_PORT": str(free_port())
                               for name in ("MCP", "SITE", "MODEL")}},
                       gunicorn_args=["-c", str(CONFIG), "--timeout", "120"],
                       seed=7, idle=(0.0, 0.05))
    report = result.report
    assert report["verdict"] == "leak", report["reason"]
    suspects = report["suspects"]
    names = {(s["kind"], s["name"]) for s in suspects}
    by_name = {s["name"]: s for s in suspects if s["kind"] == "resource"}
    # mcp: sessions opened per request, never closed; loop: loops left open on the
    # error path; context: Mem0 keeping every turn of every user in the worker.
    for kind in ("mcp.sessions", "asyncio.loops", "mem0.memories", "mem0.points"):
        assert kind in by_name, (kind, sorted(names))
        assert "POST /chat" in by_name[kind]["evidence"], by_name[kind]["evidence"]
    # browser: contexts left open by /browse (the notes page has no <h1>).
    assert "playwright.contexts" in by_name, sorted(names)
    assert "POST /browse" in by_name["playwright.contexts"]["evidence"]
    assert ("route", "POST /chat") in names and ("route", "POST /browse") in names
    # norecycle: no worker life ended in a recycle, whatever it grew to.
    assert report["workers"] and all(w["verdict"] == "leak" for w in report["workers"])
    assert not report.get("recycles"), report.get("recycles")
