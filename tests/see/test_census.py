"""Resource census: tracked objects, gauges, event loops and tasks, gc type counts."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from memwarden.see import census as census_mod
from memwarden.see.census import (
    census,
    enable_loop_tracking,
    gauge,
    remove_gauge,
    track,
    tracked_count,
    untrack_kind,
)
from memwarden.system.probe import Probe

KIND = "test_census.widgets"


class Widget:
    pass


class CensusMarkerType:  # a type name nothing else in the process uses
    pass


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    yield
    untrack_kind(KIND)
    for name in list(census_mod._gauges):
        if name.startswith("test_census."):
            remove_gauge(name)


@pytest.fixture
def loop_tracking() -> Iterator[None]:
    """Turn loop tracking on for one test and restore the previous state after."""
    was_on = census_mod._loop_tracking_on
    original_init = asyncio.BaseEventLoop.__init__
    enable_loop_tracking()
    yield
    if not was_on:
        asyncio.BaseEventLoop.__init__ = original_init  # type: ignore[method-assign]
        census_mod._loop_tracking_on = False


def quick() -> dict[str, int | float]:
    return census(Probe(), descendants=False)


def test_track_counts_live_objects_and_drops_them_when_collected() -> None:
    widgets = [Widget() for _ in range(5)]
    for w in widgets:
        track(w, KIND)
    del w  # the loop variable would keep the last one alive
    assert tracked_count(KIND) == 5
    assert quick()[KIND] == 5
    del widgets[:2]
    assert tracked_count(KIND) == 3
    # An object in a reference cycle goes only when the collector runs.
    cyclic = Widget()
    cyclic.self = cyclic  # type: ignore[attr-defined]
    track(cyclic, KIND)
    assert tracked_count(KIND) == 4
    del cyclic
    gc.collect()
    assert tracked_count(KIND) == 3
    widgets.clear()
    assert quick()[KIND] == 0


def test_tracking_holds_no_strong_reference_and_counts_an_object_once() -> None:
    w = Widget()
    track(w, KIND)
    track(w, KIND)
    assert tracked_count(KIND) == 1
    del w  # the last strong reference: freed at once, so no longer counted
    assert tracked_count(KIND) == 0


def test_untrack_kind_forgets_the_kind_and_unknown_kinds_count_zero() -> None:
    w = Widget()
    track(w, KIND)
    untrack_kind(KIND)
    assert tracked_count(KIND) == 0
    assert KIND not in quick()
    assert tracked_count("test_census.never_tracked") == 0


def test_objects_without_weak_reference_support_are_skipped_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """track() never raises inside a request: an int cannot be weakly referenced."""
    with caplog.at_level(logging.WARNING, logger="memwarden.census"):
        track(42, KIND)
        track(43, KIND)
    assert tracked_count(KIND) == 0
    assert len([r for r in caplog.records if "cannot track" in r.getMessage()]) == 1


def test_unhashable_objects_are_tracked() -> None:
    """Dataclasses with __eq__ have no __hash__ (mcp.Client is one); they are counted."""

    @dataclasses.dataclass
    class Client:
        url: str

    clients = [Client("a"), Client("a")]
    for client in clients:
        track(client, KIND)
    assert tracked_count(KIND) == 2
    del clients[0]
    gc.collect()
    assert tracked_count(KIND) == 1


def test_gauge_values_appear_in_the_census() -> None:
    sizes = {"n": 3}
    gauge("test_census.sessions", lambda: sizes["n"])
    gauge("test_census.ratio", lambda: 0.25)
    assert quick()["test_census.sessions"] == 3
    sizes["n"] = 12
    result = quick()
    assert result["test_census.sessions"] == 12
    assert result["test_census.ratio"] == 0.25
    remove_gauge("test_census.sessions")
    assert "test_census.sessions" not in quick()


def test_gauges_returning_none_bools_non_numbers_or_non_finite_floats_are_omitted() -> None:
    for name, value in (("none", None), ("bool", True), ("text", "7"), ("nan", math.nan),
                        ("inf", math.inf), ("ninf", -math.inf)):
        gauge(f"test_census.{name}", lambda value=value: value)
    result = quick()
    assert not [key for key in result if key.startswith("test_census.")]


def test_a_raising_gauge_is_omitted_and_logs_once_until_it_recovers(
        caplog: pytest.LogCaptureFixture) -> None:
    state = {"fail": True}

    def flaky() -> int:
        if state["fail"]:
            raise ConnectionError("store down")
        return 5

    gauge("test_census.flaky", flaky)
    gauge("test_census.steady", lambda: 1)
    with caplog.at_level(logging.WARNING, logger="memwarden.census"):
        for _ in range(3):
            result = quick()
            assert "test_census.flaky" not in result
            assert result["test_census.steady"] == 1
        warnings = [r for r in caplog.records if r.name == "memwarden.census"]
        assert len(warnings) == 1
        assert "test_census.flaky" in warnings[0].getMessage()
        assert warnings[0].exc_info is not None
        state["fail"] = False
        assert quick()["test_census.flaky"] == 5
        state["fail"] = True
        quick()
        quick()
    assert len([r for r in caplog.records if r.name == "memwarden.census"]) == 2


def test_loop_tracking_counts_open_loops_and_drops_back_after_close(loop_tracking: None) -> None:
    base = quick()
    loops = [asyncio.new_event_loop() for _ in range(3)]
    try:
        assert quick()["asyncio.loops"] == base["asyncio.loops"] + 3
        loops[0].close()
        loops[1].close()
        after_two = quick()
        assert after_two["asyncio.loops"] == base["asyncio.loops"] + 1
        # Closed but still referenced: alive, not open.
        assert after_two["asyncio.loops_alive"] >= base["asyncio.loops_alive"] + 3
    finally:
        for loop in loops:
            loop.close()
    assert quick()["asyncio.loops"] == base["asyncio.loops"]
    del loops, loop
    gc.collect()
    assert quick()["asyncio.loops_alive"] == base["asyncio.loops_alive"]


def test_loops_made_by_asyncio_run_are_seen_while_running(loop_tracking: None) -> None:
    base = quick()["asyncio.loops"]

    async def main() -> dict[str, int | float]:
        return quick()

    during = asyncio.run(main())
    assert during["asyncio.loops"] == base + 1
    assert during["asyncio.tasks"] >= 1  # main() itself
    assert quick()["asyncio.loops"] == base


def test_pending_tasks_are_counted_and_finished_ones_are_not(loop_tracking: None) -> None:
    base = quick()["asyncio.tasks"]
    loop = asyncio.new_event_loop()
    try:
        tasks = [loop.create_task(asyncio.sleep(60)) for _ in range(4)]
        assert quick()["asyncio.tasks"] == base + 4
        tasks[0].cancel()
        loop.run_until_complete(asyncio.gather(tasks[0], return_exceptions=True))
        assert quick()["asyncio.tasks"] == base + 3
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        assert quick()["asyncio.tasks"] == base
    finally:
        loop.close()


def test_enable_loop_tracking_is_idempotent(loop_tracking: None) -> None:
    wrapped = asyncio.BaseEventLoop.__init__
    enable_loop_tracking()
    assert asyncio.BaseEventLoop.__init__ is wrapped
    loop = asyncio.new_event_loop()
    try:
        assert list(census_mod._loops).count(loop) == 1
    finally:
        loop.close()


def test_gc_types_gives_gc_type_keys_with_exact_counts() -> None:
    markers = [CensusMarkerType() for _ in range(1234)]
    everything = census(Probe(), descendants=False, gc_types=1_000_000)
    assert everything["gc.CensusMarkerType"] == 1234
    del markers
    assert "gc.CensusMarkerType" not in census(Probe(), descendants=False, gc_types=1_000_000)


def test_gc_types_keeps_the_n_most_common_types_in_order() -> None:
    result = census(Probe(), descendants=False, gc_types=3)
    gc_keys = [key for key in result if key.startswith("gc.")]
    assert len(gc_keys) == 3
    counts = [result[key] for key in gc_keys]
    assert counts == sorted(counts, reverse=True)
    actual = Counter(type(obj).__name__ for obj in gc.get_objects())
    fourth = actual.most_common(4)[3][1]
    assert min(counts) >= fourth * 0.9  # the census walk itself shifts counts a little
    assert not [key for key in quick() if key.startswith("gc.")]  # off by default


def test_census_has_builtin_counters_from_the_real_process(tmp_path: Path) -> None:
    result = census(Probe(), descendants=False)
    assert result["threads"] >= 1
    assert result["fds"] >= 3
    assert result["blocks"] > 0
    assert "children" not in result
    with open(tmp_path / "f", "w"):
        assert census(Probe(), descendants=False)["fds"] == result["fds"] + 1


def test_census_counts_real_children_and_their_pss() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        oracle_before = len(psutil.Process().children(recursive=True))
        result = census(Probe())
        oracle_after = len(psutil.Process().children(recursive=True))
        assert oracle_before == oracle_after
        assert result["children"] == oracle_after
        assert result["children_pss_bytes"] > 0
    finally:
        child.kill()
        child.wait()


def test_census_omits_unavailable_probes_instead_of_giving_null(tmp_path: Path) -> None:
    result = census(Probe(proc_root=str(tmp_path / "absent")))
    assert "fds" not in result
    assert "children" not in result and "children_pss_bytes" not in result
    assert result["threads"] >= 1  # threading's own count stands in
    assert all(value is not None for value in result.values())
