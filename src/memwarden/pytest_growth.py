"""``@pytest.mark.limit_growth``: a sync test body run ``warmup + runs`` times.

It fails when a metric grew in *every* measured run, the rule CPython's
refleak hunter uses so that one-off growth (a cache warming up, an interned
string) is not called a leak. Registered by :mod:`memwarden.pytest_plugin`.

The repetition happens inside the test function pytest calls: the hook puts
a repeating function in place of the test before any other implementation
sees it. So plugins that wrap the call once (pytest-memray's tracker, of
which only one may run at a time) wrap all the runs once, and measure them
together.
"""

from __future__ import annotations

import functools
import gc
import inspect
import io
import logging
import sys
import warnings
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from memwarden.pytest_markers import built_or_fail, marker_options, number, signed
from memwarden.see import census as _census
from memwarden.system import probe as _probe

__all__: list[str] = []

_GROWTH_OPTIONS = frozenset({"runs", "warmup", "metric", "min_growth"})

try:
    # caplog's handler class, not public API: a plugin loaded into every session
    # must not break one when pytest moves it.
    from _pytest.logging import LogCaptureHandler as _LogCaptureHandler
except ImportError:  # pragma: no cover - then logging bodies may count as growth
    _LOG_CAPTURE: tuple[type[logging.Handler], ...] = ()
else:
    _LOG_CAPTURE = (_LogCaptureHandler,)


@dataclass(frozen=True, slots=True)
class _GrowthSpec:
    runs: int = 5
    warmup: int = 2
    metric: str = "blocks"
    min_growth: int | float = 1

    @classmethod
    def from_marker(cls, marker: pytest.Mark) -> _GrowthSpec:
        spec = cls(**marker_options(
            marker, _GROWTH_OPTIONS,
            "limit_growth(runs=5, warmup=2, metric='blocks', min_growth=1)"))
        for name in ("runs", "warmup"):
            value = getattr(spec, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        if spec.runs < 1:
            raise ValueError("runs must be >= 1")
        if not isinstance(spec.metric, str) or not spec.metric:
            raise ValueError(f"metric must be a name, not {spec.metric!r}")
        if (isinstance(spec.min_growth, bool) or not isinstance(spec.min_growth, int | float)
                or spec.min_growth <= 0):
            raise ValueError(f"min_growth must be a number > 0, "
                             f"not {spec.min_growth!r}")
        return spec


class _Metric:
    """Reads one metric after a full collection; remembers whether it ever existed."""

    __slots__ = ("name", "read", "seen")

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = True
        if name == "blocks":
            self.read: Callable[[], int | float] = sys.getallocatedblocks
        elif name == "rss":
            probe = _probe.current()
            if probe.rss_bytes() is None:
                raise ValueError("metric 'rss' is unavailable here "
                                 "(no /proc/self/statm); use metric='blocks'")
            self.read = self._rss
        else:
            if name.startswith("asyncio."):
                _census.enable_loop_tracking()
            self.seen = False
            self.read = self._census

    @staticmethod
    def _rss() -> int:
        return _probe.current().rss_bytes() or 0

    def _census(self) -> int | float:
        descendants = self.name in ("children", "children_pss_bytes")
        value = _census.census(descendants=descendants).get(self.name)
        if value is None:
            return 0  # a tracked kind exists only once something is tracked
        self.seen = True
        return value


def _clear_log_capture() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _LOG_CAPTURE):
            # In place: caplog.get_records() holds on to this very list.
            records = getattr(handler, "records", None)
            stream = getattr(handler, "stream", None)
            if isinstance(records, list):
                records.clear()
            if isinstance(stream, io.StringIO):
                stream.seek(0)
                stream.truncate()


def _is_async(item: pytest.Function) -> bool:
    # pytest-asyncio swaps item.obj for a sync shim made with functools.wraps.
    for fn in (item.obj, item.function):
        fn = inspect.unwrap(fn)
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            return True
    return False


def _grew_every_run(deltas: Iterable[int | float], min_growth: int | float) -> bool:
    """CPython's ``-R`` rule: a leak grows in every measured run, noise does not."""
    return all(delta >= min_growth for delta in deltas)


class _Repetition:
    """The test body run ``warmup + runs`` times, each run measured."""

    __slots__ = ("body", "deltas", "metric", "spec")

    def __init__(self, body: Callable[..., object], spec: _GrowthSpec, metric: _Metric) -> None:
        self.body = body
        self.spec = spec
        self.metric = metric
        # Preallocated, so storing a delta does not count as growth of the next run.
        self.deltas: list[int | float] = [0] * (spec.warmup + spec.runs)

    def function(self) -> Callable[..., object]:
        """What pytest calls instead of the body, with the body's fixtures."""
        @functools.wraps(self.body)
        def repeated(*args: Any, **kwargs: Any) -> object:
            return self._run(args, kwargs)
        return repeated

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
        read, deltas, body = self.metric.read, self.deltas, self.body
        caught: list[warnings.WarningMessage] = []
        result: object = None
        try:
            for i in range(len(deltas)):
                gc.collect()
                before = read()
                # Each run starts with fresh log and warning capture, as a call does.
                # pytest keeps the records until the test ends, so without this a
                # body that logs or warns would grow in every run. Dropping the
                # previous run's records inside the window keeps one run's worth
                # alive at both readings.
                _clear_log_capture()
                with warnings.catch_warnings(record=True) as caught:
                    result = body(*args, **kwargs)
                gc.collect()
                deltas[i] = read() - before
        finally:
            for w in caught:  # the last run's warnings go on to pytest's own recorder
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file,
                                     w.line)
        return result

    def judge(self, item: pytest.Function) -> None:
        spec, deltas = self.spec, self.deltas
        if not self.metric.seen:
            known = ", ".join(sorted(_census.census(descendants=True)))
            pytest.fail(f"memwarden: limit_growth metric {spec.metric!r} is not blocks, rss "
                        f"or a census kind (known now: {known})", pytrace=False)
        measured = deltas[spec.warmup:]
        shown = ", ".join(signed(delta) for delta in measured)
        item.user_properties.append(("memwarden.limit_growth", f"{spec.metric}: {shown}"))
        if _grew_every_run(measured, spec.min_growth):
            warm = ", ".join(signed(delta) for delta in deltas[:spec.warmup]) or "none"
            pytest.fail(
                f"memwarden limit_growth: {spec.metric} grew in all {spec.runs} runs: {shown}\n"
                f"  (a run counts as growth at >= {number(spec.min_growth)}; "
                f"warmup runs, not judged: {warm})",
                pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    marker = pyfuncitem.get_closest_marker("limit_growth")
    if marker is None:
        return (yield)
    if _is_async(pyfuncitem):
        pytest.fail(
            f"memwarden: limit_growth repeats a sync test body, and {pyfuncitem.name} is "
            "async, which it does not support. Drive the coroutine from a sync test "
            "(e.g. one asyncio.Runner kept in a fixture) or use no_leaks.",
            pytrace=False)
    spec = built_or_fail("limit_growth", lambda: _GrowthSpec.from_marker(marker))
    metric = built_or_fail("limit_growth", lambda: _Metric(spec.metric))
    body = pyfuncitem.obj
    repetition = _Repetition(body, spec, metric)
    # Outermost wrapper (tryfirst): every other implementation sees the
    # repeating function, never the body, and calls it once.
    pyfuncitem.obj = repetition.function()
    try:
        result = yield
    finally:
        pyfuncitem.obj = body
    repetition.judge(pyfuncitem)
    return result
