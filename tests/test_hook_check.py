"""A gunicorn hook of one's own that does not call memwarden's is named at start."""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import pytest
from support import REPO, gunicorn

from memwarden import gunicorn_conf
from memwarden import gunicorn_conf as memwarden_hooks
from memwarden.hook_check import LOST, calls, needed, replaced_hooks
from memwarden.hook_check import memwarden_hooks as ours
from memwarden.settings import Settings

_memwarden_worker_exit = gunicorn_conf.worker_exit


def everything_of_ours() -> dict[str, Any]:
    return dict(ours())


# -- the check, on functions -------------------------------------------------------------

def by_alias(server: Any, worker: Any) -> None:
    _memwarden_worker_exit(server, worker)


def by_module(server: Any, worker: Any) -> None:
    memwarden_hooks.worker_exit(server, worker)


def by_package(server: Any, worker: Any) -> None:
    import memwarden.gunicorn_conf

    memwarden.gunicorn_conf.worker_exit(server, worker)


def _cleanup_then_memwarden(server: Any, worker: Any) -> None:
    by_alias(server, worker)


def by_helper(server: Any, worker: Any) -> None:
    _cleanup_then_memwarden(server, worker)


def own_cleanup_only(server: Any, worker: Any) -> None:
    print("closing the browser", server, worker)


def another_hook_of_memwarden(server: Any, worker: Any) -> None:
    memwarden_hooks.child_exit(server, worker)  # the wrong one: worker_exit's work is lost


def logged(hook: Any) -> Any:
    def wrapper(*args: Any) -> None:
        print("hook", hook.__name__)
        hook(*args)
    return wrapper


@functools.wraps(gunicorn_conf.worker_exit)
def wraps_ours(server: Any, worker: Any) -> None:
    print("a decorator that forgot to call it still names it")


@pytest.mark.parametrize("hook", [
    gunicorn_conf.worker_exit, by_alias, by_module, by_package, by_helper,
    logged(gunicorn_conf.worker_exit), functools.partial(gunicorn_conf.worker_exit),
    lambda server, worker: memwarden_hooks.worker_exit(server, worker),
], ids=["ours", "alias", "module", "package", "helper", "closure", "partial", "lambda"])
def test_a_hook_that_calls_memwardens_is_not_reported(hook: Any) -> None:
    assert calls(hook, gunicorn_conf.worker_exit)
    assert replaced_hooks({**everything_of_ours(), "worker_exit": hook}) == []


@pytest.mark.parametrize("hook", [own_cleanup_only, another_hook_of_memwarden, print,
                                  logged(own_cleanup_only), None],
                         ids=["own", "other-hook", "builtin", "closure", "missing"])
def test_a_hook_that_does_not_call_memwardens_is_reported(hook: Any) -> None:
    configured = {**everything_of_ours(), "worker_exit": hook}
    if hook is None:
        del configured["worker_exit"]  # gunicorn's default: does nothing
    assert replaced_hooks(configured) == ["worker_exit"]


def test_every_replaced_hook_is_reported_in_one_order() -> None:
    assert replaced_hooks({}) == list(LOST)
    assert replaced_hooks({"on_exit": own_cleanup_only, "child_exit": own_cleanup_only},
                          ours={"child_exit": gunicorn_conf.child_exit,
                                "on_exit": gunicorn_conf.on_exit}) == ["child_exit", "on_exit"]


def test_every_hook_of_memwarden_is_checked() -> None:
    """A hook memwarden's config defines and LOST leaves out would be replaced unseen."""
    defined = {name for name in gunicorn_conf.__all__ if callable(getattr(gunicorn_conf, name))
               and name not in ("memwarden_settings", "logconfig_dict")}
    assert defined == set(LOST)
    configured = {**everything_of_ours(), "worker_abort": own_cleanup_only}
    assert replaced_hooks(configured) == ["worker_abort"]


def test_hooks_that_only_export_are_needed_only_while_exporting() -> None:
    assert "on_starting" not in needed(Settings())
    assert "nworkers_changed" not in needed(Settings())
    assert needed(Settings(prometheus=True)) == needed(Settings(otel=True)) == list(LOST)
    assert set(LOST) - set(needed(Settings())) == {"on_starting", "nworkers_changed"}


# -- the snippets in the docs -------------------------------------------------------------

def python_snippets() -> list[tuple[str, str]]:
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", path.read_text(), re.S):
            if "memwarden.gunicorn_conf import *" in block:
                found.append((path.name, block))
    return found


def test_the_docs_have_gunicorn_config_snippets() -> None:
    assert {name for name, _ in python_snippets()} >= {"README.md", "exporters.md",
                                                       "rollout.md"}


@pytest.mark.parametrize(("name", "snippet"), python_snippets(),
                         ids=[name for name, _ in python_snippets()])
def test_no_snippet_in_the_docs_drops_a_memwarden_hook(name: str, snippet: str) -> None:
    namespace: dict[str, Any] = {"__name__": "snippet"}
    exec(compile(snippet, name, "exec"), namespace)
    assert replaced_hooks(namespace) == []


# -- at start, in a real gunicorn -----------------------------------------------------------

REPLACES = """
from memwarden.gunicorn_conf import *  # noqa: F403

def worker_exit(server, worker):
    server.log.debug("own cleanup")
"""

CALLS = """
from memwarden.gunicorn_conf import *  # noqa: F403
from memwarden import gunicorn_conf as memwarden_hooks

def worker_exit(server, worker):
    server.log.debug("own cleanup")
    memwarden_hooks.worker_exit(server, worker)
"""


def start_lines(tmp_path: Path, config_text: str) -> list[dict[str, Any]]:
    config = tmp_path / "gunicorn_conf_of_ones_own.py"
    config.write_text(config_text)
    with gunicorn("flask_app:app", tmp_path, args=["-w", "1"], config=str(config)) as g:
        assert g.request("GET", "/")[0] in (200, 404)
        deadline = time.monotonic() + 10
        while not g.lines("memwarden.request") and time.monotonic() < deadline:
            time.sleep(0.05)
    return g.lines("memwarden.gunicorn")


@pytest.mark.timeout(60)
def test_a_replaced_worker_exit_is_named_once_with_what_is_lost(tmp_path: Path) -> None:
    warnings = [x for x in start_lines(tmp_path, REPLACES) if x.get("level") == "WARNING"]
    assert len(warnings) == 1, warnings
    message = warnings[0]["message"]
    assert message.startswith("gunicorn hooks replaced without calling memwarden's: "
                              f"worker_exit (lost: {LOST['worker_exit']})"), message
    assert warnings[0]["hooks"] == ["worker_exit"]


@pytest.mark.timeout(60)
def test_a_worker_exit_that_calls_memwardens_is_not_named(tmp_path: Path) -> None:
    lines = start_lines(tmp_path, CALLS)
    assert not [x for x in lines if x.get("level") == "WARNING"], lines
