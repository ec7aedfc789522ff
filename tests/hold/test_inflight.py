"""The master's reading of a dead worker's in-flight records, with a real fork.

gunicorn's worker object is stood in for by a namespace carrying what the
master reads from it (``age``, ``pid``, ``aborted``); the worker is a real
forked process that serves a request through the WSGI tracker and is killed
inside it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from memwarden import events
from memwarden.hold.exits import ExitStatus
from memwarden.hold.inflight import InflightWatch, death_cause
from memwarden.see import inflight_slot
from memwarden.see.wsgi import MemoryTracker
from memwarden.settings import Settings


def _worker_dies_in(watch: InflightWatch, worker: SimpleNamespace, path: str) -> ExitStatus:
    """Fork a worker that adopts its area and is SIGKILLed inside a request to ``path``."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        os.kill(os.getpid(), signal.SIGKILL)
        return []

    watch.pre_fork(worker)
    pid = os.fork()
    if pid == 0:
        try:
            watch.adopt(worker)
            MemoryTracker(app, Settings())(
                {"REQUEST_METHOD": "DELETE", "PATH_INFO": path, "HTTP_X_REQUEST_ID": "r-7"},
                lambda *a: None)
        finally:
            os._exit(3)
    worker.pid = pid
    _, status = os.waitpid(pid, 0)
    return ExitStatus.from_wait(status)


@pytest.fixture
def published() -> Any:
    seen: list[events.Event] = []
    events.subscribe(seen.append)
    yield seen
    events.unsubscribe(seen.append)


def test_a_death_mid_request_is_logged_and_published(
        caplog: pytest.LogCaptureFixture, published: list[events.Event]) -> None:
    watch = InflightWatch()
    worker = SimpleNamespace(age=1, pid=0, aborted=False)
    status = _worker_dies_in(watch, worker, "/users/8812734/orders/550e8400-e29b-41d4")
    caplog.set_level(logging.INFO, "memwarden.recycle")
    watch.died(worker, status, oom=False)
    [record] = [r for r in caplog.records if r.getMessage() == "death_in_flight"]
    fields = record.memwarden  # type: ignore[attr-defined]
    assert fields["pid"] == worker.pid and fields["cause"] == "signal"
    assert fields["signal"] == "SIGKILL" and fields["method"] == "DELETE"
    assert fields["request_id"] == "r-7"
    # The raw path never reaches the line: its ids are <var>, as on request lines.
    assert fields["route"] == "/users/<var>/orders/<var>"
    assert 0 <= fields["seconds"] < 10
    assert "footprint_last_bytes" not in fields  # no master tick fell inside it
    [event] = [e for e in published if isinstance(e, events.DeathInFlight)]
    assert event == events.DeathInFlight("signal", "/users/<var>/orders/<var>", "r-7",
                                         fields["seconds"])


def test_the_oom_killer_and_a_timeout_are_named_as_such() -> None:
    killed = ExitStatus(signal=signal.SIGKILL)
    worker = SimpleNamespace(aborted=False)
    assert death_cause(worker, killed, oom=True) == ("oom_kill", "SIGKILL")
    assert death_cause(worker, killed, oom=False) == ("signal", "SIGKILL")
    assert death_cause(worker, ExitStatus(signal=signal.SIGSEGV), oom=False) == (
        "signal", "SIGSEGV")
    aborted = SimpleNamespace(aborted=True)
    # gunicorn's SIGABRT handler exits the worker with status 1; or SIGKILL came next.
    assert death_cause(aborted, ExitStatus(exit_code=1), oom=False) == ("timeout", "SIGABRT")
    assert death_cause(aborted, killed, oom=False) == ("timeout", "SIGKILL")
    # Exiting by itself is no death in flight.
    assert death_cause(worker, ExitStatus(exit_code=0), oom=False) is None
    assert death_cause(worker, None, oom=False) is None


def test_an_exit_of_its_own_names_nothing_even_with_a_record_left(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = InflightWatch()
    worker = SimpleNamespace(age=1, pid=0, aborted=False)
    _worker_dies_in(watch, worker, "/x")
    caplog.set_level(logging.INFO, "memwarden.recycle")
    watch.died(worker, ExitStatus(exit_code=0), oom=False)
    assert [r for r in caplog.records if r.getMessage() == "death_in_flight"] == []


def test_indexes_are_the_lowest_free_and_areas_go_with_their_workers() -> None:
    watch = InflightWatch()
    workers = [SimpleNamespace(age=age, pid=100 + age, aborted=False) for age in (1, 2, 3)]
    for w in workers:
        watch.pre_fork(w)
    assert [watch.index(w) for w in workers] == [0, 1, 2]
    watch.died(workers[1], ExitStatus(exit_code=0), oom=False)
    replacement = SimpleNamespace(age=4, pid=104, aborted=False)
    watch.pre_fork(replacement)
    assert watch.index(replacement) == 1  # its predecessor's
    # A worker gunicorn no longer lists (its child_exit missed) loses its area at a tick.
    watch.sample({w.pid: w for w in (workers[0], replacement)})
    assert watch.index(workers[2]) is None
    watch.close()


def test_the_masters_reading_counts_only_when_taken_during_the_request(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    watch = InflightWatch(clock=lambda: now[0])
    worker = SimpleNamespace(age=1, pid=0, aborted=False)
    status = _worker_dies_in(watch, worker, "/x")
    # A reading stamped after the request started (the worker stamped perf_counter).
    now[0] = time.perf_counter()
    watch._last[worker.pid] = (now[0], 123 << 20)
    caplog.set_level(logging.INFO, "memwarden.recycle")
    watch.died(worker, status, oom=False)
    [record] = [r for r in caplog.records if r.getMessage() == "death_in_flight"]
    assert record.memwarden["footprint_last_bytes"] == 123 << 20  # type: ignore[attr-defined]
    assert inflight_slot.writer is None  # the master never writes records itself
