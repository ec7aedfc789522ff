"""Pool limits on, dry-run and off: the same burst of acquirers on a max_size=1 pool.

``on`` refuses (PoolTimeout, ``pool_refuse``); ``dry-run`` waits the same, logs
``would_pool_refuse`` with the same figures and lends beyond max_size; ``off``
has no bound and never waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Factory, Res, arun, flaky_health_check, random_users, until

from memwarden import export as exporters
from memwarden.hold.pool import PoolStats, PoolTimeout
from memwarden.see.census import census

CALLERS = 4  # at once, on one slot
HOLD = 0.2  # seconds each lease is held
TIMEOUT = 0.05  # the acquire timeout, well under HOLD


@pytest.fixture(autouse=True)
def no_mode_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A pool made without a mode reads these: each test starts without them."""
    for name in ("MEMWARDEN_POOL_LIMITS", "MEMWARDEN_PROTECT"):
        monkeypatch.delenv(name, raising=False)
    yield


@dataclass
class Burst:
    outcomes: list[Res | PoolTimeout]
    waited: list[float]  # seconds from acquire() to the lease or the refusal
    during: dict[str, int | float]  # census while every lease is out
    peak: int  # the largest pool size a lease saw
    after: PoolStats  # every lease back, every close finished
    closed: list[int]  # then, how often each resource made was closed
    census_after: dict[str, int | float]  # census then, before the pool closes
    closed_after: dict[str, int | float]  # once the pool is closed
    lines: list[tuple[str, dict[str, Any]]]  # memwarden.pool lines: message, figures


