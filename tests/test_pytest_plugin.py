"""The memwarden pytest plugin, driven through pytester in real pytest subprocesses.

Each inner test module leaks real resources through ``leaked`` (below), whose
``release`` is the module's ``teardown_module``: it runs after the plugin's
check, so the check sees the leak and nothing outlives the inner run.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from memwarden.pytest_plugin import Leak, _grew_every_run

pytest_plugins = ["pytester"]


# Importable by the inner tests: what they leak on purpose, kept until release().
LEAKED = """
    import asyncio
    import os
    import subprocess
    import threading

    _RELEASE = threading.Event()
    _THREADS = []
    _FDS = []
    _CHILDREN = []
    _LOOPS = []

    def thread(name):  # runs until release()
        started = threading.Thread(target=_RELEASE.wait, name=name)
        started.start()
        _THREADS.append(started)

    def fd():
        _FDS.append(os.open(os.devnull, os.O_RDONLY))

    def pipe():
        _FDS.extend(os.pipe())

    def child(*argv, **popen):
        process = subprocess.Popen(list(argv), **popen)
        _CHILDREN.append(process)
        return process

    def loop():  # left open; its tasks cancelled and run out at release()
        _LOOPS.append(asyncio.new_event_loop())
        return _LOOPS[-1]

    def release():
        _RELEASE.set()
        for started in _THREADS:
            started.join()
        for process in _CHILDREN:
            process.kill()
            process.wait()
            if process.stdin is not None:
                process.stdin.close()
        for number in _FDS:
            os.close(number)
        for opened in _LOOPS:
            for task in asyncio.all_tasks(opened):
                task.cancel()
            opened.run_until_complete(asyncio.sleep(0))
            opened.close()
"""


def run_inner(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run ``source`` as test_inner.py, with ``pytest`` and ``leaked`` imported and
    ``leaked.release`` as the module's teardown."""
    inner = textwrap.dedent(source)
    pytester.makepyfile(leaked=textwrap.dedent(LEAKED), test_inner=(
        f"import leaked\nimport pytest\n{inner}\n\nteardown_module = leaked.release\n"))
    # A subprocess per run: leaked threads, fds and loop tracking stay out of this process.
    return pytester.runpytest_subprocess("--strict-markers", "-W", "error", "-rA", *args)


# -- no_leaks ------------------------------------------------------------------------


def test_no_leaks_fails_on_a_thread_left_running_and_names_it(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(settle=0.2)
        def test_leaky():
            leaked.thread("leaky-worker")
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r".*memwarden no_leaks: leaked threads \+1 \(still there after a 0\.2 s settle\)",
        r"\s+threads: (\d+) -> \d+ \(\+1\): leaky-worker$",
    ])


def test_no_leaks_fails_on_fds_kept_open_and_names_what_they_point_to(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(settle=0.2)
        def test_leaky():
            leaked.pipe()
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r"\s+fds: (\d+) -> \d+ \(\+2\): pipe:\[(\d+)\], pipe:\[\2\]$",
    ])


