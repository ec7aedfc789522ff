"""Conversation context per session (Mem0-like): history and metadata.

Leak 4, as found: :class:`ContextManager` keeps every session's history and
metadata in a dict, forever. Sessions come from signed cookies, so a new user
(or a client without a cookie jar) is a new session, and nothing ever removes
one. :class:`BoundedContextManager` is the fix behind the same interface: at
most ``max_sessions`` sessions, idle ones expire after ``ttl`` seconds, and
each keeps its last ``max_turns`` turns.

Like Mem0, each turn is stored with an embedding of its text, so that
later turns can be matched against it; here a deterministic 384-dimension
vector made from a hash (no model). Both stores keep a running total of the
bytes they hold (approximate: strings, the vector, a fixed overhead per
entry), so the census gauges are O(1).
"""

from __future__ import annotations

import array
import hashlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from cachetools import TTLCache

from api import config
from api.utils import resource_monitor

__all__ = ["BoundedContextManager", "ContextManager", "get_store"]

# A dict entry and its small values, roughly: enough for a trend, cheap to compute.
_ENTRY_OVERHEAD = 240
_MAX_META = 200
EMBEDDING_DIM = 384  # as small sentence-embedding models have
# A list of floats: the list's pointers plus one float object per element.
_EMBEDDING_BYTES = sys.getsizeof([0.0] * EMBEDDING_DIM) + EMBEDDING_DIM * sys.getsizeof(0.5)


def embed(text: str) -> list[float]:
    """A deterministic stand-in for an embedding model: unit-range floats from a hash."""
    raw = array.array("H", hashlib.shake_256(text.encode()).digest(2 * EMBEDDING_DIM))
    return [value / 32767.5 - 1.0 for value in raw]


def _entry_size(entry: dict[str, Any]) -> int:
    size = _ENTRY_OVERHEAD
    for key, value in entry.items():
        size += _EMBEDDING_BYTES if key == "embedding" else sys.getsizeof(value)
    return size


def _entry(role: str, content: str, extra: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, "content": content, "at": time.time(),
                             "embedding": embed(content)}
    entry.update(extra)
    return entry


def _new_record(user_agent: str) -> dict[str, Any]:
    now = time.time()
    return {
        "history": [],
        "meta": {"created": now, "last_seen": now, "turns": 0,
                 "user_agent": user_agent[:_MAX_META]},
        "bytes": _ENTRY_OVERHEAD + sys.getsizeof(user_agent[:_MAX_META]),
    }


class ContextManager:
    """As found: session id -> {history, metadata}, kept forever."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, Any]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def add_turn(self, session_id: str, role: str, content: str, *, user_agent: str = "",
                 **extra: Any) -> int:
        """Append a turn to the session (created on first use); return its turn count."""
        entry = _entry(role, content, extra)
        size = _entry_size(entry)
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None:
                record = self._sessions[session_id] = _new_record(user_agent)
                self._bytes += record["bytes"]
            record["history"].append(entry)
            record["bytes"] += size
            self._bytes += size
            meta = record["meta"]
            meta["turns"] += 1
            meta["last_seen"] = entry["at"]
            return int(meta["turns"])

    def history(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            record = self._sessions.get(session_id)
            return list(record["history"]) if record is not None else []

    def count(self) -> int:
        return len(self._sessions)

    def bytes_held(self) -> int:
        return self._bytes


class _SessionCache(TTLCache):  # type: ignore[type-arg]
    """A TTL + LRU cache that reports every record it drops."""

    def __init__(self, maxsize: int, ttl: float,
                 on_drop: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self._on_drop = on_drop

    def _dropped(self, pairs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        for _key, record in pairs:
            self._on_drop(record)

    def expire(self, time: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        expired: list[tuple[str, dict[str, Any]]] = super().expire(time)
        self._dropped(expired)
        return expired

    def popitem(self) -> tuple[str, dict[str, Any]]:
        # TTLCache.popitem expires first (reported above), then drops the LRU item.
        key, record = super().popitem()
        self._dropped([(key, record)])
        return key, record


class BoundedContextManager:
    """The fix: bounded sessions (LRU + idle TTL) and bounded history per session."""

    def __init__(self, max_sessions: int, max_turns: int, ttl: float) -> None:
        self._max_turns = max_turns
        self._bytes = 0
        self._lock = threading.Lock()
        self._sessions = _SessionCache(max_sessions, ttl, self._forget)

    def _forget(self, record: dict[str, Any]) -> None:
        self._bytes -= record["bytes"]

    def add_turn(self, session_id: str, role: str, content: str, *, user_agent: str = "",
                 **extra: Any) -> int:
        entry = _entry(role, content, extra)
        size = _entry_size(entry)
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None:
                record = _new_record(user_agent)
                record["history"] = deque(maxlen=self._max_turns)
                self._bytes += record["bytes"]
            history: deque[dict[str, Any]] = record["history"]
            if len(history) == history.maxlen:
                dropped = _entry_size(history[0])
                record["bytes"] -= dropped
                self._bytes -= dropped
            history.append(entry)
            record["bytes"] += size
            self._bytes += size
            meta = record["meta"]
            meta["turns"] += 1
            meta["last_seen"] = entry["at"]
            # Re-inserting refreshes the TTL and may evict the least recently used.
            self._sessions[session_id] = record
            return int(meta["turns"])

    def history(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            record = self._sessions.get(session_id)
            return list(record["history"]) if record is not None else []

    def count(self) -> int:
        with self._lock:
            self._sessions.expire()
            return len(self._sessions)

    def bytes_held(self) -> int:
        with self._lock:
            self._sessions.expire()
            return self._bytes


Store = ContextManager | BoundedContextManager
_store: Store | None = None
_store_settings: config.Settings | None = None
_store_lock = threading.Lock()


def get_store() -> Store:
    """The process's context store: as found, or bounded when the leak is off.

    Made once per settings (tests switch leaks with ``config.reload()``), and
    registered with the census when made.
    """
    global _store, _store_settings
    cfg = config.settings()
    with _store_lock:
        if _store is None or _store_settings is not cfg:
            if cfg.leak("context"):
                _store = ContextManager()
            else:
                _store = BoundedContextManager(cfg.max_sessions, cfg.max_turns, cfg.session_ttl)
            _store_settings = cfg
            resource_monitor.register_store(_store)
        return _store
