"""pytest plugin: leak tests in the spirit of Go's goleak and CPython's ``-R``.

``@pytest.mark.no_leaks`` (or the ``no_leaks`` fixture) fails a test that leaves
threads, fds, child processes, asyncio tasks, open event loops or live objects
of a kind registered with :func:`memwarden.see.census.track` behind it.

``@pytest.mark.limit_growth`` runs a sync test body ``warmup + runs`` times
within the same fixtures and fails when a metric grew in *every* measured run,
the rule CPython's refleak hunter uses so that one-off growth (a cache warming
up, an interned string) is not called a leak (:mod:`memwarden.pytest_growth`).

Every test also hears the protective actions (recycles, sheds, pool refusals,
orphans reaped) published in this process while it runs: its report and a
no_leaks failure name them, and the session ends with a list of the tests
that had any (:mod:`memwarden.pytest_actions`).

The plugin loads through the ``pytest11`` entry point and costs a marker lookup
and a bus subscription per test when neither marker nor fixture is used.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

# limit_growth lives in its own module; its hook is registered from here.
from memwarden.pytest_actions import ActionLog
from memwarden.pytest_growth import _grew_every_run as _grew_every_run
from memwarden.pytest_growth import pytest_pyfunc_call as pytest_pyfunc_call
from memwarden.pytest_leaks import Leak as Leak
from memwarden.pytest_leaks import LeakCheck
from memwarden.pytest_markers import built_or_fail
from memwarden.pytest_snapshot import DEFAULT_KINDS
from memwarden.see import census as _census

__all__ = ["Leak", "LeakCheck"]

_CALL_PASSED = pytest.StashKey[bool]()
_ACTIONS = pytest.StashKey[ActionLog]()
# (test id, its actions) for the session's closing list.
_ACTED = pytest.StashKey[list[tuple[str, str]]]()


@pytest.fixture(autouse=True)
def _memwarden_no_leaks_guard(request: pytest.FixtureRequest) -> Iterator[LeakCheck | None]:
    # Autouse from a plugin, so it is the first function-scoped fixture set up
    # and the last torn down: the baseline includes session/module fixtures,
    # and the check runs after the test's own fixtures have cleaned up.
    marker = request.node.get_closest_marker("no_leaks")
    if marker is None and "no_leaks" not in request.fixturenames:
        yield None
        return
    yield from _guard(request, marker)


def _guard(request: pytest.FixtureRequest, marker: pytest.Mark | None) -> Iterator[LeakCheck]:
    check = built_or_fail("no_leaks", lambda: LeakCheck.from_marker(marker))
    request.node.stash[_CALL_PASSED] = False
    check.start()
    yield check
    # A failed test already says what is wrong, and its traceback keeps frames
    # (and whatever they hold) alive: a leak report would only add noise.
    if not request.node.stash.get(_CALL_PASSED, False):
        return
    found = check.wait()
    unknown = check.unknown_kinds()
    if unknown:
        pytest.fail(f"memwarden: no_leaks kinds names unknown kind(s) {', '.join(unknown)}: "
                    f"not one of {', '.join(DEFAULT_KINDS)}, a tracked kind or a gauge",
                    pytrace=False)
    if found:
        message = check.message(found)
        actions = request.node.stash.get(_ACTIONS, None)
        if actions:
            message += f"\n  protective actions during the test: {actions.summary()}"
        pytest.fail(message, pytrace=False)


@pytest.fixture
def no_leaks(request: pytest.FixtureRequest,
             _memwarden_no_leaks_guard: LeakCheck | None) -> Iterator[LeakCheck]:
    """Fail the test if it leaves threads, fds, children, asyncio tasks or loops,
    or tracked objects behind (as ``@pytest.mark.no_leaks`` with its defaults)."""
    if _memwarden_no_leaks_guard is not None:
        yield _memwarden_no_leaks_guard
    else:
        # Requested late through request.getfixturevalue(): check from here on.
        yield from _guard(request, request.node.get_closest_marker("no_leaks"))


# -- wiring ----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "no_leaks(settle=2.0, ignore=(), kinds=None): fail the test if, after garbage "
        "collection and up to `settle` seconds of waiting, it left threads, fds, child "
        "processes, asyncio tasks, open event loops or memwarden-tracked objects behind. "
        "`ignore` takes kind names and 'thread:', 'fd:', 'child:' name prefixes; `kinds` "
        "limits the check to the kinds named (memwarden).")
    config.addinivalue_line(
        "markers",
        "limit_growth(runs=5, warmup=2, metric='blocks', min_growth=1): run the sync test "
        "body warmup+runs times and fail if `metric` (blocks, rss or a census kind) grew "
        "by at least `min_growth` in every measured run (memwarden).")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Loop tracking is opt-in in the library; a session that checks for leaks opts in,
    # early, so loops made by fixtures are counted as well.
    for item in items:
        if (item.get_closest_marker("no_leaks") is not None
                or "no_leaks" in getattr(item, "fixturenames", ())):
            _census.enable_loop_tracking()
            return


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    # Listen from setup to teardown: fixtures act too (a pool closed, a server shed).
    actions = item.stash[_ACTIONS] = ActionLog()
    actions.start()
    try:
        return (yield)
    finally:
        actions.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    actions = item.stash.get(_ACTIONS, None)
    if call.when == "teardown" and actions:
        item.user_properties.append(("memwarden_actions", actions.summary()))
        item.config.stash.setdefault(_ACTED, []).append((item.nodeid, actions.summary()))
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
        if actions:
            report.sections.append(("memwarden actions", actions.summary()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    acted = terminalreporter.config.stash.get(_ACTED, [])
    if acted:
        terminalreporter.write_sep("-", "memwarden: protective actions during tests")
        for nodeid, summary in acted:
            terminalreporter.write_line(f"{nodeid}: {summary}")