def burst(mode: str, caplog: pytest.LogCaptureFixture) -> Burst:
    factory = Factory()
    waited: list[float] = []
    sizes: list[int] = []
    during: dict[str, int | float] = {}

    async def main() -> Burst:
        pool = factory.pool(max_size=1, acquire_timeout=TIMEOUT, name="burst", mode=mode)

        async def caller() -> Res | PoolTimeout:
            start = time.monotonic()
            try:
                async with pool.acquire() as res:
                    waited.append(time.monotonic() - start)
                    await asyncio.sleep(HOLD / 2)
                    sizes.append(pool.stats().size)
                    during.update(census(descendants=False))
                    await asyncio.sleep(HOLD / 2)
                    return res
            except PoolTimeout as exc:
                waited.append(time.monotonic() - start)
                return exc

        outcomes = await asyncio.gather(*(caller() for _ in range(CALLERS)))
        await until(lambda: pool.stats().closing == 0)
        after, census_after = pool.stats(), census(descendants=False)
        closed = [res.closed for res in factory.made]
        await pool.close()
        return Burst(list(outcomes), waited, dict(during), max(sizes), after, closed,
                     census_after, census(descendants=False), [])

    with caplog.at_level(logging.INFO, logger="memwarden.pool"):
        run = arun(main())
    run.lines = [(r.getMessage(), fields_of(r)) for r in caplog.records
                 if r.name == "memwarden.pool"]
    return run


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of one memwarden line, but its pid."""
    fields: dict[str, Any] = record.memwarden  # type: ignore[attr-defined]
    return {k: v for k, v in fields.items() if k != "pid"}


def refused(run: Burst) -> list[PoolTimeout]:
    return [x for x in run.outcomes if isinstance(x, PoolTimeout)]


FIGURES = [{"pool": "burst", "size": 1, "max_size": 1, "in_use": 1, "idle": 0,
            "waiting": waiting, "timeout_s": TIMEOUT} for waiting in (3, 2, 1)]


def test_on_refuses_the_callers_no_slot_frees_for_and_logs_pool_refuse(
        caplog: pytest.LogCaptureFixture) -> None:
    run = burst("on", caplog)
    assert len(refused(run)) == CALLERS - 1
    assert "size 1/1, in use 1, idle 0" in str(refused(run)[0])
    assert all(TIMEOUT - 0.005 <= w < HOLD for w in sorted(run.waited)[1:])
    assert run.lines == [("pool_refuse", figures) for figures in FIGURES]
    assert run.peak == 1
    assert (run.after.refused, run.after.would_refuse) == (CALLERS - 1, 0)
    assert run.census_after["pool.burst.refused"] == CALLERS - 1
    assert "pool.burst.would_refuse" not in run.census_after
    assert not any(key.startswith("pool.burst.") for key in run.closed_after)


def test_dry_run_logs_the_same_figures_lends_beyond_max_size_and_shrinks_back(
        caplog: pytest.LogCaptureFixture) -> None:
    on = burst("on", caplog)
    caplog.clear()
    dry = burst("dry-run", caplog)

    # The same decisions with the same figures, under their would_ name.
    assert on.lines == [("pool_refuse", figures) for figures in FIGURES]
    assert dry.lines == [("would_pool_refuse", figures) for _, figures in on.lines]
    # Each waited in the queue as on does, then every lease worked.
    assert refused(dry) == []
    assert len({id(res) for res in dry.outcomes}) == CALLERS
    # (lent beyond max_size, not served by the first lease's release)
    assert all(TIMEOUT - 0.005 <= w < HOLD for w in sorted(dry.waited)[1:])
    # The real size shows, beyond max_size, in the stats and the census ...
    assert dry.peak == CALLERS
    assert dry.during["pool.burst.size"] == CALLERS
    assert dry.during["pool.burst.would_refuse"] == CALLERS - 1
    assert "pool.burst.refused" not in dry.during
    # ... and once the leases are back the pool is within its bound again: the
    # loans were closed, the first resource kept.
    assert (dry.after.size, dry.after.idle) == (1, 1)
    assert dry.closed == [0, 1, 1, 1]
    assert (dry.after.refused, dry.after.would_refuse) == (0, CALLERS - 1)
    assert not any(key.startswith("pool.burst.") for key in dry.closed_after)


def test_off_never_waits_never_refuses_and_logs_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    run = burst("off", caplog)
    assert refused(run) == []
    assert len({id(res) for res in run.outcomes}) == CALLERS
    assert max(run.waited) < TIMEOUT / 2
    assert run.lines == []
    # Created on demand like an unbounded pool, and kept idle for reuse.
    assert run.peak == CALLERS
    assert (run.after.size, run.after.idle, run.after.closed) == (CALLERS, CALLERS, 0)
    assert (run.after.refused, run.after.would_refuse) == (0, 0)
    assert "pool.burst.refused" not in run.census_after
    assert "pool.burst.would_refuse" not in run.census_after


@pytest.mark.parametrize("mode", ["on", "dry-run"])
def test_a_dry_run_loan_takes_no_slot_from_the_others(mode: str) -> None:
    """While a caller dry-run lent beyond max_size holds its loan, a later waiter
    is served when the slot frees, exactly as under on."""
    factory = Factory()

    async def main() -> tuple[Res | PoolTimeout, ...]:
        # max_uses=1: the first's resource is closed on release, its slot freed.
        pool = factory.pool(max_size=1, acquire_timeout=TIMEOUT, max_uses=1, mode=mode)

        async def lease(delay: float, hold: float, timeout: float | None = None
                        ) -> Res | PoolTimeout:
            await asyncio.sleep(delay)
            try:
                async with pool.acquire(timeout=timeout) as res:
                    await asyncio.sleep(hold)
                    return res
            except PoolTimeout as exc:
                return exc

        outcomes = await asyncio.gather(
            lease(0, 0.15),  # the only slot, until 0.15
            lease(0.01, 0.4),  # no slot by 0.06: refused, or lent one until 0.46
            lease(0.08, 0.01, timeout=0.25))  # waits; the freed slot is its own
        stats = pool.stats()
        assert stats.refused + stats.would_refuse == 1
        await pool.close()
        return tuple(outcomes)

    first, second, later = arun(main())
    assert isinstance(first, Res) and isinstance(later, Res)
    assert isinstance(second, PoolTimeout if mode == "on" else Res)


# -- the mode: from the environment, or given ---------------------------------------------

@pytest.mark.parametrize(("env", "expected"), [
    ({}, "on"),
    ({"MEMWARDEN_POOL_LIMITS": "dry-run"}, "dry-run"),
    ({"MEMWARDEN_POOL_LIMITS": "OFF"}, "off"),
    ({"MEMWARDEN_PROTECT": "dry-run"}, "dry-run"),
    ({"MEMWARDEN_PROTECT": "dry-run", "MEMWARDEN_POOL_LIMITS": "off"}, "off"),
    ({"MEMWARDEN_PROTECT": "off", "MEMWARDEN_POOL_LIMITS": "on"}, "off"),
    # A bad value elsewhere is gunicorn's to report at start; it changes nothing here.
    ({"MEMWARDEN_CENSUS_EVERY": "ten", "MEMWARDEN_POOL_LIMITS": "dry-run"}, "dry-run"),
])
def test_without_a_mode_the_pool_reads_memwardens_settings(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Factory().pool().mode == expected


def test_an_unreadable_mode_leaves_the_limits_on_and_says_so(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MEMWARDEN_POOL_LIMITS", "sometimes")
    with caplog.at_level(logging.WARNING, logger="memwarden.pool"):
        pool = Factory().pool(name="unsure")
    assert pool.mode == "on"
    assert "MEMWARDEN_POOL_LIMITS='sometimes'" in caplog.text
    assert "'unsure'" in caplog.text


def test_a_given_mode_is_used_as_given_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMWARDEN_PROTECT", "off")
    assert Factory().pool(mode="on").mode == "on"
    with pytest.raises(ValueError, match=r"'p'.*mode must be on, dry-run or off"):
        Factory().pool(mode="dry_run", name="p")


def test_a_pool_taking_over_a_name_drops_the_other_modes_count() -> None:
    """Refusals count under the mode's own name, also when a name changes hands."""
    old = Factory().pool(name="handover", mode="dry-run")
    assert "pool.handover.would_refuse" in census(descendants=False)
    new = Factory().pool(name="handover", mode="on")
    snapshot = census(descendants=False)
    assert snapshot["pool.handover.refused"] == 0
    assert "pool.handover.would_refuse" not in snapshot
    arun(old.close())
    arun(new.close())
    assert not any(k.startswith("pool.handover.") for k in census(descendants=False))


