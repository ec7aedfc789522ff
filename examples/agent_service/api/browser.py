"""Browsing local pages in Chromium through Playwright's async API.

Playwright's objects are bound to the event loop that made them, so this
module owns one long-lived loop on a daemon thread (``agent-browser``) per
worker process, and one Playwright driver and Browser on it, launched on
first use. Sync code calls :func:`browse`; coroutines on another loop (the
agent's) await :func:`abrowse`.

Leak 2, as found: each request opens a new BrowserContext and page, and the
context is closed only on the success path of pages that have an ``<h1>``: a
page without one returns early, and any error (an HTTP error status, a failed
navigation) skips the close. Each leaked context keeps a renderer and ~40-80
MB of PSS in Chromium's processes, while the worker itself grows ~2 MB. The
fix behind the same seam opens the context with ``async with``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

from api import config
from api.utils import resource_monitor

__all__ = [
    "BrowseError",
    "BrowserUnavailable",
    "Extract",
    "abrowse",
    "browse",
    "chromium_executable",
    "page_url",
    "shutdown",
]

T = TypeVar("T")
_log = logging.getLogger("agent_service.browser")

INSTALL_HINT = ("install Debian's chromium with `apt-get install -y chromium` "
                "(or point AGENT_SERVICE_CHROMIUM at a Chromium binary)")
# Keep Chromium from reaching out: no updates, sync, metrics or first-run pings.
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
)
_PAGE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_EXTRACT_CHARS = 200


class BrowserUnavailable(RuntimeError):
    """Chromium is missing or would not start; the message says how to fix it."""


class BrowseError(RuntimeError):
    """The page could not be read (bad name, HTTP error, failed navigation)."""


@dataclass(frozen=True, slots=True)
class Extract:
    url: str
    status: int
    title: str
    heading: str | None
    text: str


def chromium_executable(cfg: config.Settings | None = None) -> str:
    path = (cfg or config.settings()).chromium
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BrowserUnavailable(f"Chromium not found at {path}: {INSTALL_HINT}")
    return path


def page_url(name: str) -> str:
    """The local site's page ``name`` (letters, digits, dashes): nothing else is browsed."""
    if not _PAGE_NAME.fullmatch(name):
        raise BrowseError(f"bad page name {name[:50]!r}: use lowercase letters, digits, '-'")
    return f"{config.settings().site_url}/{name}.html"


class _LoopThread:
    """One event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="agent-browser",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


class _State:
    """This process's loop thread, driver and browser (replaced after fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.runner = _LoopThread()
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None
        self.launch_lock: asyncio.Lock | None = None


_state: _State | None = None
_state_lock = threading.Lock()


def _current() -> _State:
    global _state
    with _state_lock:
        # Objects made before a fork belong to the parent: start afresh in a child.
        if _state is None or _state.pid != os.getpid():
            _state = _State()
        return _state


async def _get_browser(state: _State) -> Browser:
    if state.launch_lock is None:
        state.launch_lock = asyncio.Lock()
    async with state.launch_lock:
        if state.browser is not None and state.browser.is_connected():
            return state.browser
        executable = chromium_executable()
        if state.playwright is None:
            state.playwright = await async_playwright().start()
        try:
            browser = await state.playwright.chromium.launch(
                executable_path=executable, args=list(CHROMIUM_ARGS), headless=True)
        except Exception as exc:
            raise BrowserUnavailable(f"Chromium at {executable} did not start ({exc}); "
                                     f"{INSTALL_HINT}") from exc
        handle = resource_monitor.opened(resource_monitor.BROWSERS, executable)
        browser.once("disconnected", lambda _b: resource_monitor.closed(handle))
        state.browser = browser
        return browser


async def _read(context: BrowserContext, url: str, timeout_s: float) -> Extract:
    page = await context.new_page()
    try:
        response = await page.goto(url, timeout=timeout_s * 1000)
    except Exception as exc:
        raise BrowseError(f"could not open {url}: {type(exc).__name__}") from exc
    status = response.status if response is not None else 0
    if status >= 400:
        raise BrowseError(f"{url} answered HTTP {status}")
    title = await page.title()
    heading = await page.query_selector("h1")
    if heading is None:
        return Extract(url, status, title, None, "")
    body = await page.inner_text("body")
    text = " ".join(body.split())[:_EXTRACT_CHARS]
    return Extract(url, status, title, (await heading.inner_text()).strip(), text)


def _count(context: BrowserContext, url: str) -> None:
    handle = resource_monitor.opened(resource_monitor.CONTEXTS, f"context for {url}")
    # Fired by context.close() and when the browser goes: the context is gone then.
    context.once("close", lambda _c: resource_monitor.closed(handle))


async def _browse_as_found(state: _State, url: str, timeout_s: float) -> Extract:
    browser = await _get_browser(state)
    context = await browser.new_context()
    _count(context, url)
    extract = await _read(context, url, timeout_s)  # raises: the context stays open
    if extract.heading is None:
        return extract  # "nothing to extract": returns before the close below
    await context.close()
    return extract


async def _browse_scoped(state: _State, url: str, timeout_s: float) -> Extract:
    browser = await _get_browser(state)
    async with await browser.new_context() as context:
        _count(context, url)
        return await _read(context, url, timeout_s)


def _browse_coro(state: _State, url: str) -> Coroutine[Any, Any, Extract]:
    cfg = config.settings()
    impl = _browse_as_found if cfg.leak("browser") else _browse_scoped
    return impl(state, url, cfg.browse_timeout)


def browse(url: str) -> Extract:
    """Open ``url`` in a new context and page; from sync code (a Flask handler)."""
    state = _current()
    future = state.runner.submit(_browse_coro(state, url))
    try:
        return future.result(config.settings().browse_timeout + 5)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise BrowseError(f"browsing {url} timed out") from None


async def abrowse(url: str) -> Extract:
    """:func:`browse` for a coroutine running on another loop (the agent's)."""
    state = _current()
    return await asyncio.wrap_future(state.runner.submit(_browse_coro(state, url)))


async def _close(state: _State) -> None:
    if state.browser is not None:
        with contextlib.suppress(Exception):
            await state.browser.close()
    if state.playwright is not None:
        with contextlib.suppress(Exception):
            await state.playwright.stop()
    state.browser = state.playwright = None


def shutdown(timeout: float = 10.0) -> None:
    """Close the browser, stop the driver and the loop thread (at worker exit)."""
    global _state
    with _state_lock:
        state, _state = _state, None
    if state is None or state.pid != os.getpid():
        return
    try:
        state.runner.submit(_close(state)).result(timeout)
    except Exception:
        _log.warning("closing the browser failed at shutdown", exc_info=True)
    state.runner.stop(timeout)
