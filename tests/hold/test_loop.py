"""Tests for memwarden.loop: one background event loop per worker process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import warnings
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from anyio.abc import TaskGroup

from memwarden.hold import loop as mwloop
from memwarden.see.census import census


@pytest.fixture(autouse=True)
def _fresh_loop() -> Iterator[None]:
    mwloop.shutdown(timeout=2.0)
    yield
    mwloop.shutdown(timeout=2.0)


async def _other_tasks() -> list[asyncio.Task[object]]:
    me = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not me]


def test_run_returns_the_value_computed_on_the_named_daemon_loop_thread() -> None:
    async def where() -> tuple[str, bool, asyncio.AbstractEventLoop]:
        thread = threading.current_thread()
        return thread.name, thread.daemon, asyncio.get_running_loop()

    name, daemon, loop = mwloop.run(where(), timeout=5)
    assert name == mwloop.THREAD_NAME == "memwarden-loop"
    assert daemon
    assert loop is mwloop.get_loop()


def test_get_loop_is_created_lazily_once_per_process() -> None:
    assert mwloop.get_loop() is mwloop.get_loop()
    assert [t.name for t in threading.enumerate()].count("memwarden-loop") == 1


def test_run_propagates_the_coroutines_exception_unchanged() -> None:
    class Boom(Exception):
        pass

    async def fail() -> None:
        raise Boom("from the loop")

    with pytest.raises(Boom, match="from the loop"):
        mwloop.run(fail(), timeout=5)


def test_run_timeout_cancels_the_task_and_leaves_no_task_behind() -> None:
    saw_cancel = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    with pytest.raises(TimeoutError, match=r"slow.* did not finish within 0.05 s"):
        mwloop.run(slow(), timeout=0.05)
    assert saw_cancel.is_set()
    assert mwloop.run(_other_tasks(), timeout=5) == []


def test_run_timeout_waits_for_the_cancelled_tasks_cleanup_to_finish() -> None:
    cleaned = threading.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.1)
            cleaned.set()

    with pytest.raises(TimeoutError):
        mwloop.run(slow_cleanup(), timeout=0.05)
    assert cleaned.is_set()


def test_run_reports_a_task_still_cancelling_after_the_grace_period() -> None:
    release = threading.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            while not release.is_set():  # ignores the cancellation for a while
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.01)

    with pytest.raises(TimeoutError, match=r"still cancelling after 0\.05 s"):
        mwloop.run(stubborn(), timeout=0.05, cancel_grace=0.05)
    release.set()


def test_run_from_the_loop_thread_raises_instead_of_deadlocking() -> None:
    async def inner() -> int:
        return 1

    async def outer() -> None:
        mwloop.run(inner(), timeout=1)

    with pytest.raises(RuntimeError, match=r"own thread.*deadlock"):
        mwloop.run(outer(), timeout=5)


class _Scoped:
    """An anyio task group entered in an async context manager, recording its tasks."""

    def __init__(self) -> None:
        self.entered_in: asyncio.Task[object] | None = None
        self.exited_in: asyncio.Task[object] | None = None
        self.ran: list[str] = []

    @contextlib.asynccontextmanager
    async def cm(self) -> AsyncIterator[TaskGroup]:
        async with anyio.create_task_group() as tg:
            self.entered_in = asyncio.current_task()
            try:
                yield tg
            finally:
                self.exited_in = asyncio.current_task()


def test_hold_enters_and_exits_an_anyio_task_group_in_one_owner_task() -> None:
    scoped = _Scoped()
    held = mwloop.hold(scoped.cm, name="tg", timeout=5)
    assert held.is_open

    async def use(tg: TaskGroup) -> None:
        async def child() -> None:
            scoped.ran.append("child")
        tg.start_soon(child)
        await asyncio.sleep(0.01)

    mwloop.run(use(held.value), timeout=5)
    held.close(timeout=5)
    assert scoped.ran == ["child"]
    assert scoped.entered_in is not None
    assert scoped.exited_in is scoped.entered_in
    assert not held.is_open
    assert mwloop.run(_other_tasks(), timeout=5) == []


def test_naive_enter_and_exit_in_separate_run_calls_fails_with_cancel_scope_error() -> None:
    """The failure hold() exists for: each run() call is a different task."""
    cm = _Scoped().cm()
    mwloop.run(cm.__aenter__(), timeout=5)
    with pytest.raises(RuntimeError, match="cancel scope in a different task"):
        mwloop.run(cm.__aexit__(None, None, None), timeout=5)


def test_hold_propagates_the_error_raised_while_entering() -> None:
    @contextlib.asynccontextmanager
    async def broken() -> AsyncIterator[int]:
        raise ConnectionError("server down")
        yield 1  # pragma: no cover

    with pytest.raises(ConnectionError, match="server down"):
        mwloop.hold(broken, timeout=5)
    assert mwloop.run(_other_tasks(), timeout=5) == []


def test_hold_timeout_while_entering_cancels_the_owner_task() -> None:
    exited = threading.Event()

    @contextlib.asynccontextmanager
    async def hangs() -> AsyncIterator[int]:
        try:
            await asyncio.sleep(30)
            yield 1  # pragma: no cover
        finally:
            exited.set()

    with pytest.raises(TimeoutError):
        mwloop.hold(hangs, name="hangs", timeout=0.05)
    assert exited.is_set()
    assert mwloop.run(_other_tasks(), timeout=5) == []


def test_held_close_raises_the_error_raised_while_exiting_once() -> None:
    @contextlib.asynccontextmanager
    async def bad_exit() -> AsyncIterator[str]:
        yield "v"
        raise OSError("exit failed")

    held = mwloop.hold(bad_exit, timeout=5)
    assert held.value == "v"
    with pytest.raises(OSError, match="exit failed"):
        held.close(timeout=5)
    held.close(timeout=5)  # reported once; closing again is a no-op


def test_shutdown_closes_held_values_newest_first_in_their_owner_tasks() -> None:
    order: list[str] = []

    def named(tag: str) -> contextlib.AbstractAsyncContextManager[str]:
        @contextlib.asynccontextmanager
        async def cm() -> AsyncIterator[str]:
            async with anyio.create_task_group():
                yield tag
                order.append(tag)
        return cm()

    first = mwloop.hold(lambda: named("first"), name="first", timeout=5)
    second = mwloop.hold(lambda: named("second"), name="second", timeout=5)
    assert census(descendants=False)["loop.held"] == 2
    mwloop.shutdown(timeout=5)
    assert order == ["second", "first"]
    assert not first.is_open and not second.is_open
    first.close()  # after shutdown: a no-op, not an error


def test_shutdown_is_idempotent_closes_the_loop_and_cancels_leftover_tasks() -> None:
    loop = mwloop.get_loop()
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    mwloop.run(spawn(), timeout=5)
    thread = next(t for t in threading.enumerate() if t.name == "memwarden-loop")
    mwloop.shutdown(timeout=5)
    mwloop.shutdown(timeout=5)
    assert loop.is_closed()
    assert cancelled.is_set()
    assert not thread.is_alive()
    # A later call starts a fresh loop rather than touching the closed one.
    assert mwloop.get_loop() is not loop


def test_shutdown_finalizes_async_generators() -> None:
    finalized = threading.Event()

    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            finalized.set()

    holder: list[AsyncIterator[int]] = []

    async def start() -> int:
        gen = agen()
        holder.append(gen)  # kept alive: only shutdown_asyncgens can finalize it
        return await gen.__anext__()

    assert mwloop.run(start(), timeout=5) == 1
    mwloop.shutdown(timeout=5)
    assert finalized.is_set()


def test_census_gauge_counts_tasks_on_the_worker_loop() -> None:
    started = threading.Event()

    async def park() -> None:
        started.set()
        await asyncio.sleep(60)

    mwloop.get_loop().call_soon_threadsafe(lambda: asyncio.ensure_future(park()))
    assert started.wait(5)
    assert census(descendants=False)["loop.tasks"] == 1
    mwloop.shutdown(timeout=5)
    assert "loop.tasks" not in census(descendants=False)


def test_forked_child_gets_a_new_loop_not_the_parents() -> None:
    parent_loop = mwloop.get_loop()
    assert mwloop.run(asyncio.sleep(0, "warm"), timeout=5) == "warm"
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork() with threads running; that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        report = b"child crashed"
        try:
            os.close(read_fd)
            child_loop = mwloop.get_loop()

            async def where() -> tuple[int, asyncio.AbstractEventLoop]:
                return os.getpid(), asyncio.get_running_loop()

            child_pid, ran_on = mwloop.run(where(), timeout=5)
            checks = [child_loop is not parent_loop, ran_on is child_loop,
                      child_pid == os.getpid(), not child_loop.is_closed()]
            report = b"ok" if all(checks) else repr(checks).encode()
        except BaseException as exc:
            report = repr(exc).encode()
        finally:
            os.write(write_fd, report)
            os._exit(0)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 10)
        data = os.read(read_fd, 1000) if ready else b"timeout"
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    assert data == b"ok"
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's loop is untouched by the child.
    assert mwloop.get_loop() is parent_loop
    assert mwloop.run(asyncio.sleep(0, "still"), timeout=5) == "still"


# -- held values off the worker loop, and what goes wrong at shutdown -------------------


def test_a_held_context_on_a_loop_of_its_own_says_where_it_is() -> None:
    @contextlib.asynccontextmanager
    async def value() -> AsyncIterator[str]:
        yield "v"

    held = mwloop.Held(value, name="own")
    assert repr(held) == "<Held 'own' new>"

    async def main() -> None:
        assert await held.astart() == "v"
        assert repr(held) == "<Held 'own' open>" and held.value == "v"
        with pytest.raises(RuntimeError, match="'own' was already started"):
            await held.astart()
        # Not on the worker loop: closing from sync code would block this very loop.
        with pytest.raises(RuntimeError, match="'own' is not on the worker loop"):
            held.close()
        await held.aclose()

    asyncio.run(main())
    assert repr(held) == "<Held 'own' closed>"
    with pytest.raises(RuntimeError, match="'own' is not open"):
        _ = held.value
    held.close()  # its owner task is done: nothing left to do


def test_a_held_context_that_fails_on_its_own_is_logged_then_raised_on_close(
        caplog: pytest.LogCaptureFixture) -> None:
    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[str]:
        async def connection() -> None:
            await asyncio.sleep(0.01)
            raise ConnectionError("the server went away")

        async with anyio.create_task_group() as group:
            group.start_soon(connection)
            yield "session"

    held = mwloop.hold(session, name="mcp", timeout=5)
    wait = threading.Event()
    while held.is_open:  # the child task's failure ends the owner task
        wait.wait(0.01)
    assert "held 'mcp' exited on its own with an error" in caplog.text
    with pytest.raises(ExceptionGroup) as failed:
        held.close(timeout=5)
    assert failed.group_contains(ConnectionError, match="the server went away")
    held.close(timeout=5)  # reported once


def test_shutdown_logs_a_held_value_that_fails_to_close_and_closes_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []

    def value(tag: str, fails: bool) -> contextlib.AbstractAsyncContextManager[str]:
        @contextlib.asynccontextmanager
        async def cm() -> AsyncIterator[str]:
            yield tag
            closed.append(tag)
            if fails:
                raise OSError(f"{tag} could not close")
        return cm()

    mwloop.hold(lambda: value("first", False), name="first", timeout=5)
    mwloop.hold(lambda: value("second", True), name="second", timeout=5)
    loop = mwloop.get_loop()
    mwloop.shutdown(timeout=5)
    assert closed == ["second", "first"]
    assert "closing held 'second' failed at shutdown" in caplog.text
    assert loop.is_closed()


def test_a_call_still_running_when_the_loop_shuts_down_fails_instead_of_hanging() -> None:
    started = threading.Event()

    async def stubborn() -> None:
        started.set()
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            mwloop.run(stubborn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    loop = mwloop.get_loop()
    mwloop.shutdown(timeout=0.3)
    thread.join(5)
    assert not thread.is_alive()
    [error] = outcome
    assert isinstance(error, RuntimeError)
    assert "shut down before" in str(error) and "stubborn" in str(error)
    assert loop.is_closed()


def test_a_loop_thread_blocked_at_shutdown_is_left_open_and_a_new_loop_serves(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = mwloop.get_loop()
    thread = next(t for t in threading.enumerate() if t.name == "memwarden-loop")
    release = threading.Event()
    blocked = threading.Event()

    def block() -> None:  # a sync call on the loop thread: nothing can run meanwhile
        blocked.set()
        release.wait(10)

    loop.call_soon_threadsafe(block)
    assert blocked.wait(5)
    try:
        mwloop.shutdown(timeout=0.1)
        assert "shutdown did not finish within 0.1 s" in caplog.text
        assert "the loop thread is still busy; the loop is left open" in caplog.text
        assert not loop.is_closed()
        assert mwloop.run(asyncio.sleep(0, "fresh"), timeout=5) == "fresh"
        assert mwloop.get_loop() is not loop
    finally:
        release.set()
        thread.join(5)
        # What shutdown queued behind the blocking call (its drain, cancelled) ends here.
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_shutdown_from_the_loop_thread_raises_instead_of_deadlocking() -> None:
    async def shut() -> None:
        mwloop.shutdown()

    with pytest.raises(RuntimeError, match="cannot run on the worker loop's own thread"):
        mwloop.run(shut(), timeout=5)
    assert mwloop.run(asyncio.sleep(0, "alive"), timeout=5) == "alive"
