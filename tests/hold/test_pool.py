"""Tests for memwarden.pool: a bounded async resource pool."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Factory, Res, arun, flaky_health_check, random_users, until

from memwarden.hold import loop as mwloop
from memwarden.hold.pool import Pool, PoolClosed, PoolTimeout
from memwarden.see.census import census

T = TypeVar("T")


def test_max_size_holds_under_many_concurrent_acquirers() -> None:
    factory = Factory(delay=0.005, close_delay=0.002)
    in_use = 0
    peak = 0

    async def main() -> None:
        pool = factory.pool(max_size=3, name="conc")

        async def worker() -> None:
            nonlocal in_use, peak
            async with pool.acquire() as res:
                assert res.closed == 0
                in_use += 1
                peak = max(peak, in_use)
                await asyncio.sleep(0.005)
                in_use -= 1

        await asyncio.gather(*(worker() for _ in range(30)))
        assert pool.stats().in_use == 0
        await pool.close()

    arun(main())
    assert factory.max_live <= 3
    assert peak == 3
    assert len(factory.made) == 3  # reused, not recreated
    assert all(res.closed == 1 for res in factory.made)


def test_idle_resources_are_handed_out_newest_first() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=2)
        async with pool.acquire() as a, pool.acquire() as b:
            pass  # b is released first, then a: a is the newest idle
        async with pool.acquire() as again:
            assert again is a
        assert b is not a
        await pool.close()

    arun(main())


def test_acquire_timeout_raises_pool_timeout_naming_the_pool_and_counts() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1, name="browsers")
        async with pool.acquire():
            with pytest.raises(PoolTimeout) as info:
                async with pool.acquire(timeout=0.05):
                    pass  # pragma: no cover
        message = str(info.value)
        assert isinstance(info.value, TimeoutError)
        assert "'browsers'" in message
        assert "size 1/1" in message
        assert "in use 1" in message
        assert "waiting 1" in message
        assert pool.stats().waiting == 0
        await pool.close()

    arun(main())


def test_zero_acquire_timeout_fails_at_once_when_full() -> None:
    async def main() -> None:
        pool = Factory().pool(max_size=1, acquire_timeout=0)
        async with pool.acquire():
            with pytest.raises(PoolTimeout, match="waiting 1"):
                await pool.acquire().__aenter__()
        await pool.close()

    arun(main())


def test_idle_ttl_closes_resources_that_went_stale_instead_of_reusing_them() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=2, idle_ttl=0.05)
        async with pool.acquire() as first, pool.acquire() as second:
            pass
        await asyncio.sleep(0.08)
        async with pool.acquire() as fresh:
            assert fresh not in (first, second)
        await until(lambda: first.closed == 1 and second.closed == 1)
        assert pool.stats().closed == 2
        await pool.close()

    arun(main())


def test_reap_idle_closes_only_expired_idle_resources() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=2, idle_ttl=0.1)
        stale_lease, fresh_lease = pool.acquire(), pool.acquire()
        stale = await stale_lease.__aenter__()
        fresh = await fresh_lease.__aenter__()
        await stale_lease.__aexit__(None, None, None)
        await asyncio.sleep(0.15)
        await fresh_lease.__aexit__(None, None, None)
        assert await pool.reap_idle() == 1
        assert (stale.closed, fresh.closed) == (1, 0)
        assert pool.stats().idle == 1
        assert pool.stats().size == 1
        await pool.close()

    arun(main())


def test_background_reaper_closes_idle_resources_on_its_interval() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(idle_ttl=0.03, reap_interval=0.02)
        async with pool.acquire() as res:
            pass
        await until(lambda: res.closed == 1)
        assert pool.stats().size == 0
        await pool.close()

    arun(main())


def test_max_uses_recycles_a_resource_on_release() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1, max_uses=2)
        for _ in range(2):
            async with pool.acquire() as res:
                assert res is factory.made[0]
        await until(lambda: factory.made[0].closed == 1)
        async with pool.acquire() as res:
            assert res is factory.made[1]
        await pool.close()

    arun(main())


def test_failing_health_check_closes_the_resource_and_creates_a_new_one() -> None:
    factory = Factory()
    checked: list[Res] = []

    async def healthy(res: Res) -> bool:
        checked.append(res)
        return res.n != 0

    async def main() -> None:
        pool = factory.pool(max_size=1, health_check=healthy)
        async with pool.acquire() as first:
            pass
        assert checked == []  # a new resource is not checked
        async with pool.acquire() as second:
            assert second is not first
        assert checked == [first]
        await until(lambda: first.closed == 1)
        async with pool.acquire() as third:
            assert third is second  # healthy: reused
        assert pool.stats().health_failures == 1
        await pool.close()

    arun(main())


def test_health_check_that_raises_counts_as_failed_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    factory = Factory()

    async def raises(res: Res) -> bool:
        raise OSError("ping failed")

    async def main() -> None:
        pool = factory.pool(max_size=1, health_check=raises)
        async with pool.acquire() as first:
            pass
        async with pool.acquire() as second:
            assert second is not first
        await pool.close()

    with caplog.at_level(logging.WARNING, logger="memwarden.pool"):
        arun(main())
    assert "health check raised" in caplog.text


def test_creation_failure_frees_the_slot_and_propagates() -> None:
    factory = Factory()
    factory.fail_next = 1

    async def main() -> None:
        pool = factory.pool(max_size=1)
        with pytest.raises(ConnectionError, match="cannot create"):
            async with pool.acquire():
                pass  # pragma: no cover
        assert pool.stats().size == 0
        assert pool.stats().create_failures == 1
        async with pool.acquire(timeout=0.05) as res:
            assert res.n == 0
        await pool.close()

    arun(main())


def test_creation_failure_wakes_a_waiter_who_then_creates() -> None:
    factory = Factory(delay=0.02)
    factory.fail_next = 1

    async def main() -> None:
        pool = factory.pool(max_size=1)

        async def first() -> None:
            with pytest.raises(ConnectionError):
                async with pool.acquire():
                    pass  # pragma: no cover

        async def second() -> Res:
            await asyncio.sleep(0.005)  # arrives while the first is creating
            async with pool.acquire(timeout=1) as res:
                return res

        _, res = await asyncio.gather(first(), second())
        assert res.n == 0
        await pool.close()

    arun(main())


def test_cancelled_waiter_leaks_no_slot() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1)
        async with pool.acquire() as held:
            waiter = asyncio.create_task(pool.acquire(timeout=5).__aenter__())
            await until(lambda: pool.stats().waiting == 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool.stats().waiting == 0
        async with pool.acquire(timeout=0.05) as again:
            assert again is held
        assert pool.stats().size == 1
        await pool.close()

    arun(main())


def test_waiter_cancelled_just_after_being_woken_passes_the_wakeup_on() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1)
        got: list[Res] = []

        async def wait_and_take() -> None:
            async with pool.acquire(timeout=5) as res:
                got.append(res)

        lease = pool.acquire()
        await lease.__aenter__()
        first = asyncio.create_task(wait_and_take())
        second = asyncio.create_task(wait_and_take())
        await until(lambda: pool.stats().waiting == 2)
        await lease.__aexit__(None, None, None)  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)
        assert len(got) == 1
        await pool.close()

    arun(main())


def test_acquirer_cancelled_during_creation_returns_the_resource_to_the_pool() -> None:
    factory = Factory(delay=0.05)

    async def main() -> None:
        pool = factory.pool(max_size=1)
        task = asyncio.create_task(pool.acquire().__aenter__())
        await until(lambda: pool.stats().creating == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: pool.stats().idle == 1)
        assert pool.stats().in_use == 0
        async with pool.acquire(timeout=0.05) as res:
            assert res is factory.made[0]
        await pool.close()
        assert factory.made[0].closed == 1

    arun(main())


def test_waiters_are_served_in_arrival_order() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1)
        order: list[int] = []

        async def take(i: int) -> None:
            async with pool.acquire(timeout=5):
                order.append(i)
                await asyncio.sleep(0.002)

        async with pool.acquire():
            tasks = []
            for i in range(5):
                tasks.append(asyncio.create_task(take(i)))
                await until(lambda i=i: pool.stats().waiting == i + 1)  # type: ignore[misc]
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3, 4]
        await pool.close()

    arun(main())


def test_body_error_returns_the_resource_unless_discarding_is_asked_for() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1)
        with pytest.raises(KeyError):
            async with pool.acquire() as first:
                raise KeyError("app bug")
        async with pool.acquire() as again:
            assert again is first  # an ordinary error does not poison it
        with pytest.raises(KeyError):
            async with pool.acquire(discard_on_error=True) as res:
                raise KeyError("poisoned")
        await until(lambda: res.closed == 1)
        with pytest.raises(ValueError):
            async with pool.acquire(discard_on_error=(OSError,)) as kept:
                raise ValueError("not in the poisoning list")
        assert kept.closed == 0
        async with pool.acquire() as res2:
            assert res2 is kept
            pool.discard(res2)
        await until(lambda: kept.closed == 1)
        with pytest.raises(ValueError, match="not leased"):
            pool.discard(kept)
        await pool.close()

    arun(main())


def test_close_closes_idle_waits_for_leases_and_then_refuses_acquire() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=2)
        async with pool.acquire(), pool.acquire():
            pass
        lease = pool.acquire()
        leased = await lease.__aenter__()

        async def give_back() -> None:
            await asyncio.sleep(0.03)
            await lease.__aexit__(None, None, None)

        giver = asyncio.create_task(give_back())
        await pool.close(timeout=2)
        await giver
        assert [r.closed for r in factory.made] == [1, 1]
        assert leased.closed == 1
        with pytest.raises(PoolClosed, match="is closed"):
            async with pool.acquire():
                pass  # pragma: no cover
        await pool.close()  # idempotent
        assert pool.stats().size == 0

    arun(main())


def test_close_closes_leases_still_out_after_its_timeout_exactly_once() -> None:
    factory = Factory()

    async def main() -> None:
        pool = factory.pool(max_size=1)
        async with pool.acquire() as res:
            await pool.close(timeout=0.03)
            assert res.closed == 1
        assert res.closed == 1  # the late release does not close it again
        assert pool.stats().size == 0

    arun(main())


def test_close_during_a_health_check_closes_that_resource_exactly_once() -> None:
    factory = Factory()
    checking = asyncio.Event()

    async def slow_unhealthy(res: Res) -> bool:
        checking.set()
        await asyncio.sleep(0.03)
        return False

    async def main() -> None:
        pool = factory.pool(max_size=1, health_check=slow_unhealthy)
        async with pool.acquire() as res:
            pass
        acquirer = asyncio.create_task(pool.acquire().__aenter__())
        await checking.wait()
        await pool.close(timeout=0)  # takes the resource back mid-check and closes it
        with pytest.raises(PoolClosed):
            await acquirer
        await until(lambda: pool.stats().closing == 0)
        assert res.closed == 1
        assert len(factory.made) == 1  # no resource created on the closed pool

    arun(main())


def test_close_wakes_waiters_with_pool_closed() -> None:
    async def main() -> None:
        pool = Factory().pool(max_size=1)
        lease = pool.acquire()
        await lease.__aenter__()
        waiter = asyncio.create_task(pool.acquire(timeout=5).__aenter__())
        await until(lambda: pool.stats().waiting == 1)
        closer = asyncio.create_task(pool.close(timeout=1))
        with pytest.raises(PoolClosed):
            await waiter
        await lease.__aexit__(None, None, None)
        await closer

    arun(main())


def test_close_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def create() -> Res:
        return Res(0)

    async def close(res: Res) -> None:
        raise RuntimeError("close blew up")

    async def main() -> None:
        pool = Pool(create, close, max_size=1, acquire_timeout=1, max_uses=1)
        async with pool.acquire():
            pass
        await until(lambda: pool.stats().closed == 1)
        assert pool.stats().close_failures == 1
        await pool.close()

    with caplog.at_level(logging.WARNING, logger="memwarden.pool"):
        arun(main())
    assert "close blew up" in caplog.text


def test_pool_used_from_another_event_loop_raises_a_clear_error() -> None:
    pool = Factory().pool()

    async def use() -> None:
        async with pool.acquire():
            pass

    arun(use())
    with pytest.raises(RuntimeError, match="belongs to another event loop"):
        arun(use())


def test_pool_runs_on_the_worker_loop_from_sync_code() -> None:
    factory = Factory()
    pool = factory.pool(name="sync")

    async def use() -> int:
        async with pool.acquire() as res:
            return res.n

    try:
        assert [mwloop.run(use(), timeout=5) for _ in range(3)] == [0, 0, 0]
        mwloop.run(pool.close(), timeout=5)
    finally:
        mwloop.shutdown(timeout=2)
    assert factory.made[0].closed == 1


def test_pool_held_on_the_worker_loop_is_closed_by_loop_shutdown() -> None:
    factory = Factory()
    held = mwloop.hold(lambda: factory.pool(name="held"), name="pool", timeout=5)

    async def use(pool: Pool[Res]) -> int:
        async with pool.acquire() as res:
            return res.n

    try:
        assert mwloop.run(use(held.value), timeout=5) == 0
    finally:
        mwloop.shutdown(timeout=5)
    assert not held.is_open
    assert [res.closed for res in factory.made] == [1]


def test_census_reports_pool_gauges_and_drops_them_when_the_pool_is_gone() -> None:
    async def main() -> dict[str, int | float]:
        pool = Factory().pool(max_size=2, name="gauged")
        async with pool.acquire():
            snapshot = census(descendants=False)
        await pool.close()
        return snapshot

    snapshot = arun(main())
    assert snapshot["pool.gauged.size"] == 1
    assert snapshot["pool.gauged.in_use"] == 1
    assert snapshot["pool.gauged.waiting"] == 0
    assert "pool.gauged.size" not in census(descendants=False)

    Factory().pool(name="dropped")  # never closed, dropped at once
    gc.collect()
    assert not any(key.startswith("pool.dropped.") for key in census(descendants=False))


def test_gauges_of_a_pool_name_survive_closing_an_older_pool_of_that_name() -> None:
    async def main() -> None:
        old = Factory().pool(name="twin")
        new = Factory().pool(name="twin")
        await old.close()
        assert census(descendants=False)["pool.twin.size"] == 0
        await new.close()
        assert "pool.twin.size" not in census(descendants=False)

    arun(main())


def test_invalid_settings_are_rejected_with_the_pool_name() -> None:
    factory = Factory()
    with pytest.raises(ValueError, match=r"'p'.*max_size"):
        Pool(factory.create, factory.close, max_size=0, acquire_timeout=1, name="p")
    with pytest.raises(ValueError, match="reap_interval"):
        Pool(factory.create, factory.close, max_size=1, acquire_timeout=1, reap_interval=1)
    for bad, message in [({"acquire_timeout": -1}, "acquire_timeout must be >= 0"),
                         ({"idle_ttl": 0}, "idle_ttl must be > 0"),
                         ({"max_uses": 0}, "max_uses must be >= 1"),
                         ({"mode": "maybe"}, "mode must be on, dry-run or off, got 'maybe'")]:
        with pytest.raises(ValueError, match=f"'p': {message}"):
            Pool(factory.create, factory.close, **{"max_size": 1, "acquire_timeout": 1,
                                                   "name": "p", **bad})


def test_repr_says_size_use_and_whether_closed() -> None:
    async def main() -> None:
        pool = Factory().pool(name="r", max_size=3)
        async with pool.acquire():
            assert repr(pool) == "<Pool 'r' size=1/3 in_use=1 idle=0 waiting=0>"
        await pool.close()
        assert repr(pool) == "<Pool 'r' size=0/3 in_use=0 idle=0 waiting=0 closed>"

    arun(main())


def test_a_lease_is_entered_once_and_a_discard_after_close_is_a_no_op() -> None:
    async def main() -> None:
        pool = Factory().pool(name="once")
        lease = pool.acquire(discard_on_error=KeyError)  # one type, not a tuple
        with pytest.raises(KeyError):
            async with lease as res:
                with pytest.raises(RuntimeError, match="entered twice"):
                    await lease.__aenter__()
                raise KeyError("poisons it")
        await until(lambda: res.closed == 1)
        async with pool.acquire() as res:
            await pool.close(timeout=0)  # takes the lease back and closes it
            pool.discard(res)  # already closed by close(): nothing to do
        assert res.closed == 1

    arun(main())


@settings(max_examples=40, deadline=None, database=None)
@given(max_size=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       users=st.integers(1, 12), close_early=st.booleans())
def test_random_cancellations_and_failures_never_exceed_max_size_or_leak_slots(
        max_size: int, seed: int, users: int, close_early: bool) -> None:
    """Property: whatever is cancelled, fails or is closed early, the pool stays
    bounded and balanced, and every resource is closed exactly once in the end."""
    rng = random.Random(seed)
    factory = Factory(delay=0.002, close_delay=0.001)

    async def main() -> None:
        pool = factory.pool(max_size=max_size, acquire_timeout=0.05, idle_ttl=0.004,
                            max_uses=rng.choice([None, 2]),
                            health_check=rng.choice([None, flaky_health_check(rng)]))

        def bounded() -> None:
            assert pool.stats().size <= max_size

        await random_users(pool, factory, rng, users, close_early, inside=bounded)
        stats = pool.stats()
        assert stats.in_use == 0
        assert stats.waiting == 0
        assert stats.size == stats.idle
        assert factory.live == stats.idle
        await pool.close()
        assert pool.stats().size == 0

    arun(main())
    assert factory.max_live <= max_size
    assert factory.live == 0
    assert all(res.closed == 1 for res in factory.made)
