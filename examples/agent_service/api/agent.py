"""The agent: plans from the message deterministically (no model), calls MCP
tools, may browse, and answers.

A plan is read off the message, clause by clause (``;`` separates clauses):
``add 2 3``, ``weather paris``, ``browse about``, ``fail [why]`` (a tool that
raises: the error path), ``history``; anything else is echoed by the ``echo``
tool. Tools are called through :mod:`api.mcp_client`; the rest of the turn
(browsing, checking tool results, composing the answer) is async and runs on
a per-request event loop.

Leak 3, as found: that loop is made per request and closed only when the turn
succeeds. When the agent raises (a tool failed, a page could not be read),
the loop stays open, 3 fds with it, and referenced: the agent keeps every
error, traceback included, in its error history, and the traceback's frames
hold the loop. The fix behind the same seam closes the loop in ``finally``
and keeps only a bounded history of error messages.

Hardened mode: no loop per request at all. The turn's async part runs on
memwarden's one loop per worker (``memwarden.loop.run`` with a timeout), the
loop that also owns the MCP session and the browser pool.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from api import browser, config, mcp_client
from api.mcp_client import ToolCall, ToolResult
from memwarden.hold import loop as worker_loop

__all__ = ["Agent", "Plan", "ToolCallError", "TurnResult", "get_agent", "plan", "run_async"]

T = TypeVar("T")
_ERRORS_KEPT = 100


class ToolCallError(RuntimeError):
    """A tool (or a page) failed; the turn cannot be answered."""


@dataclass(frozen=True, slots=True)
class Plan:
    calls: tuple[ToolCall, ...] = ()
    pages: tuple[str, ...] = ()
    wants_history: bool = False


@dataclass(frozen=True, slots=True)
class TurnResult:
    answer: str
    tools: tuple[str, ...]
    pages: tuple[str, ...]
    extracts: tuple[dict[str, Any], ...] = field(default=())


def _number(word: str) -> float:
    try:
        return float(word)
    except ValueError:
        raise ToolCallError(f"not a number: {word[:20]!r}") from None


def plan(message: str) -> Plan:
    """Read the plan off the message; the same message always gives the same plan."""
    calls: list[ToolCall] = []
    pages: list[str] = []
    wants_history = False
    for clause in message.split(";"):
        words = clause.split()
        if not words:
            continue
        verb, rest = words[0].lower(), words[1:]
        if verb == "add" and len(rest) >= 2:
            calls.append(ToolCall("add", {"a": _number(rest[0]), "b": _number(rest[1])}))
        elif verb == "weather" and rest:
            calls.append(ToolCall("weather", {"city": " ".join(rest)}))
        elif verb == "browse" and rest:
            pages.append(rest[0].lower())
        elif verb == "fail":
            calls.append(ToolCall("fail", {"reason": " ".join(rest) or "requested"}))
        elif verb == "history":
            wants_history = True
        else:
            calls.append(ToolCall("echo", {"text": clause.strip()}))
    return Plan(tuple(calls), tuple(pages), wants_history)


def _describe(result: ToolResult) -> str:
    if result.name == "add":
        return f"the sum is {result.value:g}"
    if result.name == "weather" and isinstance(result.value, dict):
        v = result.value
        return f"{v.get('city')}: {v.get('temp_c')} C, {v.get('sky')}"
    return str(result.value if result.value is not None else result.text)


class _Turn:
    """The turn's async scope: times it and notes the steps taken."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.steps: list[str] = []
        self.started = 0.0
        self.seconds = 0.0

    async def __aenter__(self) -> _Turn:
        self.started = time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


class Agent:
    def __init__(self) -> None:
        # As found: every error ever raised, traceback and all, "for debugging".
        self.errors: list[BaseException] = []
        self._recent_errors: collections.deque[str] = collections.deque(maxlen=_ERRORS_KEPT)
        self._lock = threading.Lock()

    def run_turn(self, message: str, history: list[dict[str, Any]]) -> TurnResult:
        """Answer one message (sync: called from a Flask handler)."""
        the_plan = plan(message)
        results = (mcp_client.get_client().call_tools(the_plan.calls)
                   if the_plan.calls else [])
        # Hardened: bounded by the pages it may read, plus a margin for the rest.
        timeout = config.settings().browse_timeout * max(1, len(the_plan.pages)) + 5.0
        try:
            return run_async(self._finish(message, the_plan, results, history), timeout)
        except TimeoutError as exc:
            self._remember(exc)
            raise ToolCallError(f"the turn did not finish within {timeout:g} s") from None
        except Exception as exc:
            self._remember(exc)
            raise

    def _remember(self, exc: BaseException) -> None:
        with self._lock:
            if config.leak("loop"):
                self.errors.append(exc)  # the traceback's frames keep the turn's loop
            else:
                self._recent_errors.append(f"{type(exc).__name__}: {exc}")

    async def _finish(self, message: str, the_plan: Plan, results: list[ToolResult],
                      history: list[dict[str, Any]]) -> TurnResult:
        async with _Turn(message) as turn:
            for result in results:
                if not result.ok:
                    raise ToolCallError(f"tool {result.name} failed: {result.text}")
                turn.steps.append(_describe(result))
            extracts = []
            for name in the_plan.pages:
                try:
                    page = await browser.abrowse(browser.page_url(name))
                except browser.BrowseError as exc:
                    raise ToolCallError(f"browse {name} failed: {exc}") from exc
                extracts.append({"page": name, "title": page.title, "heading": page.heading,
                                 "text": page.text})
                turn.steps.append(f"{name}: {page.title}")
            if the_plan.wants_history:
                turn.steps.append(f"{len(history)} earlier messages")
        return TurnResult(answer="; ".join(turn.steps) or "nothing to do",
                          tools=tuple(r.name for r in results), pages=the_plan.pages,
                          extracts=tuple(extracts))


def _run_async_as_found(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    result = loop.run_until_complete(coro)  # raises: the close below never runs
    loop.close()
    return result


def _run_async_scoped(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run the turn's async part: on a per-request loop (the loop-leak seam), or in
    hardened mode on the worker's one loop, cancelled after ``timeout`` seconds."""
    cfg = config.settings()
    if cfg.hardened:
        return worker_loop.run(coro, timeout)
    if cfg.leak("loop"):
        return _run_async_as_found(coro)
    return _run_async_scoped(coro)


_agent: Agent | None = None
_agent_lock = threading.Lock()


def get_agent() -> Agent:
    global _agent
    with _agent_lock:
        if _agent is None:
            _agent = Agent()
        return _agent
