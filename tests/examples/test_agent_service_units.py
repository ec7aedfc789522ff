"""The reference service's pure parts: settings, the agent's plan, the context stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api import agent, browser, config, memory
from api.context_manager import BoundedContextManager, ContextManager, _Mem0Turns
from api.mcp_client import ToolCall
from tooling import model_server

from .agent_service_harness import free_port


def test_settings_default_to_the_service_as_found() -> None:
    cfg = config.Settings.from_env({"AGENT_SERVICE_SECRET_KEY": "k" * 32})
    assert cfg.mode == "as-found"
    assert cfg.leaks == frozenset(config.LEAKS)
    assert (cfg.port, cfg.mcp_url, cfg.site_url) == (
        8000, "http://127.0.0.1:8765/mcp", "http://127.0.0.1:8766")
    assert cfg.chromium == "/usr/lib/chromium/chromium"


@pytest.mark.parametrize(("raw", "expected"), [
    ("", frozenset()), ("none", frozenset()), ("all", frozenset(config.LEAKS)),
    ("browser, LOOP", frozenset({"browser", "loop"})),
])
def test_leaks_switch_one_by_one(raw: str, expected: frozenset[str]) -> None:
    env = {"AGENT_SERVICE_LEAKS": raw, "AGENT_SERVICE_SECRET_KEY": "k" * 32}
    assert config.Settings.from_env(env).leaks == expected


def test_hardened_mode_runs_every_fix() -> None:
    cfg = config.Settings.from_env({"AGENT_SERVICE_MODE": "hardened",
                                    "AGENT_SERVICE_SECRET_KEY": "k" * 32})
    assert cfg.hardened and cfg.leaks == frozenset()
    assert not any(cfg.leak(name) for name in config.LEAKS)


@pytest.mark.parametrize(("env", "named"), [
    ({"AGENT_SERVICE_LEAKS": "mcp,memory"}, "AGENT_SERVICE_LEAKS"),
    ({"AGENT_SERVICE_MODE": "sturdy"}, "AGENT_SERVICE_MODE"),
    ({"AGENT_SERVICE_MODE": "hardened", "AGENT_SERVICE_LEAKS": "mcp"}, "AGENT_SERVICE_LEAKS"),
    ({"AGENT_SERVICE_MCP_TRANSPORT": "sse"}, "AGENT_SERVICE_MCP_TRANSPORT"),
    ({"AGENT_SERVICE_MCP_URL": "http://example.com/mcp"}, "AGENT_SERVICE_MCP_URL"),
    ({"AGENT_SERVICE_MAX_SESSIONS": "0"}, "AGENT_SERVICE_MAX_SESSIONS"),
    ({"AGENT_SERVICE_PORT": "http"}, "AGENT_SERVICE_PORT"),
])
def test_bad_settings_fail_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(config.ConfigError, match=named):
        config.Settings.from_env({"AGENT_SERVICE_SECRET_KEY": "k" * 32, **env})


def test_plan_is_read_off_the_message() -> None:
    plan = agent.plan("add 2 3; weather Paris; browse About; fail on purpose; history; hi")
    assert plan.calls == (
        ToolCall("add", {"a": 2.0, "b": 3.0}),
        ToolCall("weather", {"city": "Paris"}),
        ToolCall("fail", {"reason": "on purpose"}),
        ToolCall("echo", {"text": "hi"}),
    )
    assert plan.pages == ("about",)
    assert plan.wants_history
    with pytest.raises(agent.ToolCallError, match="not a number"):
        agent.plan("add two 3")


def test_only_local_site_pages_can_be_browsed() -> None:
    assert browser.page_url("about").startswith(config.settings().site_url + "/")
    for bad in ("../etc/passwd", "http://example.com", "About", ""):
        with pytest.raises(browser.BrowseError, match="bad page name"):
            browser.page_url(bad)


def test_missing_chromium_names_the_install_command() -> None:
    cfg = config.Settings(chromium="/nonexistent/chromium")
    with pytest.raises(browser.BrowserUnavailable) as raised:
        browser.chromium_executable(cfg)
    assert "/nonexistent/chromium" in str(raised.value)
    assert "apt-get install -y chromium" in str(raised.value)


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    """The model endpoint the service runs beside it, here on a thread."""
    port = free_port()
    server = model_server.make_server(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _settings(model_url: str, tmp_path: Path) -> config.Settings:
    return config.Settings(model_url=model_url, data_dir=str(tmp_path))


def _history_rows(store: _Mem0Turns) -> int:
    db = store.memory.db
    with db._lock:
        return int(db.connection.execute("SELECT COUNT(*) FROM history").fetchone()[0])


def test_model_endpoint_embeds_deterministically(model_url: str) -> None:
    a, b = model_server.embed("hello"), model_server.embed("hello")
    assert a == b and len(a) == 384
    assert abs(sum(v * v for v in a) - 1.0) < 1e-9
    assert model_server.embed("hello!") != a


def test_as_found_store_keeps_every_turn_in_mem0(model_url: str, tmp_path: Path) -> None:
    store = ContextManager(memory.new_memory(_settings(model_url, tmp_path)))
    for user in range(10):
        store.add_turn(f"user-{user}", "user", "hello", user_agent="test")
    assert (store.count(), store.memories(), store.points()) == (10, 10, 10)
    assert store.add_turn("user-0", "assistant", "hi", tools="add") == 2
    history = store.history("user-0")
    assert [(h["role"], h["content"]) for h in history] == [("user", "hello"),
                                                            ("assistant", "hi")]
    assert (store.memories(), store.points(), _history_rows(store)) == (11, 11, 11)


def test_bounded_store_deletes_what_it_drops_from_mem0(model_url: str, tmp_path: Path) -> None:
    store = BoundedContextManager(memory.new_memory(_settings(model_url, tmp_path)),
                                  max_sessions=3, max_turns=4, ttl=60.0)
    for user in range(10):
        store.add_turn(f"user-{user}", "user", "hello")
    assert (store.count(), store.memories(), store.points()) == (3, 3, 3)
    assert store.history("user-0") == []
    for turn in range(10):
        assert store.add_turn("user-9", "user", f"turn {turn}") == min(turn + 2, 4)
    assert [h["content"] for h in store.history("user-9")] == [f"turn {t}" for t in range(6, 10)]
    # user-7, user-8 one memory each, user-9 its last four; Mem0's history table
    # holds the rows of those six and nothing of what was dropped.
    assert (store.memories(), store.points(), _history_rows(store)) == (6, 6, 6)


def test_bounded_store_expires_idle_sessions(model_url: str, tmp_path: Path) -> None:
    store = BoundedContextManager(memory.new_memory(_settings(model_url, tmp_path)),
                                  max_sessions=10, max_turns=4, ttl=0.05)
    store.add_turn("idle", "user", "hello")
    assert store.count() == 1
    time.sleep(0.1)
    assert (store.count(), store.memories(), store.points()) == (0, 0, 0)


def test_bounded_store_on_disk_takes_its_sessions_up_again(model_url: str,
                                                           tmp_path: Path) -> None:
    cfg = _settings(model_url, tmp_path)
    first = BoundedContextManager(memory.new_memory(cfg, tmp_path / "memory"),
                                  max_sessions=2, max_turns=3, ttl=60.0)
    for user, turns in (("a", 2), ("b", 3)):
        for turn in range(turns):
            first.add_turn(user, "user", f"{user} {turn}")
    first.memory.vector_store.client.close()
    first.memory.db.connection.close()
    again = BoundedContextManager(memory.new_memory(cfg, tmp_path / "memory"),
                                  max_sessions=2, max_turns=2, ttl=60.0)
    assert (again.count(), again.memories(), again.points()) == (2, 4, 4)  # b trimmed to 2
    assert [h["content"] for h in again.history("a")] == ["a 0", "a 1"]
    again.add_turn("c", "user", "c 0")  # a, the least recently seen, goes
    assert again.history("a") == [] and again.count() == 2


def _qdrant_slots(store: _Mem0Turns) -> int:
    """Points qdrant's local mode holds in memory, deleted ones included."""
    client = store.memory.vector_store.client
    return len(client._client.collections[memory.COLLECTION].ids_inv)


@pytest.mark.parametrize("on_disk", [False, True])
def test_bounded_store_does_not_keep_qdrant_tombstones(model_url: str, tmp_path: Path,
                                                       on_disk: bool) -> None:
    """qdrant's local mode only marks a deleted point: its vector, payload and slot stay
    in memory. The bounded store compacts the collection, so they do not pile up."""
    cfg = _settings(model_url, tmp_path)
    store = BoundedContextManager(memory.new_memory(cfg, tmp_path / "m" if on_disk else None),
                                  max_sessions=2, max_turns=2, ttl=60.0)
    for user in range(150):
        store.add_turn(f"user-{user}", "user", "hello")
        store.add_turn(f"user-{user}", "assistant", "hi")
    assert (store.count(), store.memories(), store.points()) == (2, 4, 4)
    # At most one compaction's worth of deleted points: 256, or the live ones if more.
    assert _qdrant_slots(store) <= 4 + 256, _qdrant_slots(store)
    assert [h["content"] for h in store.history("user-149")] == ["hello", "hi"]
