"""The ASGI tracker's send wrapper, in process: what the server receives, what
the app's own messages keep, and when the response is measured."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from memwarden.see import meter
from memwarden.see.asgi import AsgiMemoryTracker
from memwarden.see.meter import RequestMeter
from memwarden.settings import Settings

Message = dict[str, Any]


class _Route:
    path = "/items/{item_id}"


class OrderedMeter(RequestMeter):
    """Notes in ``events`` when the response is measured."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(Settings())
        self.events = events

    def readings(self) -> tuple[float, int | None, int | None]:
        self.events.append("measured")
        return super().readings()


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    observer = seen.append
    meter.add_observer(observer)
    try:
        yield seen
    finally:
        meter.remove_observer(observer)


def scope(path: str = "/items/7") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [(b"host", b"x")]}


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_the_server_gets_the_request_id_and_the_apps_message_is_left_alone(
        lines: list[dict[str, Any]]) -> None:
    start: Message = {"type": "http.response.start", "status": 201,
                      "headers": [(b"content-type", b"text/plain")]}
    app_headers = start["headers"]

    async def app(s: dict[str, Any], r: Any, send: Any) -> None:
        s["route"] = _Route()
        await send(start)
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(AsgiMemoryTracker(app, Settings())(scope(), receive, send))
    assert start == {"type": "http.response.start", "status": 201,
                     "headers": [(b"content-type", b"text/plain")]}
    assert start["headers"] is app_headers
    assert len(lines) == 1
    line = lines[0]
    request_id = line["request_id"]
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"),
                                  (b"x-request-id", request_id.encode())]
    assert sent[0]["status"] == 201
    assert (line["status"], line["method"], line["route"]) == (201, "GET", "/items/{item_id}")


def test_body_parts_pass_through_and_the_response_is_measured_once_its_last_part_is_sent(
        lines: list[dict[str, Any]]) -> None:
    events: list[str] = []
    part: Message = {"type": "http.response.body", "body": b"a", "more_body": True}

    async def app(s: dict[str, Any], r: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(part)
        await send({"type": "http.response.body", "body": b"b"})
        events.append("app returned")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        await asyncio.sleep(0)  # the server's send yields to the loop
        sent.append(message)
        events.append(f"sent {message['type']}")

    tracker = AsgiMemoryTracker(app, meter=OrderedMeter(events))
    asyncio.run(tracker(scope(), receive, send))
    assert sent[1] is part
    assert events == ["sent http.response.start", "sent http.response.body",
                      "sent http.response.body", "measured", "app returned"]
    assert len(lines) == 1


def test_other_scopes_pass_straight_through(lines: list[dict[str, Any]]) -> None:
    seen: list[Any] = []

    async def app(s: dict[str, Any], r: Any, send: Any) -> None:
        seen.append(send)

    async def send(message: Message) -> None:
        pass

    asyncio.run(AsgiMemoryTracker(app, Settings())({"type": "lifespan"}, receive, send))
    assert seen == [send]
    assert lines == []
