"""Load shedding: hysteresis, 503 + Retry-After + JSON, health checks exempt,
logged and counted; WSGI and ASGI, in-process and under real gunicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from support import FakeSampler, Gunicorn, gunicorn

from memwarden.hold.shed import AsgiShedMiddleware, Shedder, ShedMiddleware
from memwarden.settings import Settings
from memwarden.sizes import Size

MiB = 1024 * 1024


def shedder(total: int = 0, **settings: Any) -> tuple[Shedder, FakeSampler]:
    sampler = FakeSampler(total)
    values: dict[str, Any] = {"shed_high": Size(bytes=100 * MiB),
                              "shed_low": Size(bytes=80 * MiB)}
    values.update(settings)
    return Shedder(Settings(**values), sampler, workers=1), sampler  # type: ignore[arg-type]


def test_hysteresis_sheds_from_high_and_serves_again_below_low() -> None:
    s, sampler = shedder(50 * MiB)
    seen = []
    for mib in (50, 99, 100, 120, 90, 81, 80, 79, 95, 99, 100):
        sampler.total = mib * MiB
        seen.append(s.check())
    assert seen == [False, False, True, True, True, True, True, False, False, False, True]


def test_low_defaults_to_ninety_percent_of_high() -> None:
    s, sampler = shedder(200 * MiB, shed_low=None)
    assert s.check()
    assert s.thresholds()["shed_low_bytes"] == 90 * MiB
    sampler.total = 91 * MiB
    assert s.check()
    sampler.total = 89 * MiB
    assert not s.check()


def test_percent_thresholds_are_of_the_worker_share() -> None:
    s = Shedder(Settings(shed_high=Size(fraction=0.5)), FakeSampler(0),  # type: ignore[arg-type]
                workers=4, cgroup_limit=800 * MiB)
    assert s.thresholds()["shed_high_bytes"] == 100 * MiB
    without_limit = Shedder(Settings(shed_high=Size(fraction=0.5)),
                            FakeSampler(0), workers=4)  # type: ignore[arg-type]
    assert not without_limit.enabled


def test_cgroup_ratio_sheds_with_its_own_hysteresis_read_at_most_twice_a_second() -> None:
    usage = [950]
    reads = []
    now = [0.0]

    def read() -> tuple[int, int]:
        reads.append(now[0])
        return usage[0], 1000

    s = Shedder(Settings(shed_cgroup_high=0.9, shed_cgroup_low=0.8), None,
                cgroup_reader=read, clock=lambda: now[0])
    assert s.enabled and s.check()
    usage[0] = 700
    now[0] = 0.2
    assert s.check(), "not read again yet"
    now[0] = 0.6
    assert not s.check()
    assert reads == [0.0, 0.6]


def test_off_and_unset_are_not_enabled() -> None:
    assert not Shedder(Settings(), FakeSampler(0), workers=1).enabled  # type: ignore[arg-type]
    s, _ = shedder(0, shed="off")
    assert not s.enabled


# -- WSGI --------------------------------------------------------------------------------------

class StartResponse:
    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
                 ) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None


def app_ok(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call(app: Any, path: str) -> tuple[str | None, dict[str, str], bytes]:
    sr = StartResponse()
    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, sr))
    return sr.status, dict(sr.headers), body


def test_wsgi_sheds_with_503_retry_after_and_json(caplog: pytest.LogCaptureFixture) -> None:
    s, sampler = shedder(150 * MiB, shed_retry_after=7)
    app = ShedMiddleware(app_ok, s, ["/healthz"])
    with caplog.at_level(logging.INFO, logger="memwarden.shed"):
        status, headers, body = call(app, "/chat")
        health = call(app, "/healthz")
        sampler.total = 10 * MiB
        after = call(app, "/chat")
    assert status == "503 Service Unavailable"
    assert headers["Retry-After"] == "7" and headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == {"error": "overloaded", "retry_after": 7}
    assert health[0] == "200 OK"
    assert after[0] == "200 OK"
    assert s.shed_count() == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["shedding_started", "shed", "shedding_stopped"]
    shed = caplog.records[1].memwarden  # type: ignore[attr-defined]
    assert shed["path"] == "/chat" and shed["status"] == 503 and shed["shed_requests"] == 1
    assert shed["footprint_bytes"] == 150 * MiB and shed["shed_high_bytes"] == 100 * MiB


def test_wsgi_dry_run_logs_would_shed_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    s, _ = shedder(150 * MiB, shed="dry-run")
    with caplog.at_level(logging.INFO, logger="memwarden.shed"):
        status, _, _ = call(ShedMiddleware(app_ok, s), "/chat")
    assert status == "200 OK"
    assert "would_shed" in [r.getMessage() for r in caplog.records]


def test_wsgi_app_exceptions_are_not_swallowed() -> None:
    def boom(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise RuntimeError("the app failed")

    s, _ = shedder(0)
    with pytest.raises(RuntimeError, match="the app failed"):
        call(ShedMiddleware(boom, s), "/chat")


# -- ASGI --------------------------------------------------------------------------------------

async def asgi_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def asgi_call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, receive, send))
    return sent


def test_asgi_sheds_http_only_and_exempts_health_checks() -> None:
    s, _ = shedder(150 * MiB)
    app = AsgiShedMiddleware(asgi_ok, s, ["/healthz"])
    shed = asgi_call(app, {"type": "http", "path": "/chat", "method": "POST"})
    health = asgi_call(app, {"type": "http", "path": "/healthz", "method": "GET"})
    assert shed[0]["status"] == 503
    headers = dict(shed[0]["headers"])
    assert headers[b"retry-after"] == b"5" and headers[b"content-type"] == b"application/json"
    assert json.loads(shed[1]["body"]) == {"error": "overloaded", "retry_after": 5}
    assert health[0]["status"] == 200

    seen: list[str] = []

    async def lifespan_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asgi_call(AsgiShedMiddleware(lifespan_app, s), {"type": "lifespan"})
    assert seen == ["lifespan"]


def test_asgi_app_exceptions_are_not_swallowed() -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the app failed")

    s, _ = shedder(0)
    with pytest.raises(RuntimeError, match="the app failed"):
        asgi_call(AsgiShedMiddleware(boom, s), {"type": "http", "path": "/x", "method": "GET"})


# -- under gunicorn ----------------------------------------------------------------------------

SHED_ENV = {"MEMWARDEN_SHED_HIGH": "150MiB", "MEMWARDEN_SHED_LOW": "120MiB",
            "MEMWARDEN_SHED_RETRY_AFTER": "3", "MEMWARDEN_CENSUS_EVERY": "1",
            "MEMWARDEN_SOFT_LIMIT": "off", "MEMWARDEN_IDLE_LIMIT": "off",
            "MEMWARDEN_HARD_LIMIT": "off"}


def _shed_cycle(server: Gunicorn, leak_path: str) -> int:
    """Under the mark: served; after a temporary 150 MiB: 503s (health checks
    still 200); once it is released: served again. Returns the 503s seen."""
    assert server.request("GET", "/pid")[0] == 200
    assert server.request("GET", leak_path)[0] == 200
    status, headers, body = server.request("GET", "/pid")
    assert status == 503
    assert headers["retry-after"] == "3"
    assert json.loads(body) == {"error": "overloaded", "retry_after": 3}
    assert server.request("GET", "/healthz")[0] == 200
    assert server.request("GET", "/pid")[0] == 503
    refused = 2
    deadline = time.monotonic() + 10
    while server.request("GET", "/pid")[0] == 503:
        refused += 1
        assert time.monotonic() < deadline, "never resumed"
        time.sleep(0.2)
    return refused


def _check_lines(server: Gunicorn, refused_seen: int) -> None:
    shed = server.lines("memwarden.shed", "shed")
    # One shed line for each 503 the client saw, no more, no fewer.
    assert len(shed) == refused_seen
    assert all(x["status"] == 503 and x["path"] == "/pid" for x in shed)
    assert [x["message"] for x in server.lines("memwarden.shed")
            if x["message"].startswith("shedding_")] == ["shedding_started", "shedding_stopped"]
    requests = server.lines("memwarden.request", "request")
    refused = [x for x in requests if x["status"] == 503]
    assert len(refused) == len(shed)
    # The census gauge counts them: its last value is the number shed.
    assert requests[-1]["census"]["shed.requests"] == len(shed)


def test_shedding_under_gunicorn_sync_workers(tmp_path: Path) -> None:
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=SHED_ENV) as server:
        refused = _shed_cycle(server, "/leak_for?mb=150&s=2")
        server.request_lines(1)
    _check_lines(server, refused)


def test_shedding_under_gunicorn_uvicorn_workers(tmp_path: Path) -> None:
    with gunicorn("hold_asgi:app", tmp_path, env=SHED_ENV,
                  args=["-w", "1", "-k", "uvicorn_worker.UvicornWorker"]) as server:
        refused = _shed_cycle(server, "/leak_for?mb=150&s=2")
    _check_lines(server, refused)