def test_no_leaks_fails_on_a_child_process_left_running_with_its_pid_and_cmdline(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(settle=0.2)
        def test_leaky():
            print("child pid", leaked.child("sleep", "30").pid)
    """)
    result.assert_outcomes(passed=1, errors=1)
    pid = re.search(r"child pid (\d+)", result.stdout.str())
    assert pid is not None
    result.stdout.re_match_lines([
        rf"\s+children: 0 -> 1 \(\+1\): pid {pid.group(1)} \(sleep 30\)$",
    ])


def test_no_leaks_fails_on_an_unclosed_event_loop_its_pending_task_and_its_fds(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import asyncio

        async def sleeper():
            await asyncio.sleep(30)

        @pytest.mark.no_leaks(settle=0.2)
        def test_leaky():
            leaked.loop().create_task(sleeper(), name="sleeper-task")
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r".*leaked fds \+3, asyncio.loops \+1, asyncio.tasks \+1 .*",
        r"\s+fds: \d+ -> \d+ \(\+3\): anon_inode:\[eventpoll\], socket:\[\d+\], socket:\[\d+\]$",
        r"\s+asyncio.loops: 0 -> 1 \(\+1\): <_UnixSelectorEventLoop running=False closed=False.*",
        r"\s+asyncio.tasks: 0 -> 1 \(\+1\): sleeper-task \(sleeper\)$",
    ])


def test_no_leaks_fails_on_live_objects_of_a_tracked_kind(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        from memwarden.see import census

        class BrowserContext:
            def __repr__(self):
                return "<BrowserContext>"

        KEPT = []

        @pytest.mark.no_leaks(settle=0.2)
        def test_leaky():
            for _ in range(3):
                context = BrowserContext()
                census.track(context, "playwright.contexts")
                KEPT.append(context)
            # Tracked and released within the test: not a leak.
            census.track(BrowserContext(), "playwright.contexts")
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r"\s+playwright.contexts: 0 -> 3 \(\+3\): "
        r"<BrowserContext>, <BrowserContext>, <BrowserContext>$",
    ])


def test_no_leaks_passes_a_test_that_cleans_up_after_itself(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import asyncio
        import os
        import subprocess
        import threading

        @pytest.mark.no_leaks
        def test_clean():
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
            read_end, write_end = os.pipe()
            os.close(read_end)
            os.close(write_end)
            subprocess.run(["true"], check=True)
            asyncio.run(asyncio.sleep(0))
    """)
    result.assert_outcomes(passed=1)
    assert "memwarden no_leaks" not in result.stdout.str()


def test_no_leaks_fixture_without_marker_applies_the_default_check(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        def test_clean(no_leaks):
            assert no_leaks.settle == 2.0

        def test_leaky(no_leaks):
            no_leaks.settle = 0.2
            leaked.fd()
    """)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.re_match_lines([r"\s+fds: \d+ -> \d+ \(\+1\): /dev/null$"])


def test_no_leaks_ignore_by_kind_skips_that_kind_only(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(settle=0.2, ignore=("threads",))
        def test_thread_ignored():
            leaked.thread("worker")

        @pytest.mark.no_leaks(settle=0.2, ignore="threads")
        def test_fd_still_checked():
            leaked.fd()
    """)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.re_match_lines([r"ERROR test_inner.py::test_fd_still_checked .*"])


def test_no_leaks_ignore_thread_prefix_skips_only_threads_named_so(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(settle=0.2, ignore=("thread:pydevd",))
        def test_debugger_thread_ignored():
            leaked.thread("pydevd.Reader")

        @pytest.mark.no_leaks(settle=0.2, ignore=("thread:pydevd",))
        def test_other_thread_reported():
            leaked.thread("pydevd.Writer")
            leaked.thread("app-worker")
    """)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.re_match_lines([
        r".*memwarden no_leaks: leaked threads \+1 .*",  # the ignored thread is not counted
        r"\s+threads: \d+ -> \d+ \(\+2\): app-worker$",
    ])


def test_no_leaks_ignore_child_prefix_matches_the_command_line(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import subprocess

        @pytest.mark.no_leaks(settle=0.2, ignore="child:sleep 3")
        def test_leaky():
            leaked.child("sleep", "30")  # ignored
            leaked.child("cat", stdin=subprocess.PIPE)
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r".*memwarden no_leaks: leaked fds \+1, children \+1 .*",
        r"\s+children: 0 -> 2 \(\+2\): pid \d+ \(cat\)$",
    ])


def test_no_leaks_kinds_limits_the_check_to_the_kinds_named(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        from memwarden.see import census

        SESSIONS = {}
        census.gauge("sessions", lambda: len(SESSIONS))

        @pytest.mark.no_leaks(settle=0.2, kinds=("sessions",))
        def test_gauge_checked():
            leaked.fd()  # fds are not checked here
            SESSIONS["user-1"] = {"history": []}
    """)
    result.assert_outcomes(passed=1, errors=1)
    output = result.stdout.str()
    assert re.search(r"^\s+sessions: 0 -> 1 \(\+1\)$", output, re.MULTILINE)
    assert "fds:" not in output


