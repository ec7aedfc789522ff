"""The service's census kinds, registered with memwarden's census.

Open resources: ``playwright.browsers``, ``playwright.contexts``,
``mcp.sessions``. Each is counted from the moment it is opened until it is
closed, through a token that memwarden tracks by weak reference: counting
the Playwright or MCP objects themselves would also count closed ones until
the cyclic garbage collector gets round to them (they sit in reference
cycles), which makes a fixed service look leaky for a while.
Gauges (read on each census), from the context store: ``mem0.memories`` (Mem0
memories the worker added and did not delete) and ``mem0.points`` (points in
its qdrant collection, counted by qdrant). The hardened worker keeps both at
0: its context lives in the memory sidecar. The census itself, with threads,
fds, descendants and their PSS, event loops and tasks, is memwarden's; it
lands in the request log line on sampled requests (``MEMWARDEN_CENSUS_EVERY``).
"""

from __future__ import annotations

import itertools
import threading
from typing import Protocol

from memwarden.see import census as _census

__all__ = ["KINDS", "SessionStore", "census", "closed", "opened", "register_store"]

BROWSERS = "playwright.browsers"
CONTEXTS = "playwright.contexts"
MCP_SESSIONS = "mcp.sessions"
MEM0_MEMORIES = "mem0.memories"
MEM0_POINTS = "mem0.points"
KINDS = (BROWSERS, CONTEXTS, MCP_SESSIONS, MEM0_MEMORIES, MEM0_POINTS)


class SessionStore(Protocol):
    def memories(self) -> int: ...

    def points(self) -> int: ...


class _Open:
    """The census token of one open resource."""

    __slots__ = ("__weakref__", "kind", "label")

    def __init__(self, kind: str, label: str) -> None:
        self.kind = kind
        self.label = label

    def __repr__(self) -> str:
        # What a leak report (memwarden's no_leaks) shows for it.
        return f"<open {self.kind}{': ' if self.label else ''}{self.label}>"


# The only strong references to the tokens, by handle: popping one drops it
# from the census at once (no cycles, so no wait for the garbage collector).
# Callers keep the int handle, never the token, so a close callback that
# outlives the close cannot keep it counted.
_open: dict[int, _Open] = {}
_handles = itertools.count(1)
_open_lock = threading.Lock()


def opened(kind: str, label: str = "") -> int:
    """Count one more open resource of ``kind``; returns the handle for :func:`closed`.

    ``label`` says which one it is (a URL, a command) in leak reports.
    """
    if kind not in (BROWSERS, CONTEXTS, MCP_SESSIONS):
        raise ValueError(f"unknown resource kind {kind!r}")
    token = _Open(kind, label)
    handle = next(_handles)
    with _open_lock:
        _open[handle] = token
    _census.track(token, kind)
    return handle


def closed(handle: int) -> None:
    """The resource is closed: stop counting it (idempotent)."""
    with _open_lock:
        _open.pop(handle, None)


def register_store(store: SessionStore) -> None:
    """Report the context store's size on each census.

    ``mem0.memories`` is O(1); ``mem0.points`` asks qdrant,
    which counts the collection (O(points) in local mode): fine at census
    rates, and it checks the store itself rather than the service's own tally.
    """
    _census.gauge(MEM0_MEMORIES, store.memories)
    _census.gauge(MEM0_POINTS, store.points)


def census() -> dict[str, int | float]:
    """One census now, for a debug print or a test."""
    return _census.census()
