"""The protective-action bus: delivery in order, and a failing subscriber contained."""

from __future__ import annotations

import logging

import pytest

from memwarden import events


def test_each_subscriber_gets_each_event_once_in_order(published: list[events.Event]) -> None:
    events.subscribe(published.append)  # subscribing twice is still once
    sent = [events.Recycle(events.SOFT_LIMIT), events.Shed(3, dry_run=True),
            events.PoolRefusal("mcp"), events.PoolDeclared("mcp"), events.OomKill()]
    for event in sent:
        events.publish(event)
    assert published == sent


def test_a_failing_subscriber_is_logged_once_and_stops_nobody(
        published: list[events.Event], caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: events.Event) -> None:
        raise RuntimeError("exporter down")

    after: list[events.Event] = []
    events.subscribe(broken)
    events.subscribe(after.append)
    try:
        with caplog.at_level(logging.ERROR, logger="memwarden.events"):
            events.publish(events.Recycle(events.IDLE, dry_run=True))
            events.publish(events.OomKill(2))
    finally:
        events.unsubscribe(broken)
        events.unsubscribe(after.append)
    expected = [events.Recycle(events.IDLE, dry_run=True), events.OomKill(2)]
    assert published == expected and after == expected
    logged = [r for r in caplog.records if r.name == "memwarden.events"]
    assert len(logged) == 1 and "Recycle" in logged[0].getMessage()


def test_an_unsubscribed_subscriber_hears_nothing_more() -> None:
    got: list[events.Event] = []
    events.subscribe(got.append)
    events.publish(events.Shed())
    events.unsubscribe(got.append)
    events.publish(events.Shed())
    assert got == [events.Shed(1, dry_run=False)]


def test_events_are_frozen() -> None:
    event = events.PoolRefusal("browser", dry_run=True)
    with pytest.raises(AttributeError):
        event.pool = "other"  # type: ignore[misc]
