"""memwarden's pytest markers catch each of the service's in-process leaks.

Each test runs an inner pytest session in a subprocess (``pytester``) whose
tests call the real service in-process, through Flask's test client, against
real sidecars (MCP server and local site on 127.0.0.1) started here. The
as-found test must fail with a message naming the leaked resource; the same
request with the leak switched off must pass. (The fifth source, no worker
recycling, is a gunicorn setting: the gunicorn tests cover it.)
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from .agent_service_harness import SERVICE, free_port, require_chromium
from .conftest import SECRET_KEY

pytest_plugins = ["pytester"]

# Shared by every inner module: the app, and switching leaks in-process.
INNER_CONFTEST = """
import pytest

from api import config
# Imported at collection: the app registers its census gauges (mem0.memories,
# mem0.points) before any check takes its baseline.
from api.app import app


def use_leaks(monkeypatch, leaks):
    monkeypatch.setenv("AGENT_SERVICE_LEAKS", leaks)
    config.reload()


@pytest.fixture
def client():
    return app.test_client(use_cookies=False)  # no cookie jar: a new user each request
"""


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, int, int]]:
    from tooling.sidecars import Sidecars

    ports = mcp_port, site_port, model_port, memory_port = (
        free_port(), free_port(), free_port(), free_port())
    # The memory server reads its settings from this environment.
    env = {"AGENT_SERVICE_SECRET_KEY": SECRET_KEY, "AGENT_SERVICE_MODEL_PORT": str(model_port),
           "AGENT_SERVICE_DATA_DIR": str(tmp_path_factory.mktemp("memory-server"))}
    with Sidecars(mcp_port, site_port, model_port, memory_port, env=env):
        yield ports


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
          sidecars: tuple[int, int, int, int]) -> pytest.Pytester:
    mcp_port, site_port, model_port, memory_port = sidecars
    monkeypatch.setenv("AGENT_SERVICE_MEMORY_PORT", str(memory_port))
    monkeypatch.setenv("PYTHONPATH", str(SERVICE))
    monkeypatch.setenv("AGENT_SERVICE_MCP_PORT", str(mcp_port))
    monkeypatch.setenv("AGENT_SERVICE_SITE_PORT", str(site_port))
    monkeypatch.setenv("AGENT_SERVICE_MODEL_PORT", str(model_port))
    monkeypatch.delenv("AGENT_SERVICE_LEAKS", raising=False)
    # One request line per request goes through logging; keep the output short.
    monkeypatch.setenv("MEMWARDEN_CENSUS_EVERY", "1000")
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


def run_inner(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider", "-rA")


def section(result: pytest.RunResult, title: str) -> str:
    """One report section of the inner run, e.g. its failure message.

    no_leaks fails a test at teardown (``ERROR at teardown of test_x``);
    limit_growth fails the call (``test_x``).
    """
    text = result.stdout.str()
    start = text.find(f"_ {title} _")
    assert start >= 0, text[-3000:]
    end = text.find("\n_", start + len(title) + 4)
    return text[start:end if end > 0 else None]


def leak_report(result: pytest.RunResult) -> str:
    return section(result, "ERROR at teardown of test_as_found")


def growth_report(result: pytest.RunResult) -> str:
    return section(result, "test_as_found_grows")


def test_no_leaks_and_limit_growth_catch_the_loop_leak(inner: pytest.Pytester) -> None:
    result = run_inner(inner, """
        import pytest
        from conftest import use_leaks

        def failed_turn(client):
            reply = client.post("/chat", json={"message": "fail on purpose"})
            assert reply.status_code == 502

        @pytest.mark.no_leaks(settle=0.5)
        def test_as_found(client, monkeypatch):
            use_leaks(monkeypatch, "loop")
            failed_turn(client)

        @pytest.mark.limit_growth(runs=3, warmup=1, metric="asyncio.loops")
        def test_as_found_grows(client, monkeypatch):
            use_leaks(monkeypatch, "loop")
            failed_turn(client)

        @pytest.mark.no_leaks(settle=0.5)
        def test_fixed(client, monkeypatch):
            use_leaks(monkeypatch, "none")
            failed_turn(client)
    """)
    # no_leaks errors at teardown; limit_growth fails the call.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    leaked = leak_report(result)
    assert "memwarden no_leaks: leaked" in leaked
    assert "asyncio.loops +1" in leaked and "fds +3" in leaked
    assert "_UnixSelectorEventLoop" in leaked  # the loop is named
    grew = growth_report(result)
    assert "limit_growth: asyncio.loops grew in all 3 runs: +1, +1, +1" in grew


def test_no_leaks_and_limit_growth_catch_the_mcp_leak(inner: pytest.Pytester) -> None:
    result = run_inner(inner, """
        import pytest
        from conftest import use_leaks

        def tool_turn(client):
            reply = client.post("/chat", json={"message": "add 2 3"})
            assert reply.status_code == 200 and reply.get_json()["answer"] == "the sum is 5"

        @pytest.mark.no_leaks(settle=0.5)
        def test_as_found(client, monkeypatch):
            use_leaks(monkeypatch, "mcp")
            tool_turn(client)

        @pytest.mark.limit_growth(runs=3, warmup=1, metric="mcp.sessions")
        def test_as_found_grows(client, monkeypatch):
            use_leaks(monkeypatch, "mcp")
            tool_turn(client)

        @pytest.mark.no_leaks(settle=0.5)
        def test_fixed(client, monkeypatch):
            use_leaks(monkeypatch, "none")
            tool_turn(client)
    """)
    # no_leaks errors at teardown; limit_growth fails the call.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    leaked = leak_report(result)
    for part in ("mcp.sessions +1", "session with http://127.0.0.1:", "asyncio.loops +1",
                 "fds +4", "socket:", "asyncio.tasks +2"):
        assert part in leaked, (part, leaked)
    grew = growth_report(result)
    assert "limit_growth: mcp.sessions grew in all 3 runs: +1, +1, +1" in grew


def test_no_leaks_and_limit_growth_catch_the_browser_leak(inner: pytest.Pytester) -> None:
    require_chromium()
    result = run_inner(inner, """
        import pytest
        from api import browser
        from conftest import use_leaks

        @pytest.fixture(scope="module", autouse=True)
        def launched():
            # Chromium starts before the checks take their baseline, and stops after.
            browser.browse(browser.page_url("about"))
            yield
            browser.shutdown()

        def browse_notes(client):
            reply = client.post("/browse", json={"page": "notes"})  # no <h1>: early return
            assert reply.status_code == 200

        @pytest.mark.no_leaks(settle=1.0)
        def test_as_found(client, monkeypatch):
            use_leaks(monkeypatch, "browser")
            browse_notes(client)

        @pytest.mark.limit_growth(runs=3, warmup=1, metric="playwright.contexts")
        def test_as_found_grows(client, monkeypatch):
            use_leaks(monkeypatch, "browser")
            browse_notes(client)

        @pytest.mark.no_leaks(settle=5.0)
        def test_fixed(client, monkeypatch):
            use_leaks(monkeypatch, "none")
            browse_notes(client)
    """)
    # no_leaks errors at teardown; limit_growth fails the call.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    leaked = leak_report(result)
    assert "playwright.contexts +1" in leaked and "context for http://127.0.0.1:" in leaked, leaked
    assert "children +" in leaked and "chromium" in leaked, leaked  # its renderer, named
    grew = growth_report(result)
    assert "limit_growth: playwright.contexts grew in all 3 runs: +1, +1, +1" in grew


def test_no_leaks_and_limit_growth_catch_the_context_leak(inner: pytest.Pytester) -> None:
    """Mem0 for real, in-process: each new user's turn pair stays as two memories
    and two qdrant points as found; bounded, the points stop growing."""
    result = run_inner(inner, """
        import pytest
        from conftest import use_leaks

        def new_user_says_hello(client):
            assert client.post("/chat", json={"message": "hello"}).status_code == 200

        @pytest.mark.no_leaks(settle=0, kinds=("mem0.memories", "mem0.points"))
        def test_as_found(client, monkeypatch):
            use_leaks(monkeypatch, "context")
            new_user_says_hello(client)

        @pytest.mark.limit_growth(runs=4, warmup=2, metric="mem0.points")
        def test_as_found_grows(client, monkeypatch):
            use_leaks(monkeypatch, "context")
            new_user_says_hello(client)

        @pytest.mark.limit_growth(runs=4, warmup=2, metric="mem0.points")
        def test_fixed(client, monkeypatch):
            # Bounded to 2 sessions: full after the warmup, flat from then on.
            monkeypatch.setenv("AGENT_SERVICE_MAX_SESSIONS", "2")
            use_leaks(monkeypatch, "none")
            new_user_says_hello(client)
    """)
    # no_leaks errors at teardown; limit_growth fails the call.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    leaked = leak_report(result)
    for part in ("mem0.memories +2", "mem0.points +2"):
        assert part in leaked, leaked
    grew = growth_report(result)
    assert "limit_growth: mem0.points grew in all 4 runs: +2, +2, +2, +2" in grew


def test_limit_growth_sees_mem0_in_the_process_and_not_behind_the_memory_server(
        inner: pytest.Pytester) -> None:
    """The same turns of new users, stored by the as-found store (Mem0 in this
    process) and by the hardened one (the memory server): the test process's
    allocated blocks grow on every run with the first, and not with the second."""
    result = run_inner(inner, """
        import itertools
        import os

        import pytest
        from api import config, memory
        from api.context_manager import ContextManager
        from api.memory_client import RemoteContextStore

        USERS = itertools.count()
        AS_FOUND = ContextManager(memory.new_memory(config.settings()))
        HARDENED = RemoteContextStore(int(os.environ["AGENT_SERVICE_MEMORY_PORT"]))

        def twenty_new_users(store):
            for _ in range(20):
                user = f"user-{next(USERS)}"
                store.add_turn(user, "user", "hello there")
                store.add_turn(user, "assistant", "hello; the sum is 5")

        # As found, 50-70 blocks stay per turn pair (numpy arrays, one block each,
        # hold the vectors): 20 pairs keep ~1000-1400 a run.
        @pytest.mark.limit_growth(runs=4, warmup=2, metric="blocks", min_growth=300)
        def test_as_found_grows():
            twenty_new_users(AS_FOUND)

        @pytest.mark.limit_growth(runs=4, warmup=2, metric="blocks", min_growth=300)
        def test_hardened():
            twenty_new_users(HARDENED)
            assert HARDENED.stats()["points"] <= 2 * 1000
    """)
    result.assert_outcomes(passed=1, failed=1)
    grew = growth_report(result)
    assert "limit_growth: blocks grew in all 4 runs" in grew, grew