def test_no_leaks_rejects_a_kind_no_census_knows(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(kinds=("fd",))
        def test_typo():
            pass
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([r".*no_leaks kinds names unknown kind\(s\) fd: not one of .*"])


def test_no_leaks_waits_for_a_thread_that_finishes_within_the_settle_period(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import threading
        import time

        @pytest.mark.no_leaks
        def test_thread_finishes_after_the_test():
            threading.Thread(target=time.sleep, args=(0.3,), name="slow").start()
    """)
    result.assert_outcomes(passed=1)


def test_no_leaks_reports_a_thread_still_running_when_settle_is_shorter(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import threading
        import time

        @pytest.mark.no_leaks(settle=0.05)
        def test_thread_outlives_the_settle():
            threading.Thread(target=time.sleep, args=(0.5,), name="slow").start()
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([r"\s+threads: \d+ -> \d+ \(\+1\): slow$"])


def test_no_leaks_baseline_includes_module_fixtures_and_function_fixtures_clean_up_first(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import os
        import threading

        @pytest.fixture(scope="module")
        def server():
            stop = threading.Event()
            thread = threading.Thread(target=stop.wait, name="module-server")
            thread.start()
            yield thread
            stop.set()
            thread.join()

        @pytest.fixture
        def scratch_fd():
            fd = os.open(os.devnull, os.O_RDONLY)
            yield fd
            os.close(fd)

        @pytest.mark.no_leaks(settle=0.2)
        def test_uses_both(scratch_fd, server):
            assert server.is_alive()
    """)
    result.assert_outcomes(passed=1)


def test_no_leaks_does_not_report_leaks_of_a_test_that_already_failed(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(settle=0.2)
        def test_fails():
            leaked.fd()
            assert False, "the test's own failure"
    """)
    result.assert_outcomes(failed=1)
    assert "memwarden no_leaks" not in result.stdout.str()


def test_no_leaks_rejects_unknown_options_with_the_valid_ones(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.no_leaks(setle=1.0)
        def test_typo():
            pass
    """)
    result.assert_outcomes(errors=1)
    result.stdout.re_match_lines([
        r".*memwarden: bad no_leaks marker: unknown option\(s\) setle "
        r"\(options: ignore, kinds, settle\)",
    ])


# -- limit_growth ----------------------------------------------------------------------


def test_limit_growth_fails_when_blocks_grow_in_every_run_and_reports_each_delta(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        KEPT = []

        @pytest.mark.limit_growth
        def test_appends_every_run():
            KEPT.extend(object() for _ in range(1000))
    """)
    result.assert_outcomes(failed=1)
    match = re.search(r"blocks grew in all 5 runs: (.*)$", result.stdout.str(), re.MULTILINE)
    assert match is not None
    deltas = [int(delta) for delta in match.group(1).split(", ")]
    assert len(deltas) == 5
    assert all(950 <= delta <= 1100 for delta in deltas), deltas


def test_limit_growth_passes_a_lazy_cache_filled_on_the_first_call(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        CACHE = {}

        @pytest.mark.limit_growth
        def test_lazy_cache():
            if "table" not in CACHE:
                CACHE["table"] = [object() for _ in range(5000)]
    """)
    result.assert_outcomes(passed=1)


def test_limit_growth_passes_a_body_that_does_not_grow(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.limit_growth(runs=8, warmup=1)
        def test_no_growth():
            scratch = [object() for _ in range(1000)]
            assert len(scratch) == 1000
    """)
    result.assert_outcomes(passed=1)


def test_limit_growth_passes_growth_in_only_some_runs(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        KEPT = []
        CALLS = []

        @pytest.mark.limit_growth
        def test_grows_every_other_run():
            CALLS.append(None)
            if len(CALLS) % 2:
                KEPT.extend(object() for _ in range(1000))
    """)
    result.assert_outcomes(passed=1)


def test_limit_growth_runs_warmup_plus_runs_times_within_the_same_fixtures(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        CALLS = []
        SETUPS = []

        @pytest.fixture
        def resource():
            SETUPS.append(None)
            return object()

        @pytest.mark.limit_growth(runs=3, warmup=1)
        def test_repeated(resource):
            CALLS.append(resource)  # the same object each run: no growth

        def test_counts():
            assert len(SETUPS) == 1
            assert len(CALLS) == 4
            assert all(call is CALLS[0] for call in CALLS)
    """)
    result.assert_outcomes(passed=2)


def test_limit_growth_on_a_census_kind_reports_fd_growth(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.limit_growth(metric="fds", runs=3, warmup=1)
        def test_opens_a_file_every_run():
            leaked.fd()
    """)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*fds grew in all 3 runs: \+1, \+1, \+1$"])


def test_limit_growth_on_rss_honours_min_growth(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        KEPT = []

        @pytest.mark.limit_growth(metric="rss", runs=3, warmup=1, min_growth=1 << 20)
        def test_keeps_two_mib_every_run():
            KEPT.append(b"x" * (2 << 20))

        @pytest.mark.limit_growth(metric="rss", runs=3, warmup=1, min_growth=64 << 20)
        def test_same_growth_under_a_higher_threshold():
            KEPT.append(b"x" * (2 << 20))
    """)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*rss grew in all 3 runs: \+\d+, \+\d+, \+\d+$"])


def test_limit_growth_gives_each_run_fresh_log_and_warning_capture(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        import logging
        import warnings

        @pytest.mark.limit_growth
        @pytest.mark.filterwarnings("default")
        def test_logs_and_warns(caplog):
            logging.getLogger("app").warning("slow request")
            warnings.warn("old API", DeprecationWarning)
            assert len(caplog.records) == 1
    """)
    result.assert_outcomes(passed=1, warnings=1)


def test_limit_growth_rejects_async_tests_with_a_clear_error(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.limit_growth
        async def test_async_body():
            pass
    """, "-p", "no:anyio")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*limit_growth repeats a sync test body, and test_async_body is async.*",
    ])


def test_limit_growth_rejects_an_unknown_metric_and_lists_known_ones(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, """
        @pytest.mark.limit_growth(metric="sesions")
        def test_typo():
            pass
    """)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([
        r".*limit_growth metric 'sesions' is not blocks, rss or a census kind "
        r"\(known now: .*fds.*\)",
    ])


def test_limit_growth_runs_under_pytest_memray_which_tracks_every_run(
        pytester: pytest.Pytester) -> None:
    """With --memray, limit_growth still judges growth, and memray tracks each test once
    over all its runs: a 4 MiB buffer kept by each of 4 runs passes memray's 10 MB."""
    pytest.importorskip("pytest_memray", reason="pytest-memray is in the dev extra")
    result = run_inner(pytester, """
        KEPT = []

        @pytest.mark.limit_growth(runs=3, warmup=1)
        def test_appends_every_run():
            KEPT.extend(object() for _ in range(1000))

        @pytest.mark.limit_growth(runs=3, warmup=1)
        def test_no_growth():
            scratch = [object() for _ in range(1000)]
            assert len(scratch) == 1000

        @pytest.mark.limit_growth(runs=3, warmup=1, min_growth=16)  # +2 blocks a run: passes
        @pytest.mark.limit_memory("10 MB")
        def test_buffer_per_run():
            KEPT.append(bytearray(4 << 20))
    """, "--memray")
    assert "Tracker" not in result.stdout.str()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.re_match_lines([
        r".*blocks grew in all 3 runs: \+\d+, \+\d+, \+\d+$",
        r"PASSED test_inner.py::test_no_growth",
        r"FAILED test_inner.py::test_appends_every_run - Failed: memwarden limit_growth.*",
        r"MEMORY PROBLEMS test_inner.py::test_buffer_per_run - Test was limited to 10.0.*",
    ], consecutive=False)


# -- protective actions heard on the bus ---------------------------------------------

POOLS = """
    import asyncio
    from memwarden.pool import Pool, PoolTimeout

    async def make():
        return object()

    async def close(resource):
        pass

    async def refuse_one(mode):
        pool = Pool(make, close, max_size=1, acquire_timeout=0, name="mcp", mode=mode)
        async with pool.acquire():
            try:
                async with pool.acquire():
                    pass
            except PoolTimeout:
                pass
        await pool.close()
"""


def test_tests_that_made_a_pool_refuse_are_named_with_what_it_did(
        pytester: pytest.Pytester) -> None:
    junit = pytester.path / "junit.xml"
    result = run_inner(pytester, POOLS + """
    def test_refused():
        asyncio.run(refuse_one("on"))
        asyncio.run(refuse_one("on"))

    def test_quiet():
        pass

    def test_would_refuse():
        asyncio.run(refuse_one("dry-run"))
    """, f"--junitxml={junit}")
    result.assert_outcomes(passed=3)
    result.stdout.re_match_lines([
        r"-+ memwarden: protective actions during tests -+",
        r"test_inner.py::test_refused: pool_refuse \(mcp\) x2$",
        r"test_inner.py::test_would_refuse: would_pool_refuse \(mcp\) x1$",
    ])
    assert "test_quiet:" not in result.stdout.str()
    # -rA shows each passing test's sections: the actions are the refusing tests' own.
    result.stdout.re_match_lines([r"-+ memwarden actions -+", r"pool_refuse \(mcp\) x2$"])
    assert ('<property name="memwarden_actions" value="would_pool_refuse (mcp) x1" />'
            in junit.read_text())


def test_a_leak_report_says_which_protective_actions_the_test_set_off(
        pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, POOLS + """
    @pytest.mark.no_leaks(settle=0.2)
    def test_leaky():
        asyncio.run(refuse_one("on"))
        leaked.pipe()
    """)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([
        r".*memwarden no_leaks: leaked fds \+2 .*",
        r"\s+fds: \d+ -> \d+ \(\+2\): pipe:.*",
        r"\s+protective actions during the test: pool_refuse \(mcp\) x1$",
    ])


# -- registration and pure helpers ------------------------------------------------------


def test_markers_are_registered_with_help_for_strict_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--strict-markers", "--markers")
    result.stdout.re_match_lines([
        r"@pytest.mark.no_leaks\(settle=2.0, ignore=\(\), kinds=None\): fail the test if.*",
        r"@pytest.mark.limit_growth\(runs=5, warmup=2, metric='blocks', min_growth=1\): .*",
    ])


def test_leak_line_says_what_leaked_and_by_how_much() -> None:
    leak = Leak("fds", 12, 15, ("pipe:[123]", "pipe:[123]", "anon_inode:[eventpoll]"))
    assert leak.line() == "fds: 12 -> 15 (+3): pipe:[123], pipe:[123], anon_inode:[eventpoll]"


def test_leak_line_shortens_long_lists_and_names() -> None:
    leak = Leak("sessions", 0, 20, tuple("x" * 100 for _ in range(20)))
    line = leak.line()
    assert line.endswith(", ... and 12 more")
    assert ("x" * 77 + "...") in line
    assert Leak("sessions", 1.5, 2.0).line() == "sessions: 1.5 -> 2 (+0.5)"


@pytest.mark.parametrize(
    ("deltas", "leak"),
    [
        # bpo-30776's examples: noise and one-off growth are not leaks...
        ([3, 0, 0], False),
        ([0, 1, 0], False),
        ([8, -8, 1], False),
        # ...growth in every run is.
        ([5, 5, 6], True),
        ([10, 1, 1], True),
    ],
)
def test_growth_rule_needs_growth_in_every_measured_run(deltas: list[int], leak: bool) -> None:
    assert _grew_every_run(deltas, 1) is leak
