"""The in-flight records: what a killed worker leaves for its master to read.

A real fork and a real SIGKILL: the child serves a request through the WSGI
tracker and dies inside it; the parent reads the shared area afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from memwarden.see import inflight_slot
from memwarden.see.asgi import AsgiMemoryTracker
from memwarden.see.wsgi import MemoryTracker
from memwarden.settings import Settings


def _area() -> mmap.mmap:
    return mmap.mmap(-1, inflight_slot.SIZE, flags=mmap.MAP_SHARED)


def _environ(path: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
            "HTTP_X_REQUEST_ID": "req-42", "wsgi.url_scheme": "http"}


def _serve(app: Callable[..., Iterable[bytes]], path: str) -> None:
    body = app(_environ(path), lambda status, headers, exc_info=None: None)
    list(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()


def test_a_request_killed_in_flight_is_left_in_the_area() -> None:
    area = _area()

    def dies(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        os.kill(os.getpid(), signal.SIGKILL)
        return []

    before = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            inflight_slot.install(area)
            tracker = MemoryTracker(lambda e, s: [b"ok"], Settings())
            _serve(tracker, "/warm")  # one finished request: its record is given back
            _serve(MemoryTracker(dies, Settings()), "/users/12345/chat")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    records = inflight_slot.read(area)
    assert len(records) == 1
    record = records[0]
    assert record.request_id == "req-42"
    assert record.method == "POST"
    assert record.route == "/users/12345/chat"  # raw: the master makes it safe
    assert not record.route_is_template
    assert before < record.started < time.perf_counter()
    assert record.rss_start_bytes is not None and record.rss_start_bytes > 1 << 20
    assert inflight_slot.busy(area)


def test_finished_requests_leave_nothing_and_records_are_reused() -> None:
    area = _area()
    inflight_slot.install(area)
    try:
        tracker = MemoryTracker(lambda e, s: [b"ok"], Settings())
        for _ in range(3 * inflight_slot.RECORDS):
            _serve(tracker, "/x")
        assert inflight_slot.read(area) == []
        assert not inflight_slot.busy(area)
    finally:
        inflight_slot.uninstall()


def test_an_app_that_raises_gives_its_record_back() -> None:
    area = _area()
    inflight_slot.install(area)

    def fails(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("boom")

    try:
        with contextlib.suppress(RuntimeError):
            _serve(MemoryTracker(fails, Settings()), "/x")
        assert inflight_slot.read(area) == []
    finally:
        inflight_slot.uninstall()


def test_abort_keeps_the_record_and_names_the_route_template() -> None:
    area = _area()
    inflight_slot.install(area)

    def aborted(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["memwarden.route"] = "/users/<int:user_id>/chat"  # as a framework would know it
        inflight_slot.abort()  # what the worker_abort hook does on SIGABRT
        raise SystemExit(1)  # and what gunicorn does next

    try:
        with contextlib.suppress(SystemExit):
            _serve(MemoryTracker(aborted, Settings()), "/users/12345/chat")
        [record] = inflight_slot.read(area)
        assert record.route == "/users/<int:user_id>/chat"
        assert record.route_is_template
        assert record.request_id == "req-42"
    finally:
        inflight_slot.uninstall()


def test_asgi_requests_in_flight_each_have_a_record() -> None:
    area = _area()
    inflight_slot.install(area)
    seen: list[list[inflight_slot.InflightRecord]] = []
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await gate.wait()
        else:
            seen.append(inflight_slot.read(area))
            gate.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request"}

    async def main() -> None:
        tracker = AsgiMemoryTracker(app, Settings())
        slow = asyncio.create_task(tracker({"type": "http", "method": "GET", "path": "/slow",
                                            "headers": []}, receive, send))
        await asyncio.sleep(0)
        await tracker({"type": "http", "method": "GET", "path": "/fast", "headers": []},
                      receive, send)
        await slow

    try:
        asyncio.run(main())
        assert [r.route for r in seen[0]] == ["/slow", "/fast"]
        assert inflight_slot.read(area) == []
    finally:
        inflight_slot.uninstall()


def test_nothing_is_written_without_an_area() -> None:
    assert inflight_slot.writer is None
    assert inflight_slot.begin("id", "GET", "/", 0.0) == -1
    inflight_slot.end(0)  # no area: nothing to clear, no error
    inflight_slot.abort()
