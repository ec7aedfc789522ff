"""Dry-run and MEMWARDEN_PROTECT: the same traffic that makes ``on`` recycle or shed
makes ``dry-run`` log the same decisions with the same figures, and act not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import QUIET, FakeSampler, Gunicorn, gunicorn, wait_for

from memwarden import export as exporters
from memwarden.hold.policy import Limits
from memwarden.hold.pool import Pool, PoolTimeout
from memwarden.hold.shed import Shedder
from memwarden.hold.worker import Recycler
from memwarden.settings import Settings
from memwarden.sizes import Size

MiB = 1024 * 1024
# Two runs of one app differ by allocator noise: a few hundred KiB, never a leak step.
NOISE = 3 * MiB


# -- MEMWARDEN_PROTECT, as the settings load ---------------------------------------------

@pytest.mark.parametrize(("protect", "own", "expected"), [
    ("on", ("on", "dry-run", "off", "dry-run"), ("on", "dry-run", "off", "dry-run")),
    ("dry-run", ("on", "dry-run", "off", "on"), ("dry-run", "dry-run", "off", "dry-run")),
    ("off", ("on", "dry-run", "on", "on"), ("off", "off", "off", "off")),
])
def test_protect_caps_every_action_mode(protect: str, own: tuple[str, str, str, str],
                                        expected: tuple[str, str, str, str]) -> None:
    """on: each action keeps its own mode; dry-run: those not off observe; off: none decide."""
    env = {"MEMWARDEN_PROTECT": protect, "MEMWARDEN_RECYCLE": own[0],
           "MEMWARDEN_SHED": own[1], "MEMWARDEN_ORPHANS": own[2],
           "MEMWARDEN_POOL_LIMITS": own[3]}
    s = Settings.from_env(env)
    assert (s.recycle, s.shed, s.orphans, s.pool_limits) == expected
    assert s.protect == protect


def test_protect_applies_however_settings_are_built() -> None:
    """Overrides and direct construction go through the same switch."""
    assert Settings(protect="dry-run").recycle == "dry-run"
    s = Settings.from_env({"MEMWARDEN_PROTECT": "dry-run"}, recycle="on", shed="off")
    assert (s.recycle, s.shed, s.orphans) == ("dry-run", "off", "dry-run")


# -- recycling by the soft limit ------------------------------------------------------------

LEAKS = 20  # GET /leak?mb=4 each: the soft limit is crossed about half way


def _recycle_run(tmp: Path, mode_env: dict[str, str]) -> tuple[Gunicorn, list[int], list[int]]:
    """The same 20 leaking requests; returns the server, pids served and statuses."""
    env = {**QUIET, "MEMWARDEN_SOFT_LIMIT": "90MiB", "MEMWARDEN_CENSUS_EVERY": "1",
           **mode_env}
    pids: list[int] = []
    statuses: list[int] = []
    with gunicorn("hold_app:app", tmp, args=["-w", "1"], env=env) as server:
        for _ in range(LEAKS):
            status, _, body = server.request("GET", "/leak?mb=4")
            statuses.append(status)
            pids.append(json.loads(body)["pid"] if status == 200 else -1)
        server.request_lines(LEAKS)
        time.sleep(0.3)  # a would_recycle line is written after its request line
    return server, pids, statuses


def _first(server: Gunicorn, message: str) -> dict[str, Any]:
    found = server.lines("memwarden.recycle", message)
    assert found, f"no {message} line"
    return found[0]


@pytest.mark.parametrize("switch", [{"MEMWARDEN_RECYCLE": "dry-run"},
                                    {"MEMWARDEN_PROTECT": "dry-run"}],
                         ids=["recycle-dry-run", "protect-dry-run"])
def test_dry_run_logs_the_soft_limit_recycle_on_would_do(tmp_path: Path,
                                                         switch: dict[str, str]) -> None:
    (tmp_path / "on").mkdir()
    (tmp_path / "dry").mkdir()
    on, on_pids, on_statuses = _recycle_run(tmp_path / "on", {"MEMWARDEN_RECYCLE": "on"})
    dry, dry_pids, dry_statuses = _recycle_run(tmp_path / "dry", switch)
    did = _first(on, "recycle")
    would = _first(dry, "would_recycle")

    # on acted: the worker changed after the crossing request.
    assert len(set(on_pids)) >= 2 and on_statuses == [200] * LEAKS
    # dry-run did not: one worker served everything, no 503, no recycle line.
    assert len(set(dry_pids)) == 1 and dry_statuses == [200] * LEAKS
    assert not dry.lines("memwarden.recycle", "recycle")
    assert len(dry.lines("memwarden.recycle", "would_recycle")) == 1  # once per reason

    # The same decision with the same figures.
    assert would["reason"] == did["reason"] == "soft_limit"
    assert would["limit_bytes"] == did["limit_bytes"] == 90 * MiB
    assert would["footprint_bytes"] >= 90 * MiB
    assert abs(would["footprint_bytes"] - did["footprint_bytes"]) <= NOISE + 4 * MiB
    assert abs(would["requests"] - did["requests"]) <= 1
    # Each figure is the one of the request that crossed the limit.
    crossing = next(x for x in dry.lines("memwarden.request", "request")
                    if x["rss_bytes"] >= 90 * MiB)
    assert would["requests"] == crossing["seq"]
    assert abs(would["rss_bytes"] - crossing["rss_bytes"]) <= 256 * 1024
    # Counted under its own name in the census.
    last = dry.lines("memwarden.request", "request")[-1]
    assert last["census"]["recycle.would"] == 1


# -- shedding ---------------------------------------------------------------------------------

SHED_ENV = {"MEMWARDEN_SHED_HIGH": "150MiB", "MEMWARDEN_SHED_LOW": "120MiB",
            "MEMWARDEN_SHED_RETRY_AFTER": "3", "MEMWARDEN_CENSUS_EVERY": "1",
            "MEMWARDEN_SOFT_LIMIT": "off", "MEMWARDEN_IDLE_LIMIT": "off",
            "MEMWARDEN_HARD_LIMIT": "off"}
# Served, a temporary 150 MiB, four requests while it is held, then after it is let go.
HELD = 4


def _shed_run(tmp: Path, mode_env: dict[str, str]) -> tuple[Gunicorn, list[int], set[int]]:
    statuses: list[int] = []
    pids: set[int] = set()
    with gunicorn("hold_app:app", tmp, args=["-w", "1"], env={**SHED_ENV, **mode_env}
                  ) as server:
        def get(path: str) -> None:
            status, _, body = server.request("GET", path)
            statuses.append(status)
            if status == 200 and body.startswith(b"{"):
                pids.add(json.loads(body)["pid"])

        get("/pid")
        get("/leak_for?mb=150&s=4")
        for _ in range(HELD):
            get("/pid")
        time.sleep(4.5)
        wait_for(lambda: server.request("GET", "/pid")[0] == 200, what="served again")
        server.request_lines(len(statuses) + 1)
        time.sleep(0.3)
    return server, statuses, pids


@pytest.mark.parametrize("switch", [{"MEMWARDEN_SHED": "dry-run"},
                                    {"MEMWARDEN_PROTECT": "dry-run"}],
                         ids=["shed-dry-run", "protect-dry-run"])
def test_dry_run_logs_the_sheds_on_would_do(tmp_path: Path, switch: dict[str, str]) -> None:
    (tmp_path / "on").mkdir()
    (tmp_path / "dry").mkdir()
    on, on_statuses, _ = _shed_run(tmp_path / "on", {"MEMWARDEN_SHED": "on"})
    dry, dry_statuses, dry_pids = _shed_run(tmp_path / "dry", switch)

    assert on_statuses == [200, 200] + [503] * HELD
    assert dry_statuses == [200] * (2 + HELD)  # nothing refused
    assert len(dry_pids) == 1
    did = on.lines("memwarden.shed", "shed")
    would = dry.lines("memwarden.shed", "would_shed")
    assert not dry.lines("memwarden.shed", "shed")
    assert len(did) == len(would) == HELD
    for a, b in zip(did, would, strict=True):
        assert (a["method"], a["path"], a["status"], a["shed_requests"]) == \
               (b["method"], b["path"], b["status"], b["shed_requests"])
        assert a["shed_high_bytes"] == b["shed_high_bytes"] == 150 * MiB
        assert a["shed_low_bytes"] == b["shed_low_bytes"] == 120 * MiB
        assert b["footprint_bytes"] >= 150 * MiB
        assert abs(a["footprint_bytes"] - b["footprint_bytes"]) <= NOISE
    # The switches into and out of shedding are logged the same way in both.
    assert [x["message"] for x in dry.lines("memwarden.shed")
            if x["message"].startswith("shedding_")] == ["shedding_started", "shedding_stopped"]
    # Counted under its own name, never as requests really shed.
    census = dry.lines("memwarden.request", "request")[-1]["census"]
    assert census["shed.would_requests"] == HELD
    assert "shed.requests" not in census
    assert on.lines("memwarden.request", "request")[-1]["census"]["shed.requests"] == HELD


def test_protect_off_decides_nothing(tmp_path: Path) -> None:
    """Observe only: the request lines are written, no decision is logged or taken."""
    env = {**SHED_ENV, "MEMWARDEN_SOFT_LIMIT": "90MiB", "MEMWARDEN_PROTECT": "off"}
    with gunicorn("hold_app:app", tmp_path, args=["-w", "1"], env=env) as server:
        pids = {json.loads(server.request("GET", "/leak?mb=8")[2])["pid"] for _ in range(25)}
        server.request_lines(25)
        time.sleep(0.3)
    assert len(pids) == 1
    decisions = {"recycle", "would_recycle", "recycle_deferred", "shed", "would_shed",
                 "shedding_started", "shed_thresholds", "limits"}
    assert not [x for x in server.lines() if x.get("message") in decisions]


# -- counted under their own name by the exporters --------------------------------------------

class CountingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def record_recycle(self, reason: str) -> None:
        self.events.append(("recycle", reason))

    def record_shed(self, count: int) -> None:
        self.events.append(("shed", count))

    def record_would_recycle(self, reason: str) -> None:
        self.events.append(("would_recycle", reason))

    def record_would_shed(self, count: int) -> None:
        self.events.append(("would_shed", count))

    def record_pool_refusal(self, pool: str) -> None:
        self.events.append(("pool_refusal", pool))

    def record_would_pool_refusal(self, pool: str) -> None:
        self.events.append(("would_pool_refusal", pool))

    def record_oom_kill(self, count: int) -> None:
        self.events.append(("oom_kill", count))

    def set_worker_limit(self, limit_bytes: int | None) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[CountingSink]:
    counting = CountingSink()
    exporters.add_sink(counting)
    try:
        yield counting
    finally:
        exporters.remove_sink(counting)


@pytest.mark.parametrize("mode", ["on", "dry-run"])
def test_exporters_count_dry_run_sheds_under_their_own_name(sink: CountingSink,
                                                            mode: str) -> None:
    settings = Settings(shed=mode, shed_high=Size(bytes=100 * MiB))
    shedder = Shedder(settings, FakeSampler(200 * MiB), workers=1)  # type: ignore[arg-type]
    assert shedder.check()
    assert shedder.refuse("GET", "/x") is (mode == "on")
    assert sink.events == [("shed" if mode == "on" else "would_shed", 1)]


@pytest.mark.parametrize("mode", ["on", "dry-run"])
def test_exporters_count_dry_run_recycles_under_their_own_name(sink: CountingSink,
                                                               mode: str) -> None:
    stopped: list[bool] = []
    recycler = Recycler(Limits(soft_bytes=100 * MiB), FakeSampler(200 * MiB),  # type: ignore[arg-type]
                        mode=mode, stop=lambda: stopped.append(True))
    for _ in range(3):
        recycler.on_request({})
    assert stopped == ([True] if mode == "on" else [])
    assert sink.events == [("recycle" if mode == "on" else "would_recycle", "soft_limit")]
    assert recycler.would_recycles() == (0 if mode == "on" else 1)


@pytest.mark.parametrize("mode", ["on", "dry-run"])
def test_exporters_count_dry_run_pool_refusals_under_their_own_name(sink: CountingSink,
                                                                    mode: str) -> None:
    async def create() -> object:
        return object()

    async def close(resource: object) -> None:
        pass

    async def main() -> None:
        pool = Pool(create, close, max_size=1, acquire_timeout=0, name="browser", mode=mode)
        async with pool.acquire():
            with contextlib.suppress(PoolTimeout):
                async with pool.acquire():
                    pass
        await pool.close()

    asyncio.run(main())
    assert sink.events == [("pool_refusal" if mode == "on" else "would_pool_refusal",
                            "browser")]
