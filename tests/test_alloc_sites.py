"""Allocation sites: tracemalloc diffs every N requests, in this process.

The "app" is a module written to a temporary directory (the app's working
directory for the sampler), whose leak is kept by a standard-library
container, so the site must be the app's line, not the library's.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from memwarden import alloc_sites
from memwarden.alloc_sites import SiteSettings, SiteWindows
from memwarden.see import meter

APP = '''
import collections

_kept = collections.deque()
_temporary = []


def leak():
    _kept.append(bytearray(4096))  # line 9: the leak, kept by a stdlib deque
    _temporary.append(bytearray(50_000))  # line 10: freed below, never growth
    _temporary.clear()
'''


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ModuleType]:
    path = tmp_path / "leaky.py"
    path.write_text(APP)
    spec = importlib.util.spec_from_file_location("leaky_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    meter.set_window_hook(None)
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.memwarden for r in caplog.records  # type: ignore[attr-defined]
            if r.name == "memwarden.tracemalloc" and r.getMessage() == "allocation_sites"]


@pytest.mark.parametrize("frames", [1, 10])
def test_the_app_line_that_keeps_memory_is_the_top_site(
        app: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture, frames: int) -> None:
    caplog.set_level(logging.INFO, "memwarden.tracemalloc")
    windows = SiteWindows(SiteSettings(frames=frames, every=50), root=str(tmp_path))
    windows.start()
    for seq in range(1, 152):
        app.leak()
        # memwarden's own growth in the same windows: an observer list it keeps.
        meter.add_observer(lambda fields, n=seq: None)
        windows(seq)
    for observer in list(meter._observers):
        if getattr(observer, "__defaults__", None):
            meter.remove_observer(observer)
    lines = _lines(caplog)
    assert [(x["seq"], x["window_requests"]) for x in lines] == [(51, 50), (101, 50), (151, 50)]
    for line in lines:
        assert line["pid"] == os.getpid()
        top = line["sites"][0]
        assert top["site"] == "leaky.py:9", line["sites"][:3]
        assert 50 * 4096 <= top["size_diff_bytes"] < 50 * 4096 * 2
        assert top["count_diff"] >= 50
        assert set(top) == {"site", "size_diff_bytes", "count_diff"}
        assert len(line["sites"]) <= alloc_sites.TOP
        assert all(s["size_diff_bytes"] > 0 for s in line["sites"])
        assert not any("memwarden" in s["site"] or "tracemalloc" in s["site"]
                       for s in line["sites"]), line["sites"]
        assert "leaky.py:10" not in {s["site"] for s in line["sites"]}


def test_off_unless_asked_and_bad_values_named() -> None:
    assert SiteSettings.from_env({}) is None
    assert SiteSettings.from_env({"MEMWARDEN_TRACEMALLOC": "0"}) is None
    assert SiteSettings.from_env({"MEMWARDEN_TRACEMALLOC": "off"}) is None
    assert SiteSettings.from_env({"MEMWARDEN_TRACEMALLOC": "25"}) == SiteSettings(25, 250, 0)
    assert SiteSettings.from_env({"MEMWARDEN_TRACEMALLOC": "1",
                                  "MEMWARDEN_TRACEMALLOC_EVERY": "10",
                                  "MEMWARDEN_TRACEMALLOC_WORKERS": "1"}) == SiteSettings(1, 10, 1)
    for env in ({"MEMWARDEN_TRACEMALLOC": "many"}, {"MEMWARDEN_TRACEMALLOC": "101"},
                {"MEMWARDEN_TRACEMALLOC": "-1"},
                {"MEMWARDEN_TRACEMALLOC": "5", "MEMWARDEN_TRACEMALLOC_EVERY": "0"},
                {"MEMWARDEN_TRACEMALLOC": "5", "MEMWARDEN_TRACEMALLOC_WORKERS": "x"}):
        with pytest.raises(ValueError) as info:
            SiteSettings.from_env(env)
        name = max((k for k in env if env[k] in str(info.value)), key=len)
        assert str(info.value).startswith(f"{name}={env[name]!r}: ")


def test_a_bad_value_leaves_sampling_off_with_one_error(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "memwarden.tracemalloc")
    try:
        assert alloc_sites.configure({"MEMWARDEN_TRACEMALLOC": "lots"}) is None
        assert alloc_sites.start_in_worker(0) is None
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "MEMWARDEN_TRACEMALLOC='lots'" in record.getMessage()
    finally:
        alloc_sites.configure({})


def test_only_the_first_workers_are_sampled_when_asked() -> None:
    try:
        alloc_sites.configure({"MEMWARDEN_TRACEMALLOC": "1", "MEMWARDEN_TRACEMALLOC_WORKERS": "1"})
        assert alloc_sites.start_in_worker(1) is None
        assert alloc_sites.start_in_worker(None) is None
        windows = alloc_sites.start_in_worker(0)
        assert windows is not None and meter._window_hook is windows
        assert not tracemalloc.is_tracing()  # from the first request on
        windows(1)
        assert tracemalloc.is_tracing()
        windows.stop()
        assert meter._window_hook is None
    finally:
        alloc_sites.configure({})
        if tracemalloc.is_tracing():
            tracemalloc.stop()