class DeclaringSink:
    """An exporter that notes the pools declared to it; ``fail`` makes it raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.pools: list[str] = []

    def declare_pool(self, pool: str) -> None:
        if self.fail:
            raise RuntimeError("exporter down")
        self.pools.append(pool)


@pytest.fixture
def declared() -> Iterator[DeclaringSink]:
    sink, broken = DeclaringSink(), DeclaringSink(fail=True)
    exporters.add_sink(broken)
    exporters.add_sink(sink)
    try:
        yield sink
    finally:
        exporters.remove_sink(sink)
        exporters.remove_sink(broken)


def test_a_pool_declares_itself_to_the_exporters_in_every_mode(
        declared: DeclaringSink) -> None:
    """So that its refusal counters start at 0; a failing exporter does not stop it."""
    for mode in ("on", "dry-run", "off"):
        assert Factory().pool(name=f"declared-{mode}", mode=mode).mode == mode
    assert declared.pools == ["declared-on", "declared-dry-run", "declared-off"]


@settings(max_examples=40, deadline=None, database=None)
@given(mode=st.sampled_from(["dry-run", "off"]), max_size=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1), users=st.integers(1, 12), close_early=st.booleans())
def test_random_cancellations_and_failures_leave_every_mode_balanced(
        mode: str, max_size: int, seed: int, users: int, close_early: bool) -> None:
    """Property: whatever is cancelled, fails or is closed early, dry-run's loans all
    end, dry-run returns within max_size, and every resource is closed exactly once."""
    rng = random.Random(seed)
    factory = Factory(delay=0.002, close_delay=0.001)

    async def main() -> None:
        pool = factory.pool(max_size=max_size, acquire_timeout=0.003, idle_ttl=0.004,
                            max_uses=rng.choice([None, 2]), mode=mode,
                            health_check=rng.choice([None, flaky_health_check(rng)]))
        outcomes = await random_users(pool, factory, rng, users, close_early)
        assert not [x for x in outcomes if isinstance(x, PoolTimeout)]
        stats = pool.stats()
        assert pool._over == 0  # every loan beyond max_size ended
        assert (stats.in_use, stats.waiting) == (0, 0)
        assert stats.size == stats.idle == factory.live
        if mode == "dry-run":
            assert stats.size <= max_size
        await pool.close()
        assert pool.stats().size == 0

    arun(main())
    assert factory.live == 0
    assert all(res.closed == 1 for res in factory.made)
