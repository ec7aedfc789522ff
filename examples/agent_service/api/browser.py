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

Hardened mode: no thread of its own. The driver, the Browser and a
``memwarden.pool.Pool`` of contexts live on memwarden's worker loop. The pool
is bounded (``AGENT_SERVICE_BROWSER_POOL_SIZE``), closes contexts idle for
``AGENT_SERVICE_BROWSER_CONTEXT_TTL`` seconds or used
``AGENT_SERVICE_BROWSER_CONTEXT_USES`` times, and checks before each lease
that the context's browser is still connected. Each request leases a context
with ``async with pool.acquire()`` and reads its page in ``async with``, so
the page is closed and the context returned (or discarded, on an error) on
every path. When Chromium dies (killed, crashed) the health check turns the
idle contexts away and the next creation relaunches it (and the driver, if it
went too): the next request is served, not failed forever.
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

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from api import config
from api.urls import local_url_problem
from api.utils import resource_monitor
from memwarden.hold import loop as worker_loop
from memwarden.pool import Pool

__all__ = [
    "BrowseError",
    "BrowserUnavailable",
    "Extract",
    "PageStatusError",
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


class PageStatusError(BrowseError):
    """The page answered an HTTP error: the browser context itself is fine."""


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
    url = f"{config.settings().site_url}/{name}.html"
    # The settings were checked at start; this guards settings built another way.
    problem = local_url_problem(url)
    if problem is not None:
        raise BrowseError(f"refusing to browse {url[:80]!r}: {problem}")
    return url


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


class _Hardened:
    """Hardened mode: this process's driver, browser and context pool, on memwarden's loop."""

    def __init__(self, cfg: config.Settings) -> None:
        self.pid = os.getpid()
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None
        self.launch_lock: asyncio.Lock | None = None
        self.launches = 0
        self.pool: Pool[BrowserContext] = Pool(
            self._new_context, _close_context, max_size=cfg.browser_pool_size,
            acquire_timeout=cfg.browse_timeout, idle_ttl=cfg.browser_context_ttl,
            max_uses=cfg.browser_context_uses, health_check=_connected,
            reap_interval=max(1.0, cfg.browser_context_ttl / 2), name="browser")

    async def _new_context(self) -> BrowserContext:
        browser = await _launch_hardened(self)
        context = await browser.new_context()
        _count(context, "pooled context")
        return context

    async def aclose(self) -> None:
        await self.pool.close(5.0)
        await _close(self)


async def _connected(context: BrowserContext) -> bool:
    browser = context.browser
    return browser is not None and browser.is_connected()


async def _close_context(context: BrowserContext) -> None:
    # A context of a browser that died is gone with it: nothing left to close.
    if await _connected(context):
        await context.close()


async def _get_browser(state: _State | _Hardened) -> Browser:
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


async def _launch_hardened(state: _Hardened) -> Browser:
    """The connected browser; relaunched after a crash, with a fresh driver if needed."""
    if state.browser is not None and state.browser.is_connected():
        return state.browser
    if state.browser is not None:
        _log.warning("Chromium is gone (crashed or killed); relaunching it")
    try:
        browser = await _get_browser(state)
    except BrowserUnavailable:
        if state.playwright is None:
            raise
        # The driver may have gone with Chromium: start both afresh, once.
        _log.warning("relaunching Chromium failed; restarting the Playwright driver")
        await _close(state)
        browser = await _get_browser(state)
    state.launches += 1
    return browser


async def _read(context: BrowserContext, url: str, timeout_s: float) -> Extract:
    page = await context.new_page()
    return await _read_page(page, url, timeout_s)


async def _read_page(page: Page, url: str, timeout_s: float) -> Extract:
    try:
        response = await page.goto(url, timeout=timeout_s * 1000)
    except Exception as exc:
        raise BrowseError(f"could not open {url}: {type(exc).__name__}") from exc
    status = response.status if response is not None else 0
    if status >= 400:
        raise PageStatusError(f"{url} answered HTTP {status}")
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


async def _browse_pooled(url: str) -> Extract:
    state = _current_hardened()
    pool = state.pool
    async with pool.acquire() as context:
        try:
            async with await context.new_page() as page:
                return await _read_page(page, url, config.settings().browse_timeout)
        except PageStatusError:
            raise  # the page's fault: the context goes back to the pool
        except BaseException:
            # Unknown state (a crash, a timeout, a cancellation): never reuse it.
            pool.discard(context)
            raise


_hardened: _Hardened | None = None


def _current_hardened() -> _Hardened:
    """This process's pooled browser (on the worker loop's thread; no lock needed)."""
    global _hardened
    if _hardened is None or _hardened.pid != os.getpid():
        _hardened = _Hardened(config.settings())
    return _hardened


def _browse_coro(state: _State, url: str) -> Coroutine[Any, Any, Extract]:
    cfg = config.settings()
    impl = _browse_as_found if cfg.leak("browser") else _browse_scoped
    return impl(state, url, cfg.browse_timeout)


def browse(url: str) -> Extract:
    """Open ``url`` in a new context and page; from sync code (a Flask handler)."""
    cfg = config.settings()
    if cfg.hardened:
        try:
            return worker_loop.run(_browse_pooled(url), cfg.browse_timeout + 5)
        except TimeoutError:
            raise BrowseError(f"browsing {url} timed out") from None
    state = _current()
    future = state.runner.submit(_browse_coro(state, url))
    try:
        return future.result(config.settings().browse_timeout + 5)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise BrowseError(f"browsing {url} timed out") from None


async def abrowse(url: str) -> Extract:
    """:func:`browse` for a coroutine running on another loop (the agent's); in
    hardened mode the agent's coroutine runs on the worker loop, where the pool is."""
    if config.settings().hardened:
        return await _browse_pooled(url)
    state = _current()
    return await asyncio.wrap_future(state.runner.submit(_browse_coro(state, url)))


async def _close(state: _State | _Hardened) -> None:
    if state.browser is not None:
        with contextlib.suppress(Exception):
            await state.browser.close()
    if state.playwright is not None:
        with contextlib.suppress(Exception):
            await state.playwright.stop()
    state.browser = state.playwright = None


def shutdown(timeout: float = 10.0) -> None:
    """Close the browser, stop the driver and the loop thread (at worker exit)."""
    global _state, _hardened
    hardened, _hardened = _hardened, None
    if hardened is not None and hardened.pid == os.getpid():
        try:
            worker_loop.run(hardened.aclose(), timeout)
        except Exception:
            _log.warning("closing the pooled browser failed at shutdown", exc_info=True)
    with _state_lock:
        state, _state = _state, None
    if state is None or state.pid != os.getpid():
        return
    try:
        state.runner.submit(_close(state)).result(timeout)
    except Exception:
        _log.warning("closing the browser failed at shutdown", exc_info=True)
    state.runner.stop(timeout)
