"""The reference service's pure parts: settings, the agent's plan, the context stores."""

from __future__ import annotations

import time

import pytest
from api import agent, browser, config
from api.context_manager import BoundedContextManager, ContextManager
from api.mcp_client import ToolCall


def test_settings_default_to_the_service_as_found() -> None:
    cfg = config.Settings.from_env({})
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
    assert config.Settings.from_env({"AGENT_SERVICE_LEAKS": raw}).leaks == expected


def test_hardened_mode_runs_every_fix() -> None:
    cfg = config.Settings.from_env({"AGENT_SERVICE_MODE": "hardened"})
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
        config.Settings.from_env(env)


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


def test_as_found_store_keeps_every_session_and_counts_its_bytes() -> None:
    store = ContextManager()
    for user in range(10):
        store.add_turn(f"user-{user}", "user", "hello", user_agent="test")
    assert store.count() == 10
    per_session = store.bytes_held() / 10
    assert per_session > 12_000  # the text, its 384-float embedding and the metadata
    assert store.add_turn("user-0", "assistant", "hi") == 2
    assert len(store.history("user-0")) == 2


def test_bounded_store_evicts_old_sessions_and_turns_and_gives_their_bytes_back() -> None:
    store = BoundedContextManager(max_sessions=3, max_turns=4, ttl=60.0)
    for user in range(3):
        store.add_turn(f"user-{user}", "user", "hello")
    full = store.bytes_held()
    for user in range(3, 10):
        store.add_turn(f"user-{user}", "user", "hello")
    assert store.count() == 3
    assert store.bytes_held() == full
    for _ in range(10):
        store.add_turn("user-9", "user", "hello")
    assert len(store.history("user-9")) == 4
    assert store.history("user-0") == []
    # What it holds is exactly what is left: two 1-turn sessions and a 4-turn one.
    same = BoundedContextManager(max_sessions=3, max_turns=4, ttl=60.0)
    for user, turns in (("user-7", 1), ("user-8", 1), ("user-9", 4)):
        for _ in range(turns):
            same.add_turn(user, "user", "hello")
    assert store.bytes_held() == same.bytes_held()


def test_bounded_store_expires_idle_sessions() -> None:
    store = BoundedContextManager(max_sessions=10, max_turns=4, ttl=0.05)
    store.add_turn("idle", "user", "hello")
    assert store.count() == 1
    time.sleep(0.1)
    assert store.count() == 0
    assert store.bytes_held() == 0
