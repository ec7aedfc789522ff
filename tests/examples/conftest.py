"""Fixtures for the reference agent service: real gunicorn, real sidecars, real Chromium."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .agent_service_harness import SERVICE, Service

# The service's packages (api, mcp_server, tooling) for tests that import them.
if str(SERVICE) not in sys.path:
    sys.path.insert(0, str(SERVICE))

StartService = Callable[..., Service]
# The service refuses to start without a key of its own: one per test run.
SECRET_KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _service_settings(monkeypatch: pytest.MonkeyPatch,
                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """What the service reads in-process: its key, and a data directory of the test run's."""
    monkeypatch.setenv("AGENT_SERVICE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("AGENT_SERVICE_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))


def _stop_all(started: list[Service]) -> None:
    problems = []
    for service in started:
        leftovers = service.stop()
        if leftovers:
            problems.append(f"{service.log_path.name}: {leftovers}")
    assert not problems, f"processes outlived gunicorn (killed now): {problems}"


@pytest.fixture
def agent_service(tmp_path: Path) -> Iterator[StartService]:
    """Start the service: ``agent_service("browser", workers=1, env={...})``.

    On teardown gunicorn gets SIGTERM (then SIGKILL), and the test fails if any
    process it started (sidecars, Chromium, MCP servers) is still alive.
    """
    started: list[Service] = []

    def start(leaks: str, **kw: Any) -> Service:
        service = Service(tmp_path, leaks, **kw)
        started.append(service)
        return service

    yield start
    _stop_all(started)


@pytest.fixture(scope="module")
def control_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with every leak switched off, shared by a module's control tests.

    At most 5 sessions, so that the bounded context store is seen to hold.
    """
    service = Service(tmp_path_factory.mktemp("control"), "none",
                      env={"AGENT_SERVICE_MAX_SESSIONS": "5"})
    yield service
    _stop_all([service])
